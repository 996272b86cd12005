"""How a :class:`~skorchlite.FineTuneClassifier`'s parameters become a
training run (:func:`train_estimator`): the checks beyond the constraints, the seed,
the unfrozen groups, the network and what keys it, the inputs it reads, the
loop's configuration, the fitted attributes a run leaves (or restores), the
messages it ends with; and a fitted estimator's inference (:func:`infer`)."""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..backbones import Backbone, check_image_size, describe_backbone, estimator_backbone, upgrade_module_digest
from ..cache import resolve_cache
from ..engine import (
    autocast,
    check_precision,
    decode_workers,
    resolve_device,
)
from ..extractor import PretrainedFeatureExtractor
from ..images import Sample, check_images
from ..private_api import check_sample_weight
from ..validation import check_estimator_params, check_unchanged
from .augmentation import default_augmentation
from .inputs import NetworkInputs
from .loop import Trainer, TrainingConfig, TrainingResult, fine_tune_phases
from .parameters import FineTuneParameters
from .targets import check_targets, encode_targets, loss_weights, validation_split
from .voting_head import fit_voting_head, layer_widths, layers_network, voting_probabilities

if TYPE_CHECKING:
    from .estimator import FineTuneClassifier

__all__ = [
    "build_network",
    "check_fitted",
    "check_network_unchanged",
    "check_parameters",
    "embedding_extractor",
    "estimator_inputs",
    "fit_seed",
    "infer",
    "init_network",
    "interrupted_message",
    "n_unfrozen",
    "network_inputs",
    "network_key",
    "non_finite_error",
    "seeded",
    "train_estimator",
    "transform_width",
    "upgrade_network_key",
]


def train_estimator(
    estimator: FineTuneClassifier,
    X: Any,
    y: Any,
    sample_weight: Any,
    *,
    warm: bool,
    head_warmup: bool,
    epochs: int,
    classes: Any = None,
    partial: bool = False,
) -> None:
    """One fit of ``estimator``: check the data, run the epoch loop, leave
    the fitted attributes; after an error or Ctrl-C, those of the best epoch
    this run completed, or as they were before when it completed none.

    Parameters
    ----------
    estimator : FineTuneClassifier
    X, y, sample_weight
        As :meth:`~skorchlite.FineTuneClassifier.fit` takes them.
    warm : bool
        Continue from the fitted network (``warm_start``, ``partial_fit``).
    head_warmup : bool
        Train the head alone for ``freeze_epochs`` first.
    epochs : int
        Epochs of the (last) phase.
    classes : array-like or None, default=None
        As ``partial_fit`` takes them.
    partial : bool, default=False
        A call of ``partial_fit``, which keeps the first call's weight scale.
    """
    learned = {k: v for k, v in vars(estimator).items() if k.endswith("_")}
    trainer = None
    try:
        params = FineTuneParameters.of(estimator)
        check_parameters(params)
        if partial and isinstance(params.class_weight, str) and params.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: one call sees only its own rows. "
                "Compute the weights over all your labels with sklearn.utils.class_weight.compute_class_weight "
                "and pass them as a dict."
            )
        samples = check_images(X)
        y = check_targets(y, type(estimator).__name__)
        if len(samples) != len(y):
            raise ValueError(f"X has {len(samples)} images but y has {len(y)} {'rows' if y.ndim == 2 else 'labels'}.")
        if warm:
            check_network_unchanged(
                estimator._network_key_, network_key(estimator_backbone(params)), "continue (warm_start or partial_fit)"
            )
        known = (estimator.classes_, estimator.multilabel_) if warm else None
        estimator.classes_, target = encode_targets(y, classes, known, type(estimator).__name__)
        estimator.multilabel_ = target.ndim == 2
        sample_weight = check_sample_weight(sample_weight, np.empty(len(samples)), ensure_non_negative=True)
        n_groups = n_unfrozen(params.unfreeze, len(estimator_backbone(params).layer_groups), params.backbone)
        device = resolve_device(params.device)
        seed = fit_seed(params.random_state)
        train, valid = validation_split(target, params.validation_fraction, seed)
        # A partial_fit series keeps its first call's scale: see loss_weights.
        weight, estimator.weight_scale_ = loss_weights(
            sample_weight,
            target,
            estimator.classes_,
            params.class_weight,
            train,
            valid,
            scale=estimator.weight_scale_ if partial and warm else None,
        )
        with seeded(seed):
            if not warm:
                init_network(estimator, len(estimator.classes_))
                estimator.history_ = []
            # The backbone stays pristine only while no fit ever unfroze it.
            pristine = not warm or estimator._embedding_mode_
            estimator._embedding_mode_ = pristine and n_groups == 0 and params.augment is None
            freeze_epochs = params.freeze_epochs if head_warmup else 0
            phases = fine_tune_phases(n_groups, epochs, freeze_epochs=freeze_epochs, lr=params.lr)
            inputs = estimator_inputs(estimator, samples, device, target=target, weight=weight)
            groups = tuple(tuple(group) for group in estimator.layer_groups_)
            config = TrainingConfig(phases=phases, layer_groups=groups, params=params)
            first_epoch = len(estimator.history_) + 1
            trainer = Trainer(
                estimator.model_,
                inputs,
                train=train,
                valid=valid,
                config=config,
                device=device,
                first_epoch=first_epoch,
            )
            result = trainer.run()
    except BaseException as err:
        so_far = None if trainer is None else trainer.result
        _keep_trained(estimator, so_far, learned)
        if isinstance(err, FloatingPointError) and so_far is not None:
            raise non_finite_error(err, so_far) from err.__cause__
        raise
    _keep_trained(estimator, result, learned)
    if params.head == "voting" and not partial and not estimator.multilabel_:
        estimator.voting_head_ = fit_voting_head(
            estimator, inputs, target, weight, balanced=params.class_weight is None
        )
    if result.interrupted:
        warnings.warn(interrupted_message(result), RuntimeWarning, stacklevel=3)


