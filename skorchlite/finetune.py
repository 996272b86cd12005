"""FineTuneClassifier: fine-tune a pretrained backbone as a scikit-learn classifier."""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import TransformerTags, check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d
from torch import nn

from .augmentation import default_augmentation
from .backbones import Backbone, Preprocessing, check_image_size, describe_backbone, estimator_backbone
from .engine import ImageStore, autocast, check_precision, decode_workers, embed, resolve_device
from .extractor import PretrainedFeatureExtractor
from .images import check_images
from .memory import freed_memory_kept
from .persistence import load_model_state, save_model_state
from .progress import progress_bar
from .training import (
    fold_frozen_batchnorm,
    make_optimizer,
    make_schedule,
    set_trainable,
    weighted_loss,
)

__all__ = ["FineTuneClassifier"]

_OPTIMIZERS = ("adamw", "sgd")
_SCHEDULES = ("onecycle", "cosine", None)
_BATCHNORM = ("eval", "train")


class _Phase:
    """One stage of training: which groups learn, for how many epochs, at what rate."""

    def __init__(self, name: str, n_unfrozen: int, epochs: int, lr: float):
        self.name, self.n_unfrozen, self.epochs, self.lr = name, n_unfrozen, epochs, lr


class FineTuneClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a pretrained backbone with a new linear head.

    Training follows fastai's ``fine_tune``: with ``unfreeze`` other than 0,
    the head first trains alone for ``freeze_epochs`` at ``lr``; then the
    last ``unfreeze`` layer groups of the backbone are unfrozen and train
    with the head for ``epochs``, each group towards the input at
    ``lr_decay`` times the rate of the group above it. The head's rate in
    that phase is ``lr / 2`` when a head phase ran before it, else ``lr``
    (``freeze_epochs=0``, ``warm_start``, ``partial_fit`` and ``unfreeze=0``
    train at ``lr`` throughout). Unlike fastai, whose unfrozen phase runs
    its own one-cycle from ``lr / 5`` and whose head phase rises over 99 %
    of its steps, both phases here follow ``schedule`` with the same
    ``warmup``.

    BatchNorm rule (as Keras's transfer-learning guide): the layers of
    frozen groups stay in inference mode during training, so their running
    statistics never move; they get no gradient either. By default
    (``batchnorm="eval"``) the BatchNorm layers of unfrozen groups also keep
    normalising with their ImageNet statistics while their scale and shift
    train, as Keras advises for fine-tuning: with a few hundred images,
    batch statistics of 32 images differ from the slowly updated running
    ones the model is evaluated with, and training drifts away from what
    the model does at prediction time. ``batchnorm="train"`` lets unfrozen
    BatchNorm layers normalise with batch statistics and update their
    running ones (PyTorch's ``model.train()``).

    With ``unfreeze=0`` and ``augment=None`` the backbone never changes and
    sees each image once: the head trains on embeddings served by
    :class:`~skorchlite.PretrainedFeatureExtractor` and its cache, which
    makes head-only training as cheap as the extractor pipeline.

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
    unfreeze : int or "all", default=2
        Number of layer groups to train, counted from the output; 0 trains
        the head only.
    epochs : int, default=10
        Epochs with the chosen groups unfrozen (or head-only epochs when
        ``unfreeze=0``).
    freeze_epochs : int, default=1
        Head warm-up epochs before unfreezing (ignored when ``unfreeze=0``
        and when continuing with ``warm_start``).
    batchnorm : {"eval", "train"}, default="eval"
        Mode of the BatchNorm layers of unfrozen groups while training (see
        above); frozen groups are always in eval mode.
    lr : float, default=1e-3
        Peak learning rate of the head.
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
        Passed to the cross-entropy loss.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss, as in scikit-learn.
    augment : "default", None or callable, default="default"
        Training-time augmentation before the backbone's own preprocessing,
        applied to each RGB PIL image as decoded once and kept in memory
        (its shorter side resized to the preprocessing's resize size, up to
        :data:`skorchlite.engine.DECODED_MEMORY_BYTES` for the whole set):
        ``"default"`` (:class:`~skorchlite.augmentation.DefaultAugmentation`:
        random resized crop, horizontal flip, small colour jitter, run in
        the decoding threads), ``None``, or any callable taking and
        returning a PIL image, such as a torchvision transform (run in the
        training thread, so that its use of torch's global random state
        stays reproducible). Evaluation always uses the backbone's
        preprocessing.
    tta : bool, default=False
        Test-time augmentation: ``predict_proba`` averages the image and its
        mirror image.
    image_size : int or None, default=None
        Side of the crop the network sees; ``None`` keeps the weights' own.
    batch_size : int, default=32
    validation_fraction : float, default=0.1
        Stratified share of the training data held out to pick the best
        epoch, whose weights are restored at the end; 0 makes no split.
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
        Train through ``torch.compile(model)``. Off by default: on the
        2-core development CPU the compiled training step of
        EfficientNet-Lite0 ran slower than the eager one, after its compile
        time (``docs/benchmarks.md``); try it on GPUs and long jobs.
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
        Class labels, in the order of ``predict_proba``'s columns.
    model_ : torch.nn.Module
        The network: ``model_[0]`` the backbone, ``model_[1]`` the head.
    history_ : list of dict
        Per epoch: epoch, phase, train_loss, valid_loss, valid_accuracy, lr,
        seconds.
    best_epoch_ : int
        Epoch whose weights the model holds.

    Notes
    -----
    A model saved with ``joblib.dump`` or ``pickle`` (as ``skorchlite
    finetune -o model.joblib`` does) is an ordinary pickle: loading it runs
    whatever code it holds, so never load one from an untrusted source. To
    share a model, use :meth:`save_weights` and :meth:`load_weights`: the
    parameters, classes and weights as data only, read with
    ``torch.load(weights_only=True)``.

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

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        weights: str | os.PathLike | None = "DEFAULT",
        preprocessing: Preprocessing | dict[str, Any] | None = None,
        layer_groups: Any = None,
        unfreeze: int | str = 2,
        epochs: int = 10,
        freeze_epochs: int = 1,
        batchnorm: str = "eval",
        lr: float = 1e-3,
        lr_decay: float = 0.5,
        optimizer: str = "adamw",
        weight_decay: float = 0.01,
        momentum: float = 0.9,
        schedule: str | None = "onecycle",
        warmup: float = 0.25,
        label_smoothing: float = 0.0,
        class_weight: Any = None,
        augment: Any = "default",
        tta: bool = False,
        image_size: int | None = None,
        batch_size: int = 32,
        validation_fraction: float = 0.1,
        n_iter_no_change: int | None = None,
        device: str | torch.device = "auto",
        precision: str = "float32",
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
        self.tta = tta
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

    # ------------------------------------------------------------ validation
    def _check_params(self) -> None:
        def positive_int(name: str, minimum: int = 1, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")

        positive_int("epochs")
        positive_int("freeze_epochs", 0)
        positive_int("batch_size")
        positive_int("image_size", optional=True)
        check_image_size(self.backbone, self.image_size, self.weights)
        positive_int("n_iter_no_change", optional=True)
        positive_int("num_workers", optional=True)
        unfreeze = self.unfreeze
        if not (
            unfreeze == "all"
            or (isinstance(unfreeze, (int, np.integer)) and not isinstance(unfreeze, bool) and unfreeze >= 0)
        ):
            raise ValueError(f"unfreeze must be 'all' or an integer >= 0, got {self.unfreeze!r}.")
        for name, low, high in [
            ("lr", 0, math.inf),
            ("lr_decay", 0, 1),
            ("weight_decay", 0, math.inf),
            ("momentum", 0, 1),
            ("warmup", 0, 1),
            ("label_smoothing", 0, 1),
            ("validation_fraction", 0, 1),
        ]:
            value = getattr(self, name)
            strict_low = name in ("lr", "lr_decay")
            # Written so that NaN fails too (every comparison with NaN is False).
            valid = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            if not (valid and (low < value if strict_low else low <= value) and value <= high):
                interval = f"{'(' if strict_low else '['}{low}, {high}{')' if high == math.inf else ']'}"
                raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}.")
        if self.validation_fraction >= 1:
            raise ValueError(f"validation_fraction must be below 1, got {self.validation_fraction!r}.")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}.")
        if self.batchnorm not in _BATCHNORM:
            raise ValueError(f"batchnorm must be one of {_BATCHNORM}, got {self.batchnorm!r}.")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        if not isinstance(self.compile, (bool, np.bool_)):
            raise ValueError(f"compile must be True or False, got {self.compile!r}.")
        if not (self.augment is None or self.augment == "default" or callable(self.augment)):
            raise ValueError(f"augment must be 'default', None or a callable transform, got {self.augment!r}.")
        if self.n_iter_no_change is not None and self.validation_fraction == 0:
            raise ValueError("n_iter_no_change needs a validation split: set validation_fraction > 0.")
        try:
            check_random_state(self.random_state)
        except ValueError as err:
            raise ValueError(
                f"random_state must be None, an int in [0, 2**32) or a numpy RandomState, got {self.random_state!r}."
            ) from err
        check_precision(self.precision, resolve_device(self.device))

    def _n_unfrozen(self, n_groups: int) -> int:
        if self.unfreeze == "all":
            return n_groups
        if self.unfreeze > n_groups:
            raise ValueError(
                f"unfreeze={self.unfreeze} but backbone {describe_backbone(self.backbone)} has {n_groups} layer groups; "
                f"use at most {n_groups} or 'all'."
            )
        return int(self.unfreeze)

    # ------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FineTuneClassifier:
        """Fine-tune on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : sequence of images
            Paths, PIL images or arrays, as for the extractor.
        y : array-like of shape (n_samples,)
            Class labels, all strings or all numbers.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss; as in
            scikit-learn, a weight of 2 counts like the sample appearing
            twice, at any batch size (the weights, times ``class_weight``,
            are scaled to mean 1 over the training rows).

        Returns
        -------
        self : FineTuneClassifier

        Raises
        ------
        FloatingPointError
            When a loss, gradient or weight becomes infinite or NaN (a too
            high ``lr``). An error during training (this one, any other, or
            Ctrl-C, which otherwise ends training with a warning) leaves the
            weights of the best epoch this fit completed; if it completed
            none, the estimator is left as it was before ``fit``: unfitted
            before the first fit, never half-set or non-finite.
        """
        warm = self.warm_start and hasattr(self, "model_")
        return self._fit(X, y, sample_weight, warm=warm, head_warmup=not warm, epochs=self.epochs)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> FineTuneClassifier:
        """Train one epoch (with the chosen groups unfrozen), from the current
        weights when fitted.

        Parameters
        ----------
        X, y, sample_weight
            As for :meth:`fit`.
        classes : array-like, default=None
            All labels; needed on the first call when ``y`` may not show
            every class.

        Returns
        -------
        self : FineTuneClassifier
        """
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: one call sees only its own rows. "
                "Compute the weights over all your labels with sklearn.utils.class_weight.compute_class_weight "
                "and pass them as a dict."
            )
        return self._fit(
            X,
            y,
            sample_weight,
            warm=hasattr(self, "model_"),
            head_warmup=False,
            epochs=1,
            classes=classes,
            partial=True,
        )

    def _encode_targets(self, y: np.ndarray, classes: Any, warm: bool) -> np.ndarray:
        if warm:
            unknown = set(np.unique(y)) - set(self.classes_)
            if unknown:
                raise ValueError(f"y has labels {sorted(unknown)} not seen in the first fit: {list(self.classes_)}.")
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(
                    f"classes={list(classes)!r} is not the same as in the first fit: {list(self.classes_)}."
                )
        else:
            labels = np.unique(y if classes is None else _check_labels(classes, "classes"))
            if len(labels) < 2:
                raise ValueError(f"y has a single class ({labels[0]!r}); a classifier needs at least two.")
            unknown = set(np.unique(y)) - set(labels)
            if unknown:
                raise ValueError(f"y has labels {sorted(unknown)} that are not in classes: {list(labels)}.")
            self.classes_ = labels
        return np.searchsorted(self.classes_, y)

    def _network_key(self) -> dict[str, str]:
        """What fixes the network's shape and starting weights (not image_size:
        every backbone here pools globally, so a warm start may continue at
        another size, as progressive resizing does)."""
        backbone = self._backbone()
        return {"backbone": backbone.name, "weights_sha256": backbone.weights.sha256}

    def _backbone(self, copy_model: bool = False) -> Backbone:
        return estimator_backbone(self, copy_model=copy_model)

    def _check_network_unchanged(self, action: str) -> None:
        fitted, now = self._network_key_, self._network_key()
        if fitted != now:
            changed = ", ".join(
                f"{k} ({fitted[k]!r} when fitted, {now[k]!r} now)" for k in fitted if fitted[k] != now[k]
            )
            raise ValueError(
                f"{changed} changed since this network was fitted, so it cannot {action}. "
                f"Set the parameter back, or fit again with warm_start=False (or a clone) to build the new network."
            )

    def _seed(self) -> int | None:
        """One seed per fit: an int random_state as given; a RandomState is
        drawn from, so each fit differs, as in scikit-learn."""
        if self.random_state is None:
            return None
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(self.random_state.randint(np.iinfo(np.int32).max))

    def _fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        *,
        warm: bool,
        head_warmup: bool,
        epochs: int,
        classes: Any = None,
        partial: bool = False,
    ) -> FineTuneClassifier:
        learned = {k: v for k, v in vars(self).items() if k.endswith("_")}
        trainer = None
        try:
            self._check_params()
            samples = check_images(X)
            y = _check_labels(y, "y")
            if len(samples) != len(y):
                raise ValueError(f"X has {len(samples)} images but y has {len(y)} labels.")
            if warm:
                self._check_network_unchanged("continue (warm_start or partial_fit)")
            target = self._encode_targets(y, classes, warm)
            sample_weight = _check_sample_weight(sample_weight, np.empty(len(samples)), ensure_non_negative=True)
            backbone = self._backbone()
            n_unfrozen = self._n_unfrozen(len(backbone.layer_groups))
            device = resolve_device(self.device)
            seed = self._seed()
            train, valid = self._split(target, seed)
            weight = self._loss_weights(sample_weight, target, train, valid, continuing=partial and warm)

            rng_scope = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
            with rng_scope:
                if seed is not None:
                    torch.manual_seed(seed)
                if not warm:
                    self._init_model(len(self.classes_))
                    self.history_ = []
                # The backbone stays pristine only while no fit ever unfroze it.
                pristine = not warm or self._embedding_mode_
                self._embedding_mode_ = pristine and n_unfrozen == 0 and self.augment is None
                phases = []
                if n_unfrozen and head_warmup and self.freeze_epochs:
                    phases.append(_Phase("head", 0, self.freeze_epochs, self.lr))
                phases.append(
                    _Phase(
                        "fine-tune" if n_unfrozen else "head", n_unfrozen, epochs, self.lr / 2 if phases else self.lr
                    )
                )
                data = _Data(self, samples, target, weight, device)
                trainer = _Trainer(self, data, train, valid, device)
                trainer.run(phases)
        except BaseException:
            if trainer is None or not trainer.epochs_done:
                # A fit that trained no epoch leaves the estimator as it was
                # (unfitted before the first fit), never half-set.
                for key in [k for k in vars(self) if k.endswith("_")]:
                    delattr(self, key)
                vars(self).update(learned)
            raise
        return self

    def _loss_weights(
        self, sample_weight: np.ndarray, target: np.ndarray, train: np.ndarray, valid: np.ndarray, continuing: bool
    ) -> np.ndarray:
        """Per-sample weights of the loss: sample_weight times class_weight,
        scaled to mean 1 over the training rows (see ``weighted_loss``).

        The scale is that of the first ``fit``/``partial_fit`` call when
        ``continuing`` a ``partial_fit`` series, so that a later chunk's
        weights count as much as they say against the earlier ones.
        """
        weight = sample_weight.astype(np.float64)
        if self.class_weight is not None:
            # "balanced" counts the training rows: those the loss sees.
            labels = self.classes_[target[train]]
            per_class = compute_class_weight(self.class_weight, classes=self.classes_, y=labels)
            bad = [c for c, w in zip(self.classes_, per_class, strict=True) if not (np.isfinite(w) and w >= 0)]
            if bad:
                raise ValueError(
                    f"class_weight must give every class a finite weight >= 0; class {bad[0]!r} gets "
                    f"{per_class[list(self.classes_).index(bad[0])]!r}."
                )
            weight = weight * per_class[target]
        for rows, name in [(train, "training"), (valid, "validation")]:
            if len(rows) and not weight[rows].sum() > 0:
                raise ValueError(
                    f"The {len(rows)} {name} rows have zero total weight (sample_weight times class_weight), so "
                    f"their loss is undefined; give weight to more samples"
                    + (", or set validation_fraction=0." if name == "validation" else ".")
                )
        if not continuing:
            self.weight_scale_ = float(weight[train].mean())
        return (weight / self.weight_scale_).astype(np.float32)

    def _init_model(self, n_classes: int) -> None:
        backbone = self._backbone(copy_model=True)
        head = nn.Linear(backbone.embedding_dim, n_classes)
        self.model_ = nn.Sequential(backbone.model, head)
        self.layer_groups_ = backbone.layer_groups
        self._network_key_ = self._network_key()

    def _split(self, target: np.ndarray, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        indices = np.arange(len(target))
        if not self.validation_fraction:
            return indices, indices[:0]
        try:
            return train_test_split(indices, test_size=self.validation_fraction, stratify=target, random_state=seed)
        except ValueError as err:
            raise ValueError(
                f"Cannot hold out a stratified validation_fraction={self.validation_fraction} ({err}); "
                "lower it, set it to 0, or give more images per class."
            ) from err

    # ------------------------------------------------------------ prediction
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self, "model_")
        self._check_network_unchanged("predict")
        samples = check_images(X)
        device = resolve_device(self.device)
        data = _Data(self, samples, None, None, device)
        model = self.model_.to(device, memory_format=torch.channels_last).eval()
        out = np.empty((len(samples), len(self.classes_)), dtype=np.float32)
        with torch.inference_mode(), autocast(device, self.precision):
            for rows, logits in data.logits(model, np.arange(len(samples)), tta=self.tta):
                out[rows] = logits.softmax(1).float().cpu().numpy()
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of each image.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[proba.argmax(1)]

    def transform(self, X: Any) -> np.ndarray:
        """The fine-tuned network's penultimate features (the head's input).

        So a fine-tuned backbone can feed any scikit-learn estimator,
        :func:`skorchlite.find_duplicates` or a plot, also as a step of a
        Pipeline. Runs the engine's ``embed`` with the body in eval mode.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples, n_features), dtype float32
        """
        check_is_fitted(self, "model_")
        self._check_network_unchanged("transform")
        samples = check_images(X)
        device = resolve_device(self.device)
        body = self.model_[0].to(device, memory_format=torch.channels_last).eval()
        out = np.empty((len(samples), self.model_[1].in_features), dtype=np.float32)
        batches = embed(
            body,
            samples,
            range(len(samples)),
            self._backbone().preprocessing.resized(self.image_size),
            batch_size=self.batch_size,
            device=device,
            precision=self.precision,
            workers=decode_workers(self.num_workers),
        )
        for rows, _, vectors in batches:
            out[rows] = vectors
        return out

    # ------------------------------------------------------------ persistence
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # Pickles load on CPU-only machines: keep device tensors out.
        if "model_" in state and any(p.device.type != "cpu" for p in self.model_.parameters()):
            state["model_"] = copy.deepcopy(self.model_).cpu()
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = True
        tags.transformer_tags = TransformerTags(preserves_dtype=[])  # transform: the fine-tuned features
        tags.requires_fit = True
        return tags

    # ------------------------------------------------------------ sharing
    def save_weights(self, path: str | os.PathLike) -> Path:
        """Save the parameters, classes and network weights as data only.

        Unlike a pickle (``joblib.dump``), the file holds no code: it is a
        ``torch.save`` archive of plain values and tensors, which
        :meth:`load_weights` reads with ``torch.load(weights_only=True)``.
        Share a model this way.

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
        check_is_fitted(self, "model_")
        if isinstance(self.backbone, nn.Module):
            raise ValueError(
                f"backbone is a module ({type(self.backbone).__name__}), which a data-only file cannot hold; "
                "pickle the estimator (joblib.dump) instead, or save the module's state dict and pass "
                "backbone=(architecture name, checkpoint path)."
            )
        params = self.get_params(deep=False)
        if isinstance(self.preprocessing, Preprocessing):
            params["preprocessing"] = asdict(self.preprocessing)
        fitted = {
            "classes_": self.classes_,
            "model_": self.model_.state_dict(),
            "history_": self.history_,
            "best_epoch_": self.best_epoch_,
            "embedding_mode_": self._embedding_mode_,
        }
        return save_model_state(path, type(self).__name__, params, fitted)

    @classmethod
    def load_weights(cls, path: str | os.PathLike) -> FineTuneClassifier:
        """A fitted classifier from a file of :meth:`save_weights`.

        Nothing in the file is executed. The backbone's pretrained weights
        must be available, as for fitting (the network is rebuilt, then its
        weights are replaced by the file's).

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        FineTuneClassifier

        Raises
        ------
        ValueError
            When the file is not such a file or does not fit the network.
        """
        params, fitted = load_model_state(path, cls.__name__, cls._get_param_names())
        clf = cls(**params)
        clf._check_params()
        clf.classes_ = fitted["classes_"]
        clf._init_model(len(clf.classes_))
        try:
            clf.model_.load_state_dict(fitted["model_"])
        except (RuntimeError, TypeError, AttributeError) as err:
            first_line = str(err).strip().splitlines()[0]
            raise ValueError(
                f"The weights in {str(path)!r} do not fit backbone {describe_backbone(clf.backbone)}: {first_line}"
            ) from None
        clf.history_, clf.best_epoch_ = list(fitted["history_"]), int(fitted["best_epoch_"])
        clf._embedding_mode_ = bool(fitted["embedding_mode_"])
        return clf


class _Data:
    """Turns row indices into network inputs: embeddings (head-only mode)
    or decoded, augmented, preprocessed image tensors from the engine."""

    def __init__(self, clf: FineTuneClassifier, samples: list, target: Any, weight: Any, device: torch.device):
        self.clf, self.samples, self.device = clf, samples, device
        self.target = None if target is None else torch.as_tensor(target)
        self.weight = None if weight is None else torch.as_tensor(weight)
        preprocessing = clf._backbone().preprocessing.resized(clf.image_size)
        augment = clf.augment
        self.augment = default_augmentation(preprocessing) if augment == "default" else augment
        self.images = ImageStore(samples, preprocessing, decode_workers(clf.num_workers))
        self._embeddings: torch.Tensor | None = None

    def embeddings(self) -> torch.Tensor:
        if self._embeddings is None:
            backbone, weights, preprocessing = self.clf.backbone, self.clf.weights, self.clf.preprocessing
            if weights is None:  # a random initialisation seeded by random_state, which the extractor lacks
                resolved = self.clf._backbone()
                backbone, weights, preprocessing = resolved.model, "DEFAULT", resolved.preprocessing
            extractor = PretrainedFeatureExtractor(
                backbone=backbone,
                weights=weights,
                preprocessing=preprocessing,
                image_size=self.clf.image_size,
                batch_size=self.clf.batch_size,
                device=self.clf.device,
                precision=self.clf.precision,
                num_workers=self.clf.num_workers,
                cache=self.clf.cache,
                verbose=self.clf.verbose,
            )
            self._embeddings = torch.from_numpy(extractor.fit_transform(self.samples)).to(self.device)
        return self._embeddings

    def batches(
        self, indices: np.ndarray, train: bool, embeddings: bool, seeds: list[int] | None = None
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(rows, inputs) in the order of ``indices``: embeddings for the
        head, or preprocessed images for the whole network (augmented when
        ``train``, with ``seeds[k]`` drawing row ``indices[k]``'s changes)."""
        size = self.clf.batch_size
        if embeddings:
            for start in range(0, len(indices), size):
                rows = indices[start : start + size]
                yield rows, self.embeddings()[torch.as_tensor(rows, device=self.device)]
            return
        augment = self.augment if train else None
        yield from self.images.batches(indices.tolist(), size, self.device, augment=augment, seeds=seeds)

    def logits(
        self, model: nn.Sequential, indices: np.ndarray, tta: bool = False
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        if self.clf._embedding_mode_ and not tta:
            for rows, features in self.batches(indices, train=False, embeddings=True):
                yield rows, model[1](features)
            return
        for rows, images in self.batches(indices, train=False, embeddings=False):
            logits = model(images)
            if tta:
                logits = (logits.softmax(1) + model(images.flip(3)).softmax(1)).div(2).log()
            yield rows, logits


class _Trainer:
    """The epoch loop of one ``fit``: phases, validation, best weights,
    early stopping, non-finite values and Ctrl-C.

    Whatever stops training early (an exception, Ctrl-C) leaves the model
    with the best weights of the epochs this fit completed; when it completed
    none, with the weights it started from.
    """

    def __init__(
        self, clf: FineTuneClassifier, data: _Data, train: np.ndarray, valid: np.ndarray, device: torch.device
    ):
        self.clf, self.data, self.train, self.valid, self.device = clf, data, train, valid, device
        self.model: nn.Sequential = clf.model_.to(device, memory_format=torch.channels_last)
        self.generator = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,)).item())
        )  # drawn from the (seeded) global stream, so random_state fixes shuffling too
        # The validation loss is the weighted mean over the whole validation set.
        self.valid_weight = float(data.weight[torch.as_tensor(valid)].sum())
        self.best_loss = np.inf
        self.best_epoch = 0
        self.network: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.good_state = self._snapshot()
        self.good_epoch = clf.best_epoch_ if clf.history_ else 0  # the epoch good_state holds
        self.epochs_done = 0
        self.stale = 0

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def run(self, phases: list[_Phase]) -> None:
        clf = self.clf
        try:
            with freed_memory_kept():  # across epochs: one setting for the whole fit
                for phase in phases:
                    if self._run_phase(phase):
                        break
        except KeyboardInterrupt:
            self._restore()
            if not self.epochs_done:
                raise  # nothing trained: fit leaves the estimator as it was
            epoch = clf.history_[-1]["epoch"]
            warnings.warn(
                f"Training interrupted after epoch {epoch}; the estimator keeps the weights of epoch "
                f"{clf.best_epoch_} and can predict.",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        except FloatingPointError as err:
            self._restore()
            kept = (
                f"the estimator keeps the weights of epoch {clf.best_epoch_}"
                if self.epochs_done
                else "no epoch of this fit completed, so the estimator is left as it was before fit"
            )
            raise FloatingPointError(
                f"{err}; {kept}. Lower lr, or check the images and sample weights."
            ) from err.__cause__
        except BaseException:
            self._restore()
            raise
        self._restore()

    def _restore(self) -> None:
        """Hold the best epoch's weights (by validation loss), else the last good ones."""
        state = self.best_state if self.best_state is not None else self.good_state
        self.model.load_state_dict(state)
        # best_epoch is of this fit: history_ may hold earlier fits' epochs.
        self.clf.best_epoch_ = self.best_epoch if self.best_state is not None else self.good_epoch

    def _diverged(self, what: str, epoch: int, lr: float) -> FloatingPointError:
        return FloatingPointError(f"The {what} in epoch {epoch} at learning rate {lr:.3g}")

    def _run_phase(self, phase: _Phase) -> bool:
        """Train one phase; True when early stopping ends the whole fit."""
        clf, body, head = self.clf, self.model[0], self.model[1]
        in_eval = set_trainable(body, clf.layer_groups_, phase.n_unfrozen, batchnorm=clf.batchnorm)
        optimizer = make_optimizer(
            head,
            body,
            clf.layer_groups_,
            phase.n_unfrozen,
            name=clf.optimizer,
            lr=phase.lr,
            lr_decay=clf.lr_decay,
            weight_decay=clf.weight_decay,
            momentum=clf.momentum,
        )
        steps = -(-len(self.train) // clf.batch_size)
        schedule = make_schedule(optimizer, clf.schedule, steps * phase.epochs, clf.warmup)
        for _ in range(phase.epochs):
            epoch = len(clf.history_) + 1
            start = time.perf_counter()
            train_loss, lr = self._train_epoch(epoch, optimizer, schedule, in_eval, phase.n_unfrozen)
            # The last step's weights meet no loss of this epoch: check them here.
            if not _all_finite(t for t in self.model.state_dict().values() if t.is_floating_point()):
                raise self._diverged("weights became non-finite (inf or NaN)", epoch, lr)
            record = {"epoch": epoch, "phase": phase.name, "train_loss": train_loss}
            record.update(self._validate())
            if len(self.valid) and not math.isfinite(record["valid_loss"]):
                raise self._diverged(f"validation loss became {record['valid_loss']}", epoch, lr)
            if not len(self.valid) and not self._outputs_finite():
                raise self._diverged("network's outputs became non-finite (finite weights too large)", epoch, lr)
            record["lr"] = lr
            record["seconds"] = time.perf_counter() - start
            clf.history_.append(record)
            self.good_state, self.good_epoch = self._snapshot(), epoch
            self.epochs_done += 1
            if clf.verbose:
                print(_format_epoch(record), flush=True)
            if len(self.valid):
                if record["valid_loss"] < self.best_loss:
                    self.best_loss, self.best_state, self.stale = record["valid_loss"], self.good_state, 0
                    self.best_epoch = epoch
                else:
                    self.stale += 1
                    if clf.n_iter_no_change is not None and self.stale >= clf.n_iter_no_change:
                        if clf.verbose:
                            print(f"Early stopping: no better validation loss for {self.stale} epochs.")
                        return True
        return False

    def _training_network(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The network of the training steps, built once per fit: the model
        with frozen-statistics BatchNorm folded into its convolutions
        (sharing its parameters), compiled when asked."""
        if self.network is None:
            self.network = fold_frozen_batchnorm(self.model)
            if self.clf.compile:
                self.network = torch.compile(self.network)
        return self.network

    def _train_epoch(
        self, epoch: int, optimizer: Any, schedule: Any, in_eval: list[nn.Module], n_unfrozen: int
    ) -> tuple[float, float]:
        """One pass over the training rows: (mean loss, head lr of the last step)."""
        clf, data = self.clf, self.data
        self.model.train()
        for module in in_eval:
            module.eval()  # frozen (and, by default, every) BatchNorm keeps its running statistics
        order = self.train[torch.randperm(len(self.train), generator=self.generator).numpy()]
        # One seed per image, drawn in order: augmentation in any number of threads repeats.
        seeds = torch.randint(0, 2**62, (len(order),), generator=self.generator).tolist()
        head = self.model[1]
        forward: Callable[[torch.Tensor], torch.Tensor]
        if clf._embedding_mode_:
            forward = head
        elif n_unfrozen == 0:
            body = self.model[0]

            def forward(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():  # a frozen body needs no graph
                    features = body(x)
                return head(features)
        else:
            forward = self._training_network()
        total, count, last_lr = 0.0, 0, 0.0
        # A bar only where an epoch is long enough to wait for.
        progress = progress_bar(len(order), clf.verbose, f"epoch {epoch}", min_total=256)
        try:
            for rows, inputs in data.batches(order, train=True, embeddings=clf._embedding_mode_, seeds=seeds):
                target = data.target[rows].to(self.device)
                weight = data.weight[rows].to(self.device)
                with autocast(self.device, clf.precision):
                    # Divided by the rows, not the batch's weight sum: see weighted_loss.
                    loss = weighted_loss(forward(inputs), target, weight, clf.label_smoothing) / len(rows)
                if not torch.isfinite(loss):
                    raise self._diverged(f"training loss became {loss.item()}", epoch, optimizer.param_groups[0]["lr"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._step(optimizer, epoch)
                last_lr = optimizer.param_groups[0]["lr"]
                schedule.step()
                total += loss.item() * len(rows)
                count += len(rows)
                progress.update(len(rows))
        finally:
            progress.close()
        return total / count, last_lr

    def _step(self, optimizer: Any, epoch: int) -> None:
        lr = optimizer.param_groups[0]["lr"]
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not _all_finite(p.grad for p in params):
            raise self._diverged("gradients became non-finite (inf or NaN)", epoch, lr)
        try:
            optimizer.step()
        except RuntimeError as err:
            # torch's float32 optimisers refuse a step size beyond float32's range.
            if "overflow" not in str(err):
                raise
            raise self._diverged(f"optimizer step overflowed ({err})", epoch, lr) from err

    def _outputs_finite(self) -> bool:
        """Whether the weights now held give finite logits on one training
        batch: without validation, nothing else evaluates the last step's."""
        self.model.eval()
        with torch.inference_mode():
            return all(
                bool(logits.isfinite().all())
                for _, logits in self.data.logits(self.model, self.train[: self.clf.batch_size])
            )

    def _validate(self) -> dict[str, float]:
        if not len(self.valid):
            return {"valid_loss": float("nan"), "valid_accuracy": float("nan")}
        self.model.eval()
        data, clf = self.data, self.clf
        loss, correct = 0.0, 0
        with torch.inference_mode(), autocast(self.device, clf.precision):
            for rows, logits in data.logits(self.model, self.valid):
                target = data.target[rows].to(self.device)
                weight = data.weight[rows].to(self.device)
                loss += weighted_loss(logits.float(), target, weight, clf.label_smoothing).item()
                correct += int((logits.argmax(1) == target).sum())
        return {"valid_loss": loss / self.valid_weight, "valid_accuracy": correct / len(self.valid)}


def _all_finite(tensors: Iterator[torch.Tensor]) -> bool:
    flags = [t.isfinite().all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True  # one device sync, not one per tensor


def _check_labels(y: Any, name: str) -> np.ndarray:
    """Labels as a 1-D array of one type, as scikit-learn's classifiers take them."""
    if y is None:
        raise ValueError(f"FineTuneClassifier requires {name} to be passed, but the target {name} is None.")
    # Checked before numpy sees them: np.asarray(["a", 1]) would silently make 1 into "1".
    kinds = {}
    for i, label in enumerate(np.asarray(y, dtype=object).ravel()):
        if label is None:
            raise ValueError(f"{name}[{i}] is None: a missing label. Drop that sample or give it a label.")
        kind = (
            "str" if isinstance(label, str) else "number" if isinstance(label, numbers.Number) else type(label).__name__
        )
        kinds.setdefault(kind, i)
    if len(kinds) > 1:
        found = ", ".join(f"{kind} (first at {i})" for kind, i in kinds.items())
        raise TypeError(f"{name} mixes label types: {found}. Labels must be all strings or all numbers.")
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    return y


def _format_epoch(record: dict[str, Any]) -> str:
    return (
        f"epoch {record['epoch']:3d} {record['phase']:>9}  train_loss {record['train_loss']:.4f}  "
        f"valid_loss {record['valid_loss']:.4f}  valid_acc {record['valid_accuracy']:.3f}  "
        f"lr {record['lr']:.2e}  {record['seconds']:.1f}s"
    )
