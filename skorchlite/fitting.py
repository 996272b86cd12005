"""How a :class:`~skorchlite.FineTuneClassifier`'s parameters become a
training run: the seed, the unfrozen groups, the network and what keys it,
the inputs it reads, the loop's configuration, and the messages a run ends
with."""

from __future__ import annotations

import contextlib
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from numbers import Integral, Real
from typing import Any, Self, cast

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import _check_sample_weight, check_is_fitted
from torch import nn

from .augmentation import default_augmentation
from .backbones import Backbone, Preprocessing, check_image_size, describe_backbone, estimator_backbone
from .cache import resolve_cache
from .engine import PRECISIONS, check_precision, decode_workers, resolve_device
from .extractor import PretrainedFeatureExtractor
from .images import Sample, check_images
from .inputs import NetworkInputs
from .persistence import FittedField
from .targets import check_labels, encode_labels, loss_weights, validation_split
from .trainer import Phase, Trainer, TrainingConfig, TrainingResult, fine_tune_phases
from .training import BATCHNORM_MODES, OPTIMIZERS, SCHEDULES
from .validation import Interval, StrOptions, check_estimator_params
from .versioning import VersionedPickleMixin

__all__ = [
    "BaseFineTuner",
    "build_network",
    "check_network_unchanged",
    "embedding_extractor",
    "fit_seed",
    "interrupted_message",
    "n_unfrozen",
    "network_inputs",
    "network_key",
    "non_finite_error",
    "seeded",
    "training_config",
]


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


def check_network_unchanged(fitted: Mapping[str, str], now: Mapping[str, str], action: str) -> None:
    """Raise a ValueError naming what changed when the :func:`network_key`
    ``now`` differs from the ``fitted`` network's, which then cannot ``action``."""
    if fitted != now:
        changed = ", ".join(f"{k} ({fitted[k]!r} when fitted, {now[k]!r} now)" for k in fitted if fitted[k] != now[k])
        raise ValueError(
            f"{changed} changed since this network was fitted, so it cannot {action}. "
            f"Set the parameter back, or fit again with warm_start=False (or a clone) to build the new network."
        )


def training_config(
    params: Mapping[str, Any], phases: tuple[Phase, ...], layer_groups: Sequence[Sequence[str]]
) -> TrainingConfig:
    """The loop's configuration: ``phases``, the fitted network's
    ``layer_groups`` (never the parameter), and the estimator's ``params``
    of the other fields' names."""
    named = {f.name: params[f.name] for f in fields(TrainingConfig) if f.name not in ("phases", "layer_groups")}
    return TrainingConfig(phases=phases, layer_groups=tuple(tuple(group) for group in layer_groups), **named)


def network_inputs(
    samples: list[Sample],
    backbone: Backbone,
    params: Mapping[str, Any],
    device: torch.device,
    *,
    embedding_mode: bool,
    target: Any = None,
    weight: Any = None,
) -> NetworkInputs:
    """The network's inputs for ``samples`` under the estimator's ``params``
    (with the rows' ``target`` and loss ``weight`` when training):
    embeddings of :func:`embedding_extractor` in embedding mode."""
    preprocessing = backbone.preprocessing.resized(params["image_size"])
    augment = params["augment"]
    return NetworkInputs(
        samples,
        preprocessing,
        batch_size=params["batch_size"],
        device=device,
        workers=decode_workers(params["num_workers"]),
        augment=default_augmentation(preprocessing) if augment == "default" else augment,
        extractor=embedding_extractor(backbone, params) if embedding_mode else None,
        target=target,
        weight=weight,
    )


