"""Any ``backbone=`` value the estimators take: a registry name, an
``(architecture, checkpoint)`` pair, or the user's own ``nn.Module``."""

from __future__ import annotations

import copy
import numbers
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from ..memo import Memo
from ..persistence import error_cause
from .backbone import IMAGENET_PREPROCESSING, Backbone, Preprocessing, WeightsRef
from .identity import module_identity
from .loading import get_backbone
from .weights import is_weights_path

# Modules adopted, by class, digest (module_identity), groups and preprocessing.
_ADOPTED: Memo[tuple[Any, Preprocessing], Backbone] = Memo(maxsize=4)


def check_preprocessing(preprocessing: Any) -> Preprocessing:
    """A :class:`Preprocessing` from one, or from a dict.

    The dict takes ``size`` (or ``crop_size``), and optionally
    ``resize_size`` (default ``size / 0.875``), ``mean``, ``std`` (default
    ImageNet's) and ``interpolation`` (default ``"bilinear"``).

    Examples
    --------
    >>> check_preprocessing({"size": 64, "mean": (0.5,) * 3, "std": (0.5,) * 3}).resize_size
    73
    """
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    if not isinstance(preprocessing, dict):
        raise TypeError(
            f"preprocessing must be None, a skorchlite.backbones.Preprocessing or a dict of size, mean, std, "
            f"interpolation; got {type(preprocessing).__name__}."
        )
    values = dict(preprocessing)
    size = values.pop("size", values.pop("crop_size", IMAGENET_PREPROCESSING.crop_size))
    known = {"resize_size", "mean", "std", "interpolation"}
    if set(values) - known:
        raise ValueError(
            f"preprocessing has unknown keys {sorted(set(values) - known)}; use size, {', '.join(sorted(known))}."
        )
    try:
        result = Preprocessing(
            crop_size=int(size),
            resize_size=int(values.get("resize_size", round(size / 0.875))),
            interpolation=str(InterpolationMode(values.get("interpolation", "bilinear")).value),
            mean=tuple(float(v) for v in values.get("mean", IMAGENET_PREPROCESSING.mean)),
            std=tuple(float(v) for v in values.get("std", IMAGENET_PREPROCESSING.std)),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"preprocessing {preprocessing!r} is not valid: {err}") from None
    if result.crop_size < 1 or result.resize_size < 1 or len(result.mean) != len(result.std) or min(result.std) <= 0:
        raise ValueError(
            f"preprocessing {preprocessing!r} needs positive sizes and as many positive std as mean values."
        )
    return result


