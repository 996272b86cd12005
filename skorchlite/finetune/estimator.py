"""FineTuneClassifier: fine-tune a pretrained backbone as a scikit-learn classifier."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import Tags, TransformerTags
from torch import nn

from ..backbones import Preprocessing
from ..engine import Precision
from ..private_api import fit_context
from ..versioning import VersionedPickleMixin
from .model_file import load_fitted, save_fitted
from .parameters import FineTuneParameters, parameter_constraints
from .run import check_fitted, check_parameters, infer, train_estimator, transform_width, upgrade_network_key
from .steps import BatchNormMode, OptimizerName, Schedule
from .voting_head import VotingHead

__all__ = ["FineTuneClassifier"]


class FineTuneClassifier(
    ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, VersionedPickleMixin, BaseEstimator
):
    """Fine-tune a pretrained backbone, then predict with a head per layer.

    As fastai's ``fine_tune``: a new linear head trains alone for ``freeze_epochs``,
    then the last ``unfreeze`` layer groups of the backbone train with it
    for ``epochs`` at discriminative rates. Frozen groups, and by default
    the BatchNorm layers of unfrozen ones, stay in inference mode (Keras's
    rule). Then, by default (``head="voting"``), a logistic regression per
    layer of the fine-tuned backbone is fitted on the training images and
    their votes predict. With ``unfreeze=0`` and ``augment=None`` training reads the
    embeddings of :class:`~skorchlite.PretrainedFeatureExtractor` and its
    cache, as cheap as the extractor pipeline. ``docs/strategies.md`` gives
    the rates of each phase, how they differ from fastai's, and the
    BatchNorm rule. A 2-D 0/1 ``y`` (a column per label) makes it multi-label.

    Parameters
    ----------
    backbone : str, (str, path) or torch.nn.Module, default="efficientnet_lite0"
        A name from :func:`skorchlite.backbones.list_backbones`, an
        ``(architecture name, checkpoint path)`` pair, or any module, as for
        the extractor. A module is copied: fitting never changes it.
    weights : str, path-like or None, default="DEFAULT"
        Weights of the backbone, as for the extractor; ``None`` is a random
        initialisation drawn from ``random_state`` when it is an int (else
        seed 0).
    preprocessing : Preprocessing, dict or None, default=None
        The backbone's evaluation transform, as for the extractor.
    layer_groups : list of lists of str, or None, default=None
        Module names of the backbone from input to output, the units that
        ``unfreeze`` counts; ``None`` keeps the registry's groups (a
        module's: its top-level children that hold parameters).
    unfreeze : int or "all", default="all"
        Number of layer groups to train, counted from the output; 0 trains
        the head only. This default and those of ``epochs``, ``freeze_epochs``, ``lr`` scored best on BUSI.
    epochs : int, default=8
        Epochs with the chosen groups unfrozen (or head-only epochs when
        ``unfreeze=0``).
    freeze_epochs : int, default=2
        Head warm-up epochs before unfreezing (ignored when ``unfreeze=0``
        and when continuing with ``warm_start``).
    batchnorm : {"eval", "train"}, default="eval"
        Mode of the BatchNorm layers of unfrozen groups while training:
        ``"eval"`` normalises with their ImageNet statistics while their
        scale and shift train; ``"train"`` with batch statistics, updating
        the running ones. Frozen groups are always in eval mode.
    lr : float, default=5e-3
        Peak learning rate of the head (``lr / 2`` in the unfrozen phase
        after a head phase).
    lr_decay : float, default=0.5
        Learning-rate multiplier per layer group towards the input.
    optimizer : {"adamw", "sgd"}, default="adamw"
        AdamW, or SGD with Nesterov momentum ``momentum``.
    weight_decay : float, default=0.01
        Not applied to biases and normalisation parameters.
    momentum : float, default=0.9
        SGD momentum.
    schedule : {"onecycle", "cosine", None}, default="onecycle"
        Per-step schedule of each phase; ``"cosine"`` is linear warm-up then
        cosine decay; ``None`` keeps ``lr`` constant.
    warmup : float, default=0.25
        Fraction of each phase spent warming up.
    label_smoothing : float, default=0.0
        Passed to the cross-entropy loss (multi-label: each 0/1 moves
        towards 1/2 by half of it, as in Keras).
    class_weight : None, "balanced", dict or list of dict, default=None
        Weights of the classes in the loss, as in scikit-learn. Multi-label:
        ``"balanced"`` weighs each label's present and absent rows against
        each other (a ``pos_weight`` of n_absent / n_present), a list gives
        ``{0: weight, 1: weight}`` per label column.
    augment : "default", None or callable, default="default"
        Training-time augmentation before the backbone's own preprocessing,
        applied to each RGB PIL image as decoded once and kept in memory
        (its shorter side resized to the preprocessing's resize size, up to
        :data:`skorchlite.finetune.inputs.DECODED_MEMORY_BYTES` for the whole set):
        ``"default"`` (:class:`~skorchlite.finetune.augmentation.DefaultAugmentation`:
        random resized crop, horizontal flip, small colour jitter, run in
        the decoding threads), ``None``, or any callable taking and
        returning a PIL image, such as a torchvision transform (run in the
        training thread, so that its use of torch's global random state
        stays reproducible). Evaluation always uses the backbone's
        preprocessing.
    head : {"voting", "linear"}, default="voting"
        What predicts. ``"voting"``: after fine-tuning, a logistic regression per layer of the
        fine-tuned backbone's ``"blocks"`` (``voting_head_``), fitted on every training image
        unaugmented and voting as :class:`~skorchlite.LayerVotingClassifier` does, classes weighed
        by ``class_weight`` (``None``: equally); on BUSI it beat the linear head on both tasks
        (``docs/medical.md``). ``"linear"``: the network's trained head. Multi-label fits, ``partial_fit``
        (which changes the network under the heads) and warm fits lacking a class use the linear head.
    tta : bool, default=False
        Test-time augmentation: ``predict_proba`` averages the image and its
        mirror image. Off by default: with the voting heads it lowered one
        grouped BUSI fold from 0.821 to 0.789 balanced accuracy (``docs/medical.md``).
    layer : str, list or None, default=None
        What :meth:`transform` returns of the fine-tuned backbone, as the extractor's ``layer``:
        ``None`` the penultimate features. Fit ignores it.
    image_size : int or None, default=None
        Side of the crop the network sees; ``None`` keeps the weights' own.
    batch_size : int, default=32
    validation_fraction : float, default=0.1
        Stratified (multi-label: random) share of the training data held out
        to pick the best epoch, whose weights are restored at the end; 0: none.
    n_iter_no_change : int or None, default=None
        Stop when the validation loss has not improved for this many epochs.
    device : str, default="auto"
        CUDA when available, else CPU.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of forward and backward passes. ``"bfloat16"`` is
        autocast mixed precision with float32 master weights: about twice as
        fast where the hardware computes bfloat16 natively (CPUs with
        AVX512_BF16 or AMX, recent GPUs), refused elsewhere.
    num_workers : int or None, default=None
        Image-decoding threads; ``None`` follows torch's thread count.
    compile : bool, default=False
        Train through ``torch.compile(model)``: slower than eager on a 2-core CPU
        (``docs/benchmarks.md``); try it on GPUs and long jobs.
    cache : bool, str or path-like, default=True
        Embedding cache for head-only training (see the extractor).
    random_state : int, RandomState instance or None, default=None
        Seeds shuffling, augmentation, the validation split and the head's
        initialisation; with an int, training on CPU is then reproducible
        (a RandomState gives each fit a new seed drawn from it). The global
        torch random state is left as it was.
    warm_start : bool, default=False
        Continue from the current weights on the next ``fit``. The network
        must be the one fitted: after a change of ``backbone`` or
        ``weights``, ``fit`` (and ``partial_fit``, ``predict``) raise until
        the parameter is set back or a fit with ``warm_start=False`` builds
        the new network.
    verbose : int, default=0
        1 prints one line per epoch and shows a progress bar on long epochs.

    Attributes
    ----------
    classes_ : ndarray
        Class labels, in the order of ``predict_proba``'s columns; for a
        multi-label fit the column indices of ``y``, as in scikit-learn.
    multilabel_ : bool
        Whether the fit's ``y`` was a multi-label indicator matrix.
    model_ : torch.nn.Module
        The network: ``model_[0]`` the backbone, ``model_[1]`` the head.
    history_ : list of dict
        Per epoch: epoch, phase, train_loss, valid_loss, valid_accuracy
        (multi-label: every label right), lr, seconds.
    best_epoch_ : int
        Epoch whose weights the model holds.
    voting_head_ : VotingHead or None
        The voting heads (``head="voting"``), ``None`` where the linear head predicts.

    Notes
    -----
    After ``set_params`` on a fitted classifier, every method that reads the parameters
    (``predict``, ``transform``, ``partial_fit``, ``save_weights``, :mod:`skorchlite.inspect`...)
    checks them as ``fit`` does, with the same errors, and refuses a ``backbone`` or ``weights``
    that no longer give the fitted network; the test-time settings (``image_size``, ``tta``,
    ``head``, ``precision``, ``device``...) apply as they are now.

    A ``joblib.dump`` or ``pickle`` file runs whatever code it holds when loaded: never load one
    from an untrusted source. Share a model with :func:`skorchlite.save` and :func:`skorchlite.load`
    (as ``skorchlite finetune -o`` does), or :meth:`save_weights` and :meth:`load_weights`: data only.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite import FineTuneClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.integers(0, 80, (8, 32, 32, 3)), rng.integers(170, 256, (8, 32, 32, 3))]).astype(np.uint8)
    >>> y = ["dark"] * 8 + ["bright"] * 8
    >>> clf = FineTuneClassifier(unfreeze=1, epochs=2, image_size=64, validation_fraction=0, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (16, 2)
    """

    _parameter_constraints: dict = parameter_constraints()  # the one table: finetune/parameters.py
    # Set by fit; declared for mypy. weight_scale_ is None where a version did not
    # keep it: the next partial_fit then scales its own rows, as those versions did.
    classes_: np.ndarray
    multilabel_: bool
    history_: list[dict[str, Any]]
    weight_scale_: float | None
    _embedding_mode_: bool
    voting_head_: VotingHead | None
    _fitted_state = (
        "classes_",
        "model_",
        "layer_groups_",
        "_network_key_",
        "history_",
        "best_epoch_",
        "_embedding_mode_",
        "weight_scale_",
        "multilabel_",
        "voting_head_",
    )
    _fitted_defaults = {"weight_scale_": None, "multilabel_": False, "voting_head_": None}
    _params_before = {"head": "linear"}  # what versions before 0.6.0 predicted with

    def __init__(
        self,
        backbone: str | tuple[str, str | os.PathLike] | nn.Module = "efficientnet_lite0",
        *,
        weights: str | os.PathLike | None = "DEFAULT",
        preprocessing: Preprocessing | dict[str, Any] | None = None,
        layer_groups: Any = None,
        unfreeze: int | str = "all",
        epochs: int = 8,
        freeze_epochs: int = 2,
        batchnorm: BatchNormMode = "eval",
        lr: float = 5e-3,
        lr_decay: float = 0.5,
        optimizer: OptimizerName = "adamw",
        weight_decay: float = 0.01,
        momentum: float = 0.9,
        schedule: Schedule = "onecycle",
        warmup: float = 0.25,
        label_smoothing: float = 0.0,
        class_weight: Any = None,
        augment: Any = "default",
        head: str = "voting",
        tta: bool = False,
        layer: Any = None,
        image_size: int | None = None,
        batch_size: int = 32,
        validation_fraction: float = 0.1,
        n_iter_no_change: int | None = None,
        device: str | torch.device = "auto",
        precision: Precision = "float32",
        num_workers: int | None = None,
        compile: bool = False,
        cache: bool | str | os.PathLike = True,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
        verbose: int = 0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.preprocessing = preprocessing
        self.layer_groups = layer_groups
        self.unfreeze = unfreeze
        self.epochs = epochs
        self.freeze_epochs = freeze_epochs
        self.batchnorm = batchnorm
        self.lr = lr
        self.lr_decay = lr_decay
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.schedule = schedule
        self.warmup = warmup
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.augment = augment
        self.head = head
        self.tta = tta
        self.layer = layer
        self.image_size = image_size
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.precision = precision
        self.num_workers = num_workers
        self.compile = compile
        self.cache = cache
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    # ------------------------------------------------------------ fitting
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FineTuneClassifier:
        """Fine-tune on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : sequence of images
            Paths, PIL images or arrays, as for the extractor.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, all strings or all numbers; or a 0/1 indicator
            matrix, one column per label, for several labels per image.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss; as in scikit-learn, a weight of 2
            counts like the sample appearing twice, at any batch size (the weights, times
            ``class_weight``, are scaled to mean 1 over the training rows).

        Returns
        -------
        self : FineTuneClassifier

        Raises
        ------
        FloatingPointError
            When a loss, gradient or weight becomes infinite or NaN (a too high ``lr``). An error
            during training (this one, any other, or Ctrl-C, which otherwise ends training with a
            warning) leaves the weights of the best epoch this fit completed (and the linear head);
            if none, the estimator as it was before ``fit``, never half-set or non-finite.
        """
        warm = self.warm_start and hasattr(self, "model_")
        train_estimator(self, X, y, sample_weight, warm=warm, head_warmup=not warm, epochs=self.epochs)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> FineTuneClassifier:
        """Train one epoch (with the chosen groups unfrozen), from the current
        weights when fitted.

        Parameters
        ----------
        X, y, sample_weight
            As for :meth:`fit`.
        classes : array-like, default=None
            All labels; needed on the first call when ``y`` may not show
            every class (multi-label: ``y``'s columns say them all).

        Returns
        -------
        self : FineTuneClassifier
        """
        # Under another name: scikit-learn's _fit_context skips the constraints
        # in the partial_fit of a fitted estimator, which set_params may have broken.
        return self._partial_fit(X, y, classes, sample_weight)

    @fit_context(prefer_skip_nested_validation=True)
    def _partial_fit(self, X: Any, y: Any, classes: Any, sample_weight: Any) -> FineTuneClassifier:
        train_estimator(
            self,
            X,
            y,
            sample_weight,
            warm=hasattr(self, "model_"),
            head_warmup=False,
            epochs=1,
            classes=classes,
            partial=True,
        )
        return self

    # ------------------------------------------------------------ prediction
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``; for a
        multi-label fit, each label's probability of being present.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return infer(self, X, "predict", whole=True)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of each image; for a multi-label fit, the 0/1
        indicator matrix of the labels of probability above 0.5.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        proba = self.predict_proba(X)  # first: it raises NotFittedError before classes_ is read
        return (proba > 0.5).astype(np.int64) if self.multilabel_ else self.classes_[proba.argmax(1)]

    def transform(self, X: Any) -> np.ndarray:
        """The fine-tuned network's features at ``layer`` (by default the head's input).

        So a fine-tuned backbone can feed any scikit-learn estimator, :func:`skorchlite.find_duplicates`
        or a plot, also in a Pipeline. Runs the body in eval mode on the images, without test-time
        augmentation. ``get_feature_names_out`` names the columns ``finetuneclassifier0``, ``...1``...

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples, n_features), dtype float32
        """
        return infer(self, X, "transform", whole=False)

    @property
    def _n_features_out(self) -> int:  # the width of transform, which get_feature_names_out names
        return transform_width(self)

    # ------------------------------------------------------------ checks
    def _check_params(self) -> None:
        """What ``_parameter_constraints`` cannot say (:func:`.run.check_parameters`)."""
        check_parameters(FineTuneParameters.of(self))

    def _check_fitted(self, action: str) -> None:
        """``fit``'s checks, and that the parameters give the fitted network (:func:`.run.check_fitted`)."""
        check_fitted(self, action)

    # ------------------------------------------------------------ persistence
    @classmethod
    def _upgrade_fitted(cls, state: dict[str, Any]) -> dict[str, Any]:
        return upgrade_network_key(state)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # Pickles load on CPU-only machines: keep device tensors out.
        for key in ("model_", "voting_head_"):
            if state.get(key) is not None and any(p.device.type != "cpu" for p in state[key].parameters()):
                state[key] = copy.deepcopy(state[key]).cpu()
        return state

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = True  # a 0/1 indicator y; not multi-class multi-output
        tags.transformer_tags = TransformerTags(preserves_dtype=[])  # transform: the fine-tuned features
        tags.requires_fit = True
        return tags

    # ------------------------------------------------------------ sharing
    def save_weights(self, path: str | os.PathLike) -> Path:
        """Save the parameters, classes and network weights as data only.

        Unlike a pickle (``joblib.dump``), the file holds no code: a safetensors file of the weights,
        the other values as JSON in its metadata (:mod:`skorchlite.persistence`); :func:`skorchlite.save`
        wraps it.

        Parameters
        ----------
        path : str or path-like
            The file (``.pt`` by convention), replaced atomically.

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        ValueError
            When a parameter is not plain data (a callable ``augment``, say).
        """
        self._check_fitted("be saved")
        return save_fitted(self, path)

    @classmethod
    def load_weights(cls, path: str | os.PathLike) -> FineTuneClassifier:
        """A fitted classifier from a file of :meth:`save_weights`.

        Nothing in the file is executed (older ``torch.save`` files: ``torch.load(weights_only=True)``).
        The backbone's pretrained weights must be available, as for fitting: the network is rebuilt,
        then given the file's weights.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        FineTuneClassifier

        Raises
        ------
        ValueError
            One line naming the file: when it is not such a file, holds values of the wrong kind,
            does not fit the network, or was written by a newer format (naming the version that
            wrote it). A file of an older format loads, predicting as the version that wrote it.
        """
        return load_fitted(cls, path)
