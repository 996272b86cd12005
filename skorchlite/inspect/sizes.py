"""Sizes of the figures :mod:`skorchlite.inspect` draws."""

from __future__ import annotations

__all__ = ["FIGSIZES"]

#: Size in inches (width, height) of each plot; the PNG is this times
#: :data:`skorchlite.figures.DPI` pixels.
FIGSIZES: dict[str, tuple[float, float]] = {
    "grad_cam": (10.0, 4.6),
    "feature_maps": (10.0, 8.0),
    "class_visualization": (10.0, 4.6),
    "adversarial": (12.0, 4.6),
}