class Pooled(nn.Module):
    """A module's spatial output pooled to vectors, its node names kept
    (``body.*``, then ``avgpool``, which :meth:`Backbone.feature_node` finds)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body, self.avgpool = body, nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.body(x)), 1)


def _module_name(module: nn.Module) -> str:
    return f"module:{type(module).__module__}.{type(module).__qualname__}"


def _adopt(key: tuple[Any, ...], module: nn.Module, preprocessing: Preprocessing, unkeyed: str | None) -> Backbone:
    name, digest, groups = key
    model = copy.deepcopy(module).eval().requires_grad_(False)
    size = preprocessing.crop_size
    shape = (1, len(preprocessing.mean), size, size)
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as err:  # noqa: BLE001 - any failure of the user's forward: say where it came from
        raise ValueError(
            f"The backbone {name} fails on an input of shape {shape} (preprocessing {preprocessing.crop_size} px): "
            f"{error_cause(err)}. Pass preprocessing= with the input size it takes, or a module that takes images."
        ) from err
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 4):
        what = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a tensor of shape {tuple(out.shape)}"
        raise ValueError(
            f"A backbone module must return features (N, D) or a feature map (N, C, H, W); {name} returned {what}. "
            f"Wrap it in a module whose forward returns one of those."
        )
    prefix = ""
    if out.ndim == 4:
        model, prefix = Pooled(model).eval(), "body."
    if groups is None:
        groups = [(n,) for n, child in module.named_children() if any(True for _ in child.parameters())]
        loose = [n for n, _ in module.named_parameters(recurse=False)]
        groups = [tuple(loose)] + groups if loose else groups
    return Backbone(
        name=name,
        weights=WeightsRef(f"module:sha256:{digest}", None, digest, unkeyed),
        model=model,
        classifier=nn.Identity(),
        categories=None,
        preprocessing=preprocessing,
        embedding_dim=int(out.shape[1]),
        min_image_size=1,
        layer_groups=[tuple(prefix + n for n in group) for group in groups],
    )


def _check_groups(layer_groups: Any, module: nn.Module) -> tuple[tuple[str, ...], ...] | None:
    if layer_groups is None:
        return None
    names = {n for n, _ in module.named_modules()} | {n for n, _ in module.named_parameters()}
    try:
        groups = tuple(tuple(group) if not isinstance(group, str) else (group,) for group in layer_groups)
    except TypeError:
        groups = ()
    unknown = [n for group in groups for n in group if n not in names]
    if not groups or unknown or not all(groups):
        raise ValueError(
            f"layer_groups must be a non-empty list of groups of module names of the backbone, from input to "
            f"output; {f'unknown names {unknown[:5]}' if unknown else f'got {layer_groups!r}'}. Its top-level "
            f"modules: {', '.join(n for n, _ in module.named_children())}."
        )
    return groups


def describe_backbone(backbone: Any) -> str:
    """A short name for any ``backbone=`` value (never a module's repr)."""
    if isinstance(backbone, nn.Module):
        return f"module {type(backbone).__name__}"
    if isinstance(backbone, (tuple, list)):
        return f"({backbone[0]!r}, {str(backbone[1])!r})" if len(backbone) == 2 else f"tuple of {len(backbone)}"
    return repr(backbone) if isinstance(backbone, str) else type(backbone).__name__


def resolve_backbone(
    backbone: Any,
    weights: str | os.PathLike | None = "DEFAULT",
    *,
    preprocessing: Preprocessing | dict[str, Any] | None = None,
    layer_groups: Any = None,
    seed: int = 0,
    copy_model: bool = False,
) -> Backbone:
    """The :class:`Backbone` for any value the estimators take as ``backbone``.

    Parameters
    ----------
    backbone : str, (str, path) or torch.nn.Module
        A registry name (:func:`get_backbone` with ``weights``); an
        ``(architecture, checkpoint path)`` pair, the checkpoint in any
        layout :func:`load_state_dict` reads (``weights`` must stay
        ``"DEFAULT"``); or any module, whose output (features (N, D), or a
        feature map (N, C, H, W) that is average-pooled) is the embedding. A
        module is deep-copied and keyed by the digest of everything its
        outputs depend on (weights, buffers, attributes, the code of its
        classes: :func:`~skorchlite.backbones.identity.module_identity`), so
        a change of any is a new backbone.
    weights : str, path-like or None, default="DEFAULT"
        For a registry name; ``None`` initialises it randomly from ``seed``.
    preprocessing : Preprocessing, dict or None, default=None
        Replaces the backbone's own (a module's default: ImageNet's); see
        :func:`check_preprocessing`.
    layer_groups : list of lists of str, or None, default=None
        Module names from input to output, the units fine-tuning unfreezes;
        ``None``: the source's groups (a module's: its top-level children).
    seed : int, default=0
    copy_model : bool, default=False

    Returns
    -------
    Backbone

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3))
    >>> bb = resolve_backbone(net, preprocessing={"size": 32})
    >>> bb.embedding_dim, bb.weights.id.startswith("module:sha256:"), bb.layer_groups
    (16, True, [('body.0',), ('body.2',)])
    """
    if isinstance(backbone, nn.Module):
        pre = IMAGENET_PREPROCESSING if preprocessing is None else check_preprocessing(preprocessing)
        identity = module_identity(backbone)
        key = (_module_name(backbone), identity.digest, _check_groups(layer_groups, backbone))
        if identity.unkeyed:  # adopted afresh each time: its digest may miss a change
            result = _adopt(key, backbone, pre, identity.unkeyed)
        else:
            result = _ADOPTED.get_or_make((key, pre), lambda: _adopt(key, backbone, pre, identity.unkeyed))
        return copy.deepcopy(result) if copy_model else result
    if isinstance(backbone, (tuple, list)):  # a list: the pair as save_weights stores it
        if len(backbone) != 2 or not isinstance(backbone[0], str) or not is_weights_path(backbone[1]):
            raise ValueError(
                f"A backbone pair is (architecture name, checkpoint path), got {describe_backbone(backbone)}."
            )
        if weights != "DEFAULT":
            raise ValueError(f"backbone={describe_backbone(backbone)} brings its weights: leave weights='DEFAULT'.")
        backbone, weights = backbone[0], Path(backbone[1])
    result = get_backbone(backbone, weights, seed=seed)
    if preprocessing is not None or layer_groups is not None:
        result = replace(
            result,
            preprocessing=result.preprocessing if preprocessing is None else check_preprocessing(preprocessing),
            layer_groups=result.layer_groups
            if layer_groups is None
            # Not None: layer_groups is not.
            else list(cast("tuple[tuple[str, ...], ...]", _check_groups(layer_groups, result.model))),
        )
    return copy.deepcopy(result) if copy_model else result


def estimator_backbone(estimator: Any, *, copy_model: bool = False) -> Backbone:
    """The :class:`Backbone` an estimator's parameters give.

    Reads ``backbone``, ``weights``, ``preprocessing`` and, where the
    estimator has them, ``layer_groups`` and ``random_state`` (an int seeds
    a random initialisation, ``weights=None``; otherwise the seed is 0, so
    every estimator without one starts from the same random weights).
    """
    random_state = getattr(estimator, "random_state", None)
    seed = int(random_state) if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) else 0
    return resolve_backbone(
        estimator.backbone,
        estimator.weights,
        preprocessing=getattr(estimator, "preprocessing", None),
        layer_groups=getattr(estimator, "layer_groups", None),
        seed=seed,
        copy_model=copy_model,
    )