def _keep_trained(estimator: FineTuneClassifier, result: TrainingResult | None, learned: dict[str, Any]) -> None:
    """Take the epochs a run completed and the one whose weights the model
    holds. A fit that completed none leaves the estimator with its fitted
    attributes as they were (``learned``): unfitted before the first fit,
    never half-set."""
    if result is None or not result.history:
        for key in [k for k in vars(estimator) if k.endswith("_")]:
            delattr(estimator, key)
        estimator.__dict__.update(learned)  # vars(), which mypy types as a class's (BaseEstimator is untyped)
        return
    estimator.history_.extend(result.history)
    estimator.best_epoch_ = result.best_epoch
    # Heads fitted on the network before this run would misread it: the linear head predicts
    # until train_estimator fits new ones (never after partial_fit).
    estimator.voting_head_ = None


def check_fitted(estimator: FineTuneClassifier, action: str) -> None:
    """Every check ``fit`` makes of the parameters, and that they still give
    the fitted network: what each method that reads them after fit
    (``predict_proba``, ``transform``, ``save_weights``, an explanation)
    runs first, so that ``set_params`` after fit meets the same errors as
    ``fit``. The others (``image_size``, ``tta``, ``precision``...) apply as
    they are now."""
    check_is_fitted(estimator, "model_")
    check_estimator_params(estimator)
    params = FineTuneParameters.of(estimator)
    check_parameters(params)
    check_network_unchanged(estimator._network_key_, network_key(estimator_backbone(params)), action)