def embedding_extractor(backbone: Backbone, params: Mapping[str, Any]) -> PretrainedFeatureExtractor:
    """The extractor whose embeddings the head reads in embedding mode, and
    its cache, for the estimator's ``params`` and the ``backbone`` they give."""
    source, weights, preprocessing = params["backbone"], params["weights"], params["preprocessing"]
    if weights is None:  # a random initialisation seeded by random_state, which the extractor lacks
        source, weights, preprocessing = backbone.model, "DEFAULT", backbone.preprocessing
    shared = ("image_size", "batch_size", "device", "precision", "num_workers", "cache", "verbose")
    return PretrainedFeatureExtractor(
        backbone=source, weights=weights, preprocessing=preprocessing, **{name: params[name] for name in shared}
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


class BaseFineTuner(VersionedPickleMixin, BaseEstimator):
    """The fitting machinery of :class:`~skorchlite.FineTuneClassifier`, as
    scikit-learn's ``BaseMultilayerPerceptron`` is ``MLPClassifier``'s: the
    parameters' constraints and checks, and one fit over the trainer, from
    checking the data to the fitted attributes it leaves (or restores).

    Not an estimator by itself: the subclass's ``__init__`` sets the
    parameters these methods read.
    """

    _parameter_constraints: dict = {
        "backbone": [str, tuple, list, nn.Module],
        "weights": [str, os.PathLike, None],
        "preprocessing": [Preprocessing, dict, None],
        "layer_groups": [list, tuple, None],
        "unfreeze": [Interval(Integral, 0, None, closed="left"), StrOptions(["all"])],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "freeze_epochs": [Interval(Integral, 0, None, closed="left")],
        "batchnorm": [StrOptions(BATCHNORM_MODES)],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
        "optimizer": [StrOptions(OPTIMIZERS)],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "schedule": [StrOptions(name for name in SCHEDULES if name is not None), None],
        "warmup": [Interval(Real, 0, 1, closed="both")],
        "label_smoothing": [Interval(Real, 0, 1, closed="both")],
        "class_weight": [StrOptions(["balanced"]), dict, None],
        "augment": [StrOptions(["default"]), callable, None],
        "tta": ["boolean"],
        "image_size": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        # An int is a CUDA device index, as torch.device takes it.
        "device": [str, torch.device, Interval(Integral, 0, None, closed="left")],
        "precision": [StrOptions(PRECISIONS)],
        "num_workers": [Interval(Integral, 1, None, closed="left"), None],
        "compile": ["boolean"],
        "cache": [bool, str, os.PathLike, None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
    }

    # Set by fit; declared for mypy. weight_scale_ is None where a model
    # comes from a version that did not keep it: the next partial_fit then
    # scales its own rows, as those versions did.
    classes_: np.ndarray
    history_: list[dict[str, Any]]
    weight_scale_: float | None
    _embedding_mode_: bool
    _fitted_state = (
        "classes_",
        "model_",
        "layer_groups_",
        "_network_key_",
        "history_",
        "best_epoch_",
        "_embedding_mode_",
        "weight_scale_",
    )
    _fitted_defaults = {"weight_scale_": None}
    # What save_weights writes beside the parameters, and since which format version.
    _saved_state = {
        "classes_": FittedField(np.ndarray),
        "model_": FittedField(dict),
        "history_": FittedField(list),
        "best_epoch_": FittedField(int),
        "embedding_mode_": FittedField(bool),
        # Format 1 did not keep it; None makes the next partial_fit scale its own rows, as before.
        "weight_scale_": FittedField((float, type(None)), since=2, default=None),
    }

    def _check_params(self) -> None:
        """What ``_parameter_constraints`` cannot say: a rule between two
        parameters, the backbone's smallest input, bfloat16 support of the
        device, the cache folder (of the embeddings in embedding mode)."""
        if self.n_iter_no_change is not None and self.validation_fraction == 0:
            raise ValueError("n_iter_no_change needs a validation split: set validation_fraction > 0.")
        check_image_size(self.backbone, self.image_size, self.weights)
        check_precision(self.precision, resolve_device(self.device))
        resolve_cache(self.cache)

    def _network_key(self) -> dict[str, str]:
        return network_key(self._backbone())

    def _backbone(self, copy_model: bool = False) -> Backbone:
        return estimator_backbone(self, copy_model=copy_model)

    def _check_network_unchanged(self, action: str) -> None:
        check_network_unchanged(self._network_key_, self._network_key(), action)

    def _check_fitted(self, action: str) -> None:
        """Every check ``fit`` makes of the parameters, and that they still
        give the fitted network: what each method that reads them after fit
        (``predict_proba``, ``transform``, ``save_weights``, an explanation)
        runs first, so that ``set_params`` after fit meets the same errors as
        ``fit``. The others (``image_size``, ``tta``, ``precision``...) apply
        as they are now."""
        check_is_fitted(self, "model_")
        check_estimator_params(self)
        self._check_params()
        self._check_network_unchanged(action)

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
    ) -> Self:
        learned = {k: v for k, v in vars(self).items() if k.endswith("_")}
        trainer = None
        try:
            self._check_params()
            samples = check_images(X)
            y = check_labels(y, "y", type(self).__name__)
            if len(samples) != len(y):
                raise ValueError(f"X has {len(samples)} images but y has {len(y)} labels.")
            if warm:
                self._check_network_unchanged("continue (warm_start or partial_fit)")
            self.classes_, target = encode_labels(y, classes, self.classes_ if warm else None, type(self).__name__)
            sample_weight = _check_sample_weight(sample_weight, np.empty(len(samples)), ensure_non_negative=True)
            backbone = self._backbone()
            n_groups = n_unfrozen(self.unfreeze, len(backbone.layer_groups), self.backbone)
            device = resolve_device(self.device)
            seed = fit_seed(self.random_state)
            train, valid = validation_split(target, self.validation_fraction, seed)
            # A partial_fit series keeps its first call's scale: see loss_weights.
            weight, self.weight_scale_ = loss_weights(
                sample_weight,
                target,
                self.classes_,
                self.class_weight,
                train,
                valid,
                scale=self.weight_scale_ if partial and warm else None,
            )
            with seeded(seed):
                if not warm:
                    self._init_model(len(self.classes_))
                    self.history_ = []
                # The backbone stays pristine only while no fit ever unfroze it.
                pristine = not warm or self._embedding_mode_
                self._embedding_mode_ = pristine and n_groups == 0 and self.augment is None
                phases = fine_tune_phases(
                    n_groups, epochs, freeze_epochs=self.freeze_epochs if head_warmup else 0, lr=self.lr
                )
                inputs = self._inputs(samples, device, target=target, weight=weight)
                config = training_config(self.get_params(deep=False), phases, self.layer_groups_)
                first_epoch = len(self.history_) + 1
                trainer = Trainer(
                    self.model_, inputs, train=train, valid=valid, config=config, device=device, first_epoch=first_epoch
                )
                result = trainer.run()
        except BaseException as err:
            so_far = None if trainer is None else trainer.result
            self._keep_trained(so_far, learned)
            if isinstance(err, FloatingPointError) and so_far is not None:
                raise non_finite_error(err, so_far) from err.__cause__
            raise
        self._keep_trained(result, learned)
        if result.interrupted:
            warnings.warn(interrupted_message(result), RuntimeWarning, stacklevel=3)
        return self

    def _keep_trained(self, result: TrainingResult | None, learned: dict[str, Any]) -> None:
        """Take the epochs a run completed and the one whose weights the model
        holds. A fit that completed none leaves the estimator with its fitted
        attributes as they were (``learned``): unfitted before the first fit,
        never half-set."""
        if result is None or not result.history:
            for key in [k for k in vars(self) if k.endswith("_")]:
                delattr(self, key)
            self.__dict__.update(learned)  # vars(self), which mypy types as a class's (BaseEstimator is untyped)
            return
        self.history_.extend(result.history)
        self.best_epoch_ = result.best_epoch

    def _inputs(
        self, samples: list[Sample], device: torch.device, target: Any = None, weight: Any = None
    ) -> NetworkInputs:
        """The network's inputs for ``samples``: embeddings in embedding mode."""
        params, mode = self.get_params(deep=False), self._embedding_mode_
        return network_inputs(
            samples, self._backbone(), params, device, embedding_mode=mode, target=target, weight=weight
        )

    def _init_model(self, n_classes: int) -> None:
        backbone = self._backbone(copy_model=True)
        self.model_ = build_network(backbone, n_classes)
        self.layer_groups_ = backbone.layer_groups
        self._network_key_ = network_key(backbone)
