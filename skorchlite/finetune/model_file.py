"""The data-only model file of a fitted :class:`~skorchlite.FineTuneClassifier`:
what :meth:`~skorchlite.FineTuneClassifier.save_weights` writes beside the
parameters, and how :meth:`~skorchlite.FineTuneClassifier.load_weights`
checks and reads it back (the file format itself is
:mod:`skorchlite.persistence`'s)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..backbones import describe_backbone
from ..files import write_atomic
from ..persistence import (
    FittedField,
    check_state_dict,
    damaged_file,
    estimator_bytes,
    load_model_state,
    load_network_state,
)
from .run import init_network
from .targets import check_classes
from .voting_head import VotingHead, layer_widths, voting_layers

if TYPE_CHECKING:
    from .estimator import FineTuneClassifier

__all__ = ["PARAMETERS_SINCE", "SAVED_STATE", "fitted_bytes", "load_fitted", "save_fitted"]

#: The format version that added each parameter added since format 3. A file of
#: an earlier format lacks it and gets the value of the version that wrote it:
#: the class's ``_params_before`` value (``head``), else its default.
PARAMETERS_SINCE = {"layer": 4, "head": 5}

#: What the file holds beside the parameters, and since which format version.
SAVED_STATE = {
    "classes_": FittedField(np.ndarray),
    "model_": FittedField(dict),
    "history_": FittedField(list),
    "best_epoch_": FittedField(int),
    "embedding_mode_": FittedField(bool),
    # Format 1 did not keep it; None makes the next partial_fit scale its own rows, as before.
    "weight_scale_": FittedField((float, type(None)), since=2, default=None),
    # Formats 1 and 2 knew one label per sample only.
    "multilabel_": FittedField(bool, since=3, default=False),
    # Formats 1 to 4 predicted with the linear head.
    "voting_head_": FittedField((dict, type(None)), since=5, default=None),
}


def fitted_bytes(estimator: FineTuneClassifier) -> bytes:
    """The file of ``estimator`` (fitted and checked), as bytes."""
    fitted = {
        "classes_": estimator.classes_,
        "model_": estimator.model_.state_dict(),
        "history_": estimator.history_,
        "best_epoch_": estimator.best_epoch_,
        "embedding_mode_": estimator._embedding_mode_,
        # partial_fit goes on weighting samples on the first call's scale.
        "weight_scale_": estimator.weight_scale_ if estimator.weight_scale_ is None else float(estimator.weight_scale_),
        "multilabel_": estimator.multilabel_,
        "voting_head_": None if estimator.voting_head_ is None else estimator.voting_head_.state_dict(),
    }
    return estimator_bytes(estimator, fitted)


def save_fitted(estimator: FineTuneClassifier, path: str | os.PathLike) -> Path:
    """Write the file of ``estimator`` (fitted and checked) at ``path``, replaced atomically."""
    path = Path(path)
    write_atomic(path, fitted_bytes(estimator))
    return path


def load_fitted(
    cls: type[FineTuneClassifier], path: str | os.PathLike, data: bytes | None = None
) -> FineTuneClassifier:
    """A fitted ``cls`` from the file at ``path`` (or its bytes ``data``, read
    already), every value checked as fit would check it before the network
    is rebuilt and given the file's weights."""
    params, fitted = load_model_state(path, cls.__name__, cls._get_param_names(), SAVED_STATE, data, PARAMETERS_SINCE)
    params = cls._params_before | params  # as unpickling fills them (versioning.py)
    with damaged_file(path, cls.__name__):
        clf = cls(**params)
        clf._validate_params()
        if fitted["classes_"].ndim != 1:
            raise ValueError(f"classes_ has {fitted['classes_'].ndim} dimensions, not 1")
        check_classes(fitted["classes_"], "classes_", cls.__name__)
        if fitted["multilabel_"] and not np.array_equal(fitted["classes_"], np.arange(len(fitted["classes_"]))):
            raise ValueError("classes_ of a multi-label model are not its label columns 0, 1, ...")
        scale = fitted["weight_scale_"]
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"weight_scale_ is {scale}, not a positive number")
        clf._check_params()  # as fit checks them: a file's values skip no bound
        clf.classes_ = fitted["classes_"]
        # The backbone's settings (preprocessing, layer groups) are checked
        # where the network is built.
        init_network(clf, len(clf.classes_))
    load_network_state(clf.model_, fitted["model_"], path, describe_backbone(clf.backbone))
    clf.history_, clf.best_epoch_ = fitted["history_"], fitted["best_epoch_"]
    clf._embedding_mode_ = fitted["embedding_mode_"]
    clf.weight_scale_ = fitted["weight_scale_"]
    clf.multilabel_ = fitted["multilabel_"]
    clf.voting_head_ = None if fitted["voting_head_"] is None else _voting_head(clf, fitted["voting_head_"], path)
    return clf


def _voting_head(clf: FineTuneClassifier, state: dict, path: str | os.PathLike) -> VotingHead:
    """The file's voting heads, checked against the network and classes ``clf`` has."""
    state = check_state_dict(state, path)
    with damaged_file(path, type(clf).__name__):
        head = VotingHead.from_state_dict(state)
        widths = layer_widths(clf, voting_layers(clf))
        shapes = [(len(clf.classes_), width) for width in widths]
        found = [tuple(state[f"heads.{i}.weight"].shape) for i in range(len(head.heads))]
        if clf.multilabel_ or found != shapes:
            raise ValueError(f"voting_head_ has heads of shapes {found}, not {shapes} for this network and classes")
        if not all(bool(torch.isfinite(value).all()) for value in state.values()):
            raise ValueError("voting_head_ holds non-finite weights")
    return head
