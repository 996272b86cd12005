"""What a loaded backbone is: the network, its preprocessing, its weights'
identity and layer names; and the error of weights not on this machine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from ..names import did_you_mean
from ..private_api import ImageClassification
from .layers import feature_node_of, node_of, shortcuts_of


class BackboneUnavailableError(RuntimeError):
    """The weights of a backbone are not on this machine."""


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """The evaluation transform a backbone was trained with.

    Resize the shorter side to ``resize_size``, centre-crop ``crop_size``,
    scale to [0, 1] and normalise with ``mean``/``std`` per channel.
    Built with keywords only: two sizes side by side are easily swapped.
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
        >>> pre = Preprocessing(crop_size=224, resize_size=256, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
        >>> pre.crop_box(512, 256)
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


#: ImageNet's evaluation transform, for modules that bring no preprocessing.
IMAGENET_PREPROCESSING = Preprocessing(
    crop_size=224, resize_size=256, interpolation="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


@dataclass(frozen=True)
class WeightsRef:
    """Resolved weights: a stable id, the file and its SHA-256.

    ``path`` is ``None`` for weights that come from no file: a random
    initialisation (id ``"random-init:seed=N"``, hash of the initial state
    dict) or a module (id ``"module:sha256:..."``, the digest of everything
    its outputs depend on: :func:`~skorchlite.backbones.identity.module_identity`).
    ``unkeyed`` says what a module's digest cannot cover (``None``: nothing),
    in which case its outputs are never cached.
    """

    id: str
    path: Path | None
    sha256: str
    unkeyed: str | None = None


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
        return feature_node_of(self.layer_names())

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
            For any other name, with the closest names and where to list
            every available one.

        Examples
        --------
        >>> from skorchlite.backbones import get_backbone
        >>> backbone = get_backbone("efficientnet_lite0")
        >>> backbone.check_layer("_head_act")
        '_head_act'
        >>> backbone.check_layer("_head")
        Traceback (most recent call last):
        ...
        ValueError: Backbone 'efficientnet_lite0' has no layer '_head'. Did you mean '_head_act'...
        """
        names = self.layer_names()
        if isinstance(layer, str) and node_of(layer, names) is not None:
            return layer
        shortcuts = self.layer_shortcuts()
        raise ValueError(
            f"Backbone {self.name!r} has no layer {layer!r}.{did_you_mean(layer, [*shortcuts, *names])}"
            f" Shortcuts: {', '.join(shortcuts)}."
            # Not every name: a long backbone's list would make a line of thousands of characters.
            + f" Its {len(names)} layers are listed by: skorchlite backbones --layers {self.name}"
            " (or skorchlite.backbones.list_layers)."
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
        - ``"blocks"``: from the ``"mid"`` stage on, the output of every
          block that adds to a residual (each stage's blocks after its
          first), and ``None``; meant for a head per layer
          (:class:`~skorchlite.LayerVotingClassifier`).

        Returns
        -------
        dict
            Shortcut name to node names (``None``: the penultimate
            features), from input to output.

        Examples
        --------
        >>> from skorchlite.backbones import get_backbone
        >>> get_backbone("efficientnet_lite0").layer_shortcuts()["stages"]
        ('_blocks.10.add', '_blocks.14.add', '_blocks.15._bn2', None)
        >>> get_backbone("efficientnet_lite0").layer_shortcuts()["blocks"]
        ('_blocks.9.add', '_blocks.10.add', '_blocks.12.add', '_blocks.13.add', '_blocks.14.add', None)
        """
        return shortcuts_of(self.name, self.layer_names(), self.layer_groups)

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
        >>> from skorchlite.backbones import get_backbone
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


def _fingerprint(name: str, weights: WeightsRef, preprocessing: Preprocessing) -> dict[str, Any]:
    return {
        "backbone": name,
        "weights": weights.id,
        "weights_sha256": weights.sha256,
        "preprocessing": asdict(preprocessing),
    }


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
