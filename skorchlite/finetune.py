"""FineTuneClassifier: fine-tune a pretrained backbone as a scikit-learn classifier."""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted
from torch import nn

from .backbones import check_image_size, get_backbone
from .extractor import PretrainedFeatureExtractor, resolve_device
from .images import check_images, decode_workers, iter_batches, load_rgb
from .progress import progress_bar
from .training import (
    default_augmentation,
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
    with the head for ``epochs`` at ``lr / 2``, each group towards the input
    at ``lr_decay`` times the rate of the group above it.

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
    backbone : str, default="efficientnet_lite0"
        A name from :func:`skorchlite.backbones.list_backbones`.
    weights : str or path-like, default="DEFAULT"
        Weights of the backbone, as for the extractor.
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
        Training-time augmentation of each RGB PIL image before the
        backbone's own preprocessing: ``"default"`` (random resized crop,
        horizontal flip, small colour jitter), ``None``, or any torchvision
        transform. Evaluation always uses the backbone's preprocessing.
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
        CUDA when available, else CPU. Mixed precision is used on CUDA only.
    num_workers : int or None, default=None
        Image-decoding threads; ``None`` follows torch's thread count.
    cache : bool, str or path-like, default=True
        Embedding cache for head-only training (see the extractor).
    random_state : int or None, default=None
        Seeds shuffling, augmentation, the validation split and the head's
        initialisation; training on CPU is then reproducible. The global
        torch random state is left as it was.
    warm_start : bool, default=False
        Continue from the current weights on the next ``fit``.
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
        weights: str | os.PathLike = "DEFAULT",
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
        num_workers: int | None = None,
        cache: bool | str | os.PathLike = True,
        random_state: int | None = None,
        warm_start: bool = False,
        verbose: int = 0,
    ):
        self.backbone = backbone
        self.weights = weights
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
        self.num_workers = num_workers
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
        if not (unfreeze == "all" or (isinstance(unfreeze, (int, np.integer)) and not isinstance(unfreeze, bool) and unfreeze >= 0)):
            raise ValueError(f"unfreeze must be 'all' or an integer >= 0, got {self.unfreeze!r}.")
        for name, low, high in [
            ("lr", 0, np.inf),
            ("lr_decay", 0, 1),
            ("weight_decay", 0, np.inf),
            ("momentum", 0, 1),
            ("warmup", 0, 1),
            ("label_smoothing", 0, 1),
            ("validation_fraction", 0, 1),
        ]:
            value = getattr(self, name)
            strict_low = name in ("lr", "lr_decay")
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < low or value > high or (strict_low and value == low):
                raise ValueError(f"{name} must be a number in {'(' if strict_low else '['}{low}, {high}], got {value!r}.")
        if self.validation_fraction >= 1:
            raise ValueError(f"validation_fraction must be below 1, got {self.validation_fraction!r}.")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}.")
        if self.batchnorm not in _BATCHNORM:
            raise ValueError(f"batchnorm must be one of {_BATCHNORM}, got {self.batchnorm!r}.")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        if not (self.augment is None or self.augment == "default" or callable(self.augment)):
            raise ValueError(f"augment must be 'default', None or a callable transform, got {self.augment!r}.")
        if self.n_iter_no_change is not None and self.validation_fraction == 0:
            raise ValueError("n_iter_no_change needs a validation split: set validation_fraction > 0.")
        resolve_device(self.device)

    def _n_unfrozen(self, n_groups: int) -> int:
        if self.unfreeze == "all":
            return n_groups
        if self.unfreeze > n_groups:
            raise ValueError(
                f"unfreeze={self.unfreeze} but backbone {self.backbone!r} has {n_groups} layer groups; "
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
            Class labels (strings or integers).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss.

        Returns
        -------
        self : FineTuneClassifier
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
        return self._fit(X, y, sample_weight, warm=hasattr(self, "model_"), head_warmup=False, epochs=1, classes=classes)

    def _encode_targets(self, y: Any, classes: Any, warm: bool) -> np.ndarray:
        check_classification_targets(y)
        y = np.asarray(y)
        if warm:
            unknown = set(np.unique(y)) - set(self.classes_)
            if unknown:
                raise ValueError(f"y has labels {sorted(unknown)} not seen in the first fit: {list(self.classes_)}.")
        else:
            labels = np.unique(y if classes is None else np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(f"y has a single class ({labels[0]!r}); a classifier needs at least two.")
            unknown = set(np.unique(y)) - set(labels)
            if unknown:
                raise ValueError(f"y has labels {sorted(unknown)} that are not in classes: {list(labels)}.")
            self.classes_ = labels
        return np.searchsorted(self.classes_, y)

    def _fit(
        self, X: Any, y: Any, sample_weight: Any, *, warm: bool, head_warmup: bool, epochs: int, classes: Any = None
    ) -> FineTuneClassifier:
        self._check_params()
        samples = check_images(X)
        if len(samples) != len(y):
            raise ValueError(f"X has {len(samples)} images but y has {len(y)} labels.")
        target = self._encode_targets(y, classes, warm)
        weight = _check_sample_weight(sample_weight, np.empty(len(samples)), dtype=np.float32)
        backbone = get_backbone(self.backbone, self.weights)
        n_unfrozen = self._n_unfrozen(len(backbone.layer_groups))
        device = resolve_device(self.device)

        rng_scope = torch.random.fork_rng(devices=[]) if self.random_state is not None else contextlib.nullcontext()
        with rng_scope:
            if self.random_state is not None:
                torch.manual_seed(self.random_state)
            if not warm:
                self._init_model(len(self.classes_))
                self.history_ = []
            train, valid = self._split(target)
            # The backbone stays pristine only while no fit ever unfroze it.
            pristine = not warm or self._embedding_mode_
            self._embedding_mode_ = pristine and n_unfrozen == 0 and self.augment is None
            phases = []
            if n_unfrozen and head_warmup and self.freeze_epochs:
                phases.append(_Phase("head", 0, self.freeze_epochs, self.lr))
            phases.append(_Phase("fine-tune" if n_unfrozen else "head", n_unfrozen, epochs, self.lr / 2 if phases else self.lr))
            data = _Data(self, samples, target, weight, device)
            _Trainer(self, data, train, valid, device).run(phases)
        return self

    def _init_model(self, n_classes: int) -> None:
        backbone = get_backbone(self.backbone, self.weights, copy_model=True)
        head = nn.Linear(backbone.embedding_dim, n_classes)
        self.model_ = nn.Sequential(backbone.model, head)
        self.layer_groups_ = backbone.layer_groups

    def _split(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.arange(len(target))
        if not self.validation_fraction:
            return indices, indices[:0]
        try:
            return train_test_split(
                indices, test_size=self.validation_fraction, stratify=target, random_state=self.random_state
            )
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
        samples = check_images(X)
        device = resolve_device(self.device)
        data = _Data(self, samples, None, None, device)
        model = self.model_.to(device).eval()
        out = np.empty((len(samples), len(self.classes_)), dtype=np.float32)
        with torch.inference_mode():
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
        tags.requires_fit = True
        return tags


class _Data:
    """Turns row indices into network inputs: embeddings (head-only mode)
    or decoded, augmented, preprocessed image tensors."""

    def __init__(self, clf: FineTuneClassifier, samples: list, target: Any, weight: Any, device: torch.device):
        self.clf, self.samples, self.device = clf, samples, device
        self.target = None if target is None else torch.as_tensor(target)
        self.weight = None if weight is None else torch.as_tensor(weight)
        self.preprocessing = get_backbone(clf.backbone, clf.weights).preprocessing.resized(clf.image_size)
        self.transform = self.preprocessing.transform()
        augment = clf.augment
        self.augment = default_augmentation(self.preprocessing) if augment == "default" else augment
        self.workers = decode_workers(clf.num_workers)
        self._embeddings: torch.Tensor | None = None

    def embeddings(self) -> torch.Tensor:
        if self._embeddings is None:
            extractor = PretrainedFeatureExtractor(
                backbone=self.clf.backbone,
                weights=self.clf.weights,
                image_size=self.clf.image_size,
                batch_size=self.clf.batch_size,
                device=self.clf.device,
                num_workers=self.clf.num_workers,
                cache=self.clf.cache,
                verbose=self.clf.verbose,
            )
            self._embeddings = torch.from_numpy(extractor.fit_transform(self.samples)).to(self.device)
        return self._embeddings

    def batches(
        self, indices: np.ndarray, train: bool, embeddings: bool
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(rows, inputs) in the order of ``indices``: embeddings for the
        head, or preprocessed images for the whole network."""
        size = self.clf.batch_size
        if embeddings:
            for start in range(0, len(indices), size):
                rows = indices[start : start + size]
                yield rows, self.embeddings()[torch.as_tensor(rows, device=self.device)]
            return
        augment = self.augment if train else None

        def prepare(i: int) -> Any:
            return load_rgb(self.samples[i], i)

        for rows, images in iter_batches(indices.tolist(), prepare, size, self.workers):
            # Random transforms run here, in order, so a seed reproduces them.
            if augment is not None:
                images = [augment(image) for image in images]
            batch = torch.stack([self.transform(image) for image in images])
            yield np.asarray(rows), batch.to(self.device, non_blocking=True)

    def logits(self, model: nn.Sequential, indices: np.ndarray, tta: bool = False) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
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
    early stopping, non-finite losses and Ctrl-C."""

    def __init__(self, clf: FineTuneClassifier, data: _Data, train: np.ndarray, valid: np.ndarray, device: torch.device):
        self.clf, self.data, self.train, self.valid, self.device = clf, data, train, valid, device
        self.model: nn.Sequential = clf.model_.to(device)
        self.generator = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,)).item())
        )  # drawn from the (seeded) global stream, so random_state fixes shuffling too
        if clf.class_weight is None:
            self.class_weight = None
        else:
            labels = clf.classes_[data.target[torch.as_tensor(train)].numpy()]
            weights = compute_class_weight(clf.class_weight, classes=clf.classes_, y=labels)
            self.class_weight = torch.as_tensor(weights, dtype=torch.float32, device=device)
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.best_loss = np.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.good_state = self._snapshot()
        self.stale = 0

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def run(self, phases: list[_Phase]) -> None:
        clf = self.clf
        try:
            for phase in phases:
                if self._run_phase(phase):
                    break
        except KeyboardInterrupt:
            self._restore()
            epoch = clf.history_[-1]["epoch"] if clf.history_ else 0
            warnings.warn(
                f"Training interrupted after epoch {epoch}; the estimator keeps the weights of epoch "
                f"{clf.best_epoch_} and can predict.",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        self._restore()

    def _restore(self) -> None:
        """Hold the best epoch's weights (by validation loss), else the last good ones."""
        clf = self.clf
        state = self.best_state if self.best_state is not None else self.good_state
        self.model.load_state_dict(state)
        if self.best_state is not None:
            clf.best_epoch_ = self.best_epoch  # of this fit: history_ may hold earlier fits' epochs
        else:
            clf.best_epoch_ = clf.history_[-1]["epoch"] if clf.history_ else 0

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
            record = {"epoch": epoch, "phase": phase.name, "train_loss": train_loss}
            record.update(self._validate())
            record["lr"] = lr
            record["seconds"] = time.perf_counter() - start
            clf.history_.append(record)
            self.good_state = self._snapshot()
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

    def _train_epoch(
        self, epoch: int, optimizer: Any, schedule: Any, in_eval: list[nn.Module], n_unfrozen: int
    ) -> tuple[float, float]:
        """One pass over the training rows: (mean loss, head lr of the last step)."""
        clf, data = self.clf, self.data
        self.model.train()
        for module in in_eval:
            module.eval()  # frozen (and, by default, every) BatchNorm keeps its running statistics
        order = self.train[torch.randperm(len(self.train), generator=self.generator).numpy()]
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
            forward = self.model
        total, count, last_lr = 0.0, 0, 0.0
        # A bar only where an epoch is long enough to wait for.
        progress = progress_bar(len(order), clf.verbose, f"epoch {epoch}", min_total=256)
        try:
            for rows, inputs in data.batches(order, train=True, embeddings=clf._embedding_mode_):
                target = data.target[rows].to(self.device)
                weight = data.weight[rows].to(self.device)
                with torch.autocast("cuda", enabled=self.amp):
                    loss = weighted_loss(forward(inputs), target, weight, self.class_weight, clf.label_smoothing)
                if not torch.isfinite(loss):
                    self.model.load_state_dict(self.good_state)
                    clf.best_epoch_ = clf.history_[-1]["epoch"] if clf.history_ else 0
                    raise FloatingPointError(
                        f"The training loss became {loss.item()} in epoch {epoch} at learning rate "
                        f"{optimizer.param_groups[0]['lr']:.3g}; the estimator keeps the weights from before "
                        f"that epoch. Lower lr, or check the images and sample weights."
                    )
                optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
                last_lr = optimizer.param_groups[0]["lr"]
                schedule.step()
                total += loss.item() * len(rows)
                count += len(rows)
                progress.update(len(rows))
        finally:
            progress.close()
        return total / count, last_lr

    def _validate(self) -> dict[str, float]:
        if not len(self.valid):
            return {"valid_loss": float("nan"), "valid_accuracy": float("nan")}
        self.model.eval()
        data, clf = self.data, self.clf
        loss, correct = 0.0, 0
        with torch.inference_mode():
            for rows, logits in data.logits(self.model, self.valid):
                target = data.target[rows].to(self.device)
                weight = data.weight[rows].to(self.device)
                loss += weighted_loss(logits.float(), target, weight, self.class_weight, clf.label_smoothing).item() * len(rows)
                correct += int((logits.argmax(1) == target).sum())
        return {"valid_loss": loss / len(self.valid), "valid_accuracy": correct / len(self.valid)}


def _format_epoch(record: dict[str, Any]) -> str:
    return (
        f"epoch {record['epoch']:3d} {record['phase']:>9}  train_loss {record['train_loss']:.4f}  "
        f"valid_loss {record['valid_loss']:.4f}  valid_acc {record['valid_accuracy']:.3f}  "
        f"lr {record['lr']:.2e}  {record['seconds']:.1f}s"
    )
