"""Sizes of the figures :mod:`skorchlite.inspect` draws: :data:`skorchlite.figures.FIGSIZES`,
where every figure's size is set (``"grad_cam"``, ``"feature_maps"``, ``"class_visualization"``,
``"adversarial"``)."""

from __future__ import annotations

from ..figures import FIGSIZES

__all__ = ["FIGSIZES"]
