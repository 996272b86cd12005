"""Every parameter of :class:`~skorchlite.FineTuneClassifier`, declared once:
its type and its constraints.

:class:`FineTuneParameters` is the one table. The estimator's
``_parameter_constraints`` are read from it (:func:`parameter_constraints`);
a fit freezes the estimator's parameters into one instance of it
(:meth:`FineTuneParameters.of`), which the run (:mod:`.run`) and the epoch
loop (:class:`~skorchlite.finetune.loop.TrainingConfig`) read by attribute,
so that mypy checks every use of a name. scikit-learn wants the parameters
spelled out in ``__init__`` too: ``tests/test_finetune_parameters.py`` fails
when its names or annotations and this table's disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones import Preprocessing
from ..engine import SHARED_CONSTRAINTS, Precision
from ..validation import Interval, StrOptions
from .steps import BATCHNORM_MODES, OPTIMIZERS, SCHEDULES, BatchNormMode, OptimizerName, Schedule

__all__ = ["FineTuneParameters", "parameter_constraints"]


def _allowed(*constraints: Any) -> Any:
    """A parameter whose value must satisfy one of ``constraints`` (scikit-learn's)."""
    return field(metadata={"constraints": list(constraints)})


def _shared() -> Any:
    """A parameter the extractor takes too, with the constraints of
    :data:`~skorchlite.engine.SHARED_CONSTRAINTS` under its name."""
    return field(metadata={"shared": True})


@dataclass(frozen=True, kw_only=True)
class FineTuneParameters:
    """The parameters of one fit, as :class:`~skorchlite.FineTuneClassifier`
    documents them; its fields, in the order of its signature, are the table.

    Examples
    --------
    >>> from skorchlite import FineTuneClassifier
    >>> FineTuneParameters.of(FineTuneClassifier(epochs=3)).epochs
    3
    """

    backbone: str | tuple[str, str | os.PathLike] | nn.Module = _shared()
    weights: str | os.PathLike | None = _shared()
    preprocessing: Preprocessing | dict[str, Any] | None = _shared()
    layer_groups: Any = _allowed(list, tuple, None)
    unfreeze: int | str = _allowed(Interval(Integral, 0, None, closed="left"), StrOptions(["all"]))
    epochs: int = _allowed(Interval(Integral, 1, None, closed="left"))
    freeze_epochs: int = _allowed(Interval(Integral, 0, None, closed="left"))
    batchnorm: BatchNormMode = _allowed(StrOptions(BATCHNORM_MODES))
    lr: float = _allowed(Interval(Real, 0, None, closed="neither"))
    lr_decay: float = _allowed(Interval(Real, 0, 1, closed="right"))
    optimizer: OptimizerName = _allowed(StrOptions(OPTIMIZERS))
    weight_decay: float = _allowed(Interval(Real, 0, None, closed="left"))
    momentum: float = _allowed(Interval(Real, 0, 1, closed="both"))
    schedule: Schedule = _allowed(StrOptions(name for name in SCHEDULES if name is not None), None)
    warmup: float = _allowed(Interval(Real, 0, 1, closed="both"))
    label_smoothing: float = _allowed(Interval(Real, 0, 1, closed="both"))
    class_weight: Any = _allowed(StrOptions(["balanced"]), dict, list, None)
    augment: Any = _allowed(StrOptions(["default"]), callable, None)
    head: str = _allowed(StrOptions(["voting", "linear"]))
    tta: bool = _shared()
    layer: Any = _shared()
    image_size: int | None = _shared()
    batch_size: int = _shared()
    validation_fraction: float = _allowed(Interval(Real, 0, 1, closed="left"))
    n_iter_no_change: int | None = _allowed(Interval(Integral, 1, None, closed="left"), None)
    device: str | torch.device = _shared()
    precision: Precision = _shared()
    num_workers: int | None = _shared()
    compile: bool = _allowed("boolean")
    cache: bool | str | os.PathLike = _shared()
    random_state: int | np.random.RandomState | None = _allowed("random_state")
    warm_start: bool = _allowed("boolean")
    verbose: int = _shared()

    @classmethod
    def of(cls, estimator: Any) -> FineTuneParameters:
        """``estimator``'s parameters of these names, as they are now, frozen
        (a subclass's own parameters are its own business)."""
        return cls(**{f.name: getattr(estimator, f.name) for f in fields(cls)})


def parameter_constraints() -> dict[str, list[Any]]:
    """Each parameter's constraints, as scikit-learn's ``_parameter_constraints``.

    Examples
    --------
    >>> parameter_constraints()["compile"]
    ['boolean']
    """
    return {
        f.name: SHARED_CONSTRAINTS[f.name] if f.metadata.get("shared") else f.metadata["constraints"]
        for f in fields(FineTuneParameters)
    }
