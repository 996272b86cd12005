"""skorchlite: transfer learning for images that speaks scikit-learn."""

from __future__ import annotations

import importlib
from typing import Any

# Set in skorchlite.versioning, which says when it changes.
from .versioning import __version__

# Public names and the module that holds each; imported on first use so that
# light modules (the cache, the command line's help) do not pay for torch.
_EXPORTS = {
    "PretrainedFeatureExtractor": "extractor",
    "FineTuneClassifier": "finetune",
    "LayerVotingClassifier": "voting",
    "get_backbone": "backbones",
    "list_backbones": "backbones",
    "save": "model_io",
    "load": "model_io",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'skorchlite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