def infer(estimator: FineTuneClassifier, X: Any, action: str, *, whole: bool) -> np.ndarray:
    """The one inference path of a fitted ``estimator``, after
    :func:`check_fitted` for ``action``: the probabilities of the ``whole``
    network (through its voting heads when it has them and ``head="voting"``;
    from embeddings in embedding mode, unless ``tta`` needs the images),
    else the body's features on the images (``transform``)."""
    check_fitted(estimator, action)
    samples = check_images(X)
    device = resolve_device(estimator.device)
    voting = whole and estimator.head == "voting" and estimator.voting_head_ is not None
    inputs = estimator_inputs(estimator, samples, device, embeddings=whole and estimator._embedding_mode_)
    width = len(estimator.classes_) if whole else transform_width(estimator)
    out = np.empty((len(samples), width), dtype=np.float32)
    rows = np.arange(len(samples))
    # Moved (channels_last) before inference mode: tensors made inside it could never train again.
    if voting:
        batches = voting_probabilities(estimator, inputs, rows, tta=estimator.tta)
    else:
        part = estimator.model_ if whole else layers_network(estimator, estimator.layer)
        network = part.to(device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
        if whole:
            batches = inputs.probabilities(network, rows, tta=estimator.tta, multilabel=estimator.multilabel_)
        else:
            batches = inputs.outputs(network, rows)
    with torch.inference_mode(), autocast(device, estimator.precision):
        for batch_rows, outputs in batches:
            out[batch_rows] = outputs.float().cpu().numpy()
    return out


def transform_width(estimator: FineTuneClassifier) -> int:
    """The width of ``transform``: the head's input, or the layers' pooled widths summed."""
    if estimator.layer is None:
        return cast(nn.Linear, estimator.model_[1]).in_features
    return sum(layer_widths(estimator, estimator.layer))


def estimator_inputs(
    estimator: FineTuneClassifier,
    samples: list[Sample],
    device: torch.device,
    *,
    target: Any = None,
    weight: Any = None,
    embeddings: bool | None = None,
) -> NetworkInputs:
    """The fitted network's inputs for ``samples`` under ``estimator``'s
    parameters: embeddings in embedding mode, unless ``embeddings`` says."""
    params = FineTuneParameters.of(estimator)
    mode = estimator._embedding_mode_ if embeddings is None else embeddings
    return network_inputs(
        samples, estimator_backbone(params), params, device, embedding_mode=mode, target=target, weight=weight
    )


def init_network(estimator: FineTuneClassifier, n_classes: int) -> None:
    """A new network for ``estimator``: its backbone's copy and a new head
    of ``n_classes`` outputs, the layer groups and the key of that network."""
    backbone = estimator_backbone(FineTuneParameters.of(estimator), copy_model=True)
    estimator.model_ = build_network(backbone, n_classes)
    estimator.layer_groups_ = backbone.layer_groups
    estimator._network_key_ = network_key(backbone)


def check_parameters(params: FineTuneParameters) -> None:
    """What the constraints cannot say: a rule between two parameters, the
    backbone's smallest input, bfloat16 support of the device, the cache
    folder (of the embeddings in embedding mode)."""
    if params.n_iter_no_change is not None and params.validation_fraction == 0:
        raise ValueError("n_iter_no_change needs a validation split: set validation_fraction > 0.")
    check_image_size(params.backbone, params.image_size, params.weights)
    check_precision(params.precision, resolve_device(params.device))
    resolve_cache(params.cache)
    if params.layer is not None:
        estimator_backbone(params).resolve_layers(params.layer)


def fit_seed(random_state: Any) -> int | None:
    """One seed per fit: an int ``random_state`` as given; a RandomState is
    drawn from, so each fit differs, as in scikit-learn.

    Examples
    --------
    >>> fit_seed(3), fit_seed(None)
    (3, None)
    >>> rng = np.random.RandomState(0)
    >>> fit_seed(rng) != fit_seed(rng)
    True
    """
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(cast(np.random.RandomState, random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Torch's global CPU random state seeded with ``seed`` inside, restored
    after; nothing changes when ``seed`` is None."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def n_unfrozen(unfreeze: int | str, n_groups: int, backbone: Any) -> int:
    """The number of layer groups ``unfreeze`` trains, of ``n_groups``.

    Raises
    ------
    ValueError
        When ``unfreeze`` exceeds ``n_groups``; the message names the
        ``backbone`` parameter's value.

    Examples
    --------
    >>> n_unfrozen("all", 9, "efficientnet_lite0"), n_unfrozen(2, 9, "efficientnet_lite0")
    (9, 2)
    """
    if unfreeze == "all":
        return n_groups
    if int(unfreeze) > n_groups:
        raise ValueError(
            f"unfreeze={unfreeze} but backbone {describe_backbone(backbone)} has {n_groups} layer groups; "
            f"use at most {n_groups} or 'all'."
        )
    return int(unfreeze)


def build_network(backbone: Backbone, n_classes: int) -> nn.Sequential:
    """``backbone.model`` (the body) followed by a new linear head."""
    return nn.Sequential(backbone.model, nn.Linear(backbone.embedding_dim, n_classes))


def network_key(backbone: Backbone) -> dict[str, str]:
    """What fixes the network's shape and starting weights (not image_size:
    every backbone here pools globally, so a warm start may continue at
    another size, as progressive resizing does)."""
    return {"backbone": backbone.name, "weights_sha256": backbone.weights.sha256}


def upgrade_network_key(state: dict[str, Any]) -> dict[str, Any]:
    """A pickled estimator's ``state`` with its :func:`network_key` as this
    version computes it: a module backbone's digest of skorchlite 0.3.0 and
    earlier held the versions of torch and numpy
    (:func:`~skorchlite.backbones.upgrade_module_digest`)."""
    if "_network_key_" in state:
        state["_network_key_"] = upgrade_module_digest(state["_network_key_"], state.get("backbone"))
    return state


def check_network_unchanged(fitted: Mapping[str, str], now: Mapping[str, str], action: str) -> None:
    """Raise a ValueError naming what changed when the :func:`network_key`
    ``now`` differs from the ``fitted`` network's, which then cannot ``action``."""
    check_unchanged(
        fitted,
        now,
        what="The fitted network's backbone or weights",
        remedy=f"it cannot {action}. Set the parameter back, or fit again with warm_start=False (or a clone) "
        "to build the new network",
    )


def network_inputs(
    samples: list[Sample],
    backbone: Backbone,
    params: FineTuneParameters,
    device: torch.device,
    *,
    embedding_mode: bool,
    target: Any = None,
    weight: Any = None,
) -> NetworkInputs:
    """The network's inputs for ``samples`` under the estimator's ``params``
    (with the rows' ``target`` and loss ``weight`` when training):
    embeddings of :func:`embedding_extractor` in embedding mode."""
    preprocessing = backbone.preprocessing.resized(params.image_size)
    augment = params.augment
    return NetworkInputs(
        samples,
        preprocessing,
        batch_size=params.batch_size,
        device=device,
        workers=decode_workers(params.num_workers),
        augment=default_augmentation(preprocessing) if augment == "default" else augment,
        extractor=embedding_extractor(backbone, params) if embedding_mode else None,
        target=target,
        weight=weight,
    )


def embedding_extractor(backbone: Backbone, params: FineTuneParameters) -> PretrainedFeatureExtractor:
    """The extractor whose embeddings the head reads in embedding mode, and
    its cache, for the estimator's ``params`` and the ``backbone`` they give."""
    source, weights, preprocessing = params.backbone, params.weights, params.preprocessing
    if weights is None:  # a random initialisation seeded by random_state, which the extractor lacks
        source, weights, preprocessing = backbone.model, "DEFAULT", backbone.preprocessing
    return PretrainedFeatureExtractor(
        backbone=source,
        weights=weights,
        preprocessing=preprocessing,
        image_size=params.image_size,
        batch_size=params.batch_size,
        device=params.device,
        precision=params.precision,
        num_workers=params.num_workers,
        cache=params.cache,
        verbose=params.verbose,
    )


def non_finite_error(err: FloatingPointError, result: TrainingResult) -> FloatingPointError:
    """``err`` of a run that ``result`` tells about, saying which weights the
    estimator keeps and what to do."""
    kept = (
        f"the estimator keeps the weights of epoch {result.best_epoch}"
        if result.history
        else "no epoch of this fit completed, so the estimator is left as it was before fit"
    )
    return FloatingPointError(f"{err}; {kept}. Lower lr, or check the images and sample weights.")


def interrupted_message(result: TrainingResult) -> str:
    """The warning of a run that Ctrl-C ended after an epoch."""
    return (
        f"Training interrupted after epoch {result.history[-1]['epoch']}; the estimator keeps the weights "
        f"of epoch {result.best_epoch} and can predict."
    )
