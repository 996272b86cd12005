"""The EfficientNet-Lite architecture's home up to skorchlite 0.2.0, kept
so that the pickles it wrote still load.

Pickled fitted models name their classes by module
(``skorchlite.efficientnet_lite.EfficientNetLite``, ``..._MBConv``); each
name here is the one of :mod:`skorchlite.backbones.efficientnet_lite`,
where the architecture lives now, so such a pickle loads the current
classes.
"""

from __future__ import annotations

from typing import Any

from .backbones import efficientnet_lite as _architecture


def __getattr__(name: str) -> Any:
    return getattr(_architecture, name)
