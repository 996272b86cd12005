"""The registry: the sources asked in order, and what a name alone tells
(its source, whether its weights are here, its smallest input)."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..limits import MAX_IMAGE_SIZE, MAX_IMAGE_SIZE_REASON
from ..names import did_you_mean
from .backbone import BackboneUnavailableError
from .lite_models import LiteSource
from .source import BackboneSource
from .timm_models import TimmSource
from .torchvision_models import TorchvisionSource
from .weights import is_weights_path

#: The registry, asked in order.
SOURCES: list[BackboneSource] = [LiteSource(), TorchvisionSource(), TimmSource()]


def source_of(name: Any) -> BackboneSource:
    """The source that offers backbone ``name``.

    Raises
    ------
    ValueError
        For a name no source offers, with the closest names.
    """
    if isinstance(name, str):
        for source in SOURCES:
            if source.offers(name):
                return source
    if isinstance(name, nn.Module) or not isinstance(name, str):
        raise TypeError(
            f"A backbone name must be a string, got {type(name).__name__}; pass a module or a "
            f"(name, checkpoint) pair as the estimators' backbone=, or see resolve_backbone."
        )
    raise ValueError(
        f"Unknown backbone {name!r}.{did_you_mean(name, list_backbones())} skorchlite.backbones.list_backbones() lists all "
        f"{len(list_backbones())}; offline now: {', '.join(offline_backbones())}."
    )


def list_backbones() -> list[str]:
    """Names of every registered backbone, sorted.

    Returns
    -------
    list of str
        The names of every source in :data:`SOURCES` (EfficientNet-Lite
        variants and torchvision classification models).
        :func:`offline_backbones` says which have their weights here.

    Examples
    --------
    >>> from skorchlite.backbones import list_backbones
    >>> "efficientnet_lite0" in list_backbones() and "resnet50" in list_backbones()
    True
    """
    return sorted(name for source in SOURCES for name in source.names())


def offline_backbones(source: BackboneSource | None = None) -> list[str]:
    """Backbones whose default weights are on this machine now.

    Parameters
    ----------
    source : BackboneSource or None, default=None
        Only this source's names; ``None``: every source.

    Examples
    --------
    >>> from skorchlite.backbones import offline_backbones
    >>> "efficientnet_lite0" in offline_backbones()
    True
    """
    available = []
    for each in SOURCES if source is None else [source]:
        for name in each.names():
            try:
                each.weights_file(name, "DEFAULT")
            except BackboneUnavailableError:
                continue
            available.append(name)
    return sorted(available)


def _weights_member(weights: Any) -> str:
    """A weights member name, or ``"DEFAULT"`` for a file or no weights."""
    return weights if isinstance(weights, str) and not is_weights_path(weights) else "DEFAULT"


def min_image_size(name: str, weights: str | os.PathLike | None = "DEFAULT") -> int:
    """The smallest ``image_size`` at which backbone ``name`` gives sound embeddings.

    For EfficientNet-Lite, 33 (measured: below it every embedding of a
    photograph is all zeros); for torchvision models, the ``min_size`` their
    weights declare. Nothing is loaded.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    weights : str, path-like or None, default="DEFAULT"
        A torchvision weights member, or anything else for the default one.

    Returns
    -------
    int

    Examples
    --------
    >>> from skorchlite.backbones import min_image_size
    >>> min_image_size("efficientnet_lite0"), min_image_size("inception_v3")
    (33, 75)
    """
    return source_of(name).min_image_size(name, _weights_member(weights))


def check_image_size(name: Any, image_size: int | None, weights: str | os.PathLike | None = "DEFAULT") -> None:
    """Refuse an ``image_size`` below :func:`min_image_size` of the backbone,
    or above :data:`skorchlite.limits.MAX_IMAGE_SIZE`.

    ``name`` may also be any other kind of backbone an estimator takes
    (a module, a ``(name, checkpoint)`` pair); a module has no known minimum.

    Raises
    ------
    ValueError
        Naming the backbone, the size given and the bound.

    Examples
    --------
    >>> from skorchlite.backbones import check_image_size
    >>> check_image_size("efficientnet_lite0", 64)
    >>> check_image_size("efficientnet_lite0", 32)
    Traceback (most recent call last):
    ...
    ValueError: image_size=32 is too small for backbone 'efficientnet_lite0': its smallest input is 33 px...
    """
    if image_size is not None and image_size > MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size={image_size} is too large: at most {MAX_IMAGE_SIZE} ({MAX_IMAGE_SIZE_REASON}), or None "
            "for the backbone's own size."
        )
    if image_size is None or isinstance(name, nn.Module):
        return
    if isinstance(name, (tuple, list)) and len(name) == 2:
        name, weights = name
    minimum = min_image_size(name, weights)
    if image_size < minimum:
        raise ValueError(
            f"image_size={image_size} is too small for backbone {name!r}: its smallest input is "
            f"{minimum} px (below that its last feature map collapses and the embeddings carry no "
            f"information). Use image_size >= {minimum}, or None for the backbone's own size."
        )
