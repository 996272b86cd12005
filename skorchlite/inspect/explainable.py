"""One resolver for every "model" argument of :mod:`skorchlite.inspect`.

A backbone name, a fitted :class:`~skorchlite.FineTuneClassifier` and a
fitted extractor pipeline with a linear head all become an
:class:`Explainable`: a differentiable network from [0, 1] pixels to logits
(normalisation happens inside the graph, so gradients and perturbations
live in pixel space), the preprocessing that decodes images for it, and the
name of each logit.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..backbones import (
    Backbone,
    Preprocessing,
    check_image_size,
    describe_backbone,
    estimator_backbone,
    get_backbone,
    node_of,
)
from ..engine import PooledNodes, decode_workers, linear_layer, prepared_batches, resolve_device, to_input
from ..images import check_images
from ..memory import freed_memory_kept
from ..names import did_you_mean
from ..validation import Interval, check_params

ACCEPTED = (
    "a backbone name (its ImageNet classes), a fitted FineTuneClassifier, or a fitted Pipeline of "
    "PretrainedFeatureExtractor, optional StandardScaler steps and a linear classifier with coef_ "
    "(LogisticRegression, LinearSVC, RidgeClassifier, SGDClassifier...)"
)


class _Net(nn.Module):
    """[0, 1] pixels -> logits: normalisation, backbone body, linear head.

    ``embed_nodes`` name the body's nodes whose pooled outputs, concatenated
    in order, feed the head; ``None`` is the body's own output.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(
        self,
        body: nn.Module,
        head: nn.Module,
        preprocessing: Preprocessing,
        embed_nodes: Sequence[str] | None = None,
        pooling: str = "avg",
    ):
        super().__init__()
        self.body, self.head = body, head
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, -1, 1, 1))
        self.embed_nodes, self.pooling = (tuple(embed_nodes) if embed_nodes else None), pooling
        self._taps: dict[str | None, tuple[PooledNodes, str | None]] = {}
        if self.embed_nodes is not None:
            self.trace(None)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed_nodes is None:
            return self.head(self.body((x - self.mean) / self.std))
        return self.tap(x, None)[1]

    def trace(self, layer: str | None) -> nn.Module:
        """The body as an fx graph returning node ``layer`` and the embedding.

        Built once per layer. fx patches ``nn.Module.__call__`` process-wide
        while it traces, so callers trace before starting decoding threads
        (whose transforms are modules too).
        """
        if layer not in self._taps:
            from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

            names = get_graph_node_names(self.body)[1]
            outputs = self.embed_nodes or (names[-1],)
            # By node, not by the name given: torchvision silently returns one
            # of two names for the same node (a module and its last node).
            tap = None if layer is None else node_of(layer, names)
            nodes = {node: node for node in (*outputs, *([tap] if tap is not None else []))}
            # Shares the body's modules and weights, wherever they are.
            graph = create_feature_extractor(self.body, nodes).eval()
            self._taps[layer] = (PooledNodes(graph, outputs, pooling=self.pooling), tap)
        return self._taps[layer][0].body

    def tap(self, x: torch.Tensor, layer: str | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(output of node ``layer``, logits) in one forward pass."""
        self.trace(layer)
        embedding, tap = self._taps[layer]
        values = embedding.body((x - self.mean) / self.std)
        return (None if tap is None else values[tap]), self.head(embedding.join(values))


@dataclass
class Explainable:
    """A resolved model: what every function of :mod:`skorchlite.inspect` works on."""

    net: _Net
    preprocessing: Preprocessing
    classes: np.ndarray
    backbone: Backbone
    name: str
    imagenet: bool
    cam_layer: str | None

    def to(self, device: torch.device) -> Explainable:
        """This model on ``device``; a private copy when moving, so that shared
        backbones and the user's estimator stay where they are."""
        if all(p.device == device for p in self.net.parameters()):
            return self
        return dataclasses.replace(self, net=copy.deepcopy(self.net).to(device))

    def class_index(self, target: Any) -> int:
        """Column of ``target``: a class label (or its text, as typed on a
        command line); for ImageNet also an index 0-999."""
        labels = self.classes.tolist()
        if self.imagenet and isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if 0 <= target < len(labels):
                return int(target)
            raise ValueError(f"class index {target} is out of range: {self.name} has {len(labels)} classes.")
        for i, label in enumerate(labels):
            if label == target:
                return i
        if isinstance(target, str):
            if self.imagenet and target.isdigit():
                return self.class_index(int(target))
            for i, label in enumerate(labels):
                if str(label) == target:
                    return i
        names = [str(label) for label in labels]
        shown = "" if len(names) > 20 else f" Classes: {', '.join(names)}."
        raise ValueError(f"{target!r} is not a class of {self.name}.{did_you_mean(target, names)}{shown}")

    def load(self, samples: list, device: torch.device) -> tuple[list[Image.Image], torch.Tensor]:
        """Decoded RGB images and their [0, 1] pixel batch, for a few samples."""
        batches = self.batches(samples, len(samples), device, workers=1)
        try:
            _, images, pixels = next(batches)
        finally:
            batches.close()  # shuts its thread pool down now
        return images, pixels

    def batches(
        self, samples: list, batch_size: int, device: torch.device, workers: int | None = None
    ) -> Generator[tuple[list[int], list[Image.Image], torch.Tensor], None, None]:
        """(rows, decoded RGB images, [0, 1] pixel batch) in order."""
        batches = prepared_batches(
            samples,
            range(len(samples)),
            self.preprocessing,
            batch_size=batch_size,
            workers=decode_workers(workers),
            keep_images=True,
        )
        with freed_memory_kept():  # while the caller runs the network on each batch
            for rows, items in batches:
                pixels = to_input([item.pixels for item in items], self.preprocessing, device, normalize=False)
                images = cast("list[Image.Image]", [item.image for item in items])  # keep_images=True
                yield rows, images, pixels


def one_image(image: Any) -> list:
    """The single image argument of a function, checked as X = [image]."""
    if isinstance(image, np.ndarray) and image.ndim == 4:
        raise ValueError(f"image has shape {image.shape}: one image is (H, W) or (H, W, C); pass image[i].")
    return check_images([image])


def resolve_model(model: Any, image_size: int | None = None, device: str | torch.device = "auto") -> Explainable:
    """Turn a backbone name, a fitted FineTuneClassifier or a fitted
    extractor pipeline into an :class:`Explainable` on ``device``.

    ``image_size`` sets the input side for a backbone name; a fitted model
    keeps the size it was trained at.
    """
    check_params(
        {"image_size": image_size}, {"image_size": [Interval(Integral, 1, None, closed="left"), None]}, "resolve_model"
    )
    device = resolve_device(device)
    if isinstance(model, Explainable):
        return model.to(device)
    if isinstance(model, str):
        explainable = _from_name(model, image_size)
    else:
        if image_size is not None:
            raise ValueError(
                "image_size applies to a backbone name; a fitted model sees images at the size it was trained with."
            )
        explainable = _from_estimator(model)
    return explainable.to(device)


def _from_name(name: str, image_size: int | None) -> Explainable:
    check_image_size(name, image_size)
    backbone = get_backbone(name)
    if backbone.categories is None:
        raise ValueError(f"Backbone {name!r} has no known class names; pass a fitted model instead.")
    preprocessing = backbone.preprocessing.resized(image_size)
    net = _Net(backbone.model, backbone.classifier, preprocessing)
    classes = np.array(backbone.categories, dtype=object)
    return Explainable(net, preprocessing, classes, backbone, f"{name} (ImageNet)", True, backbone.feature_node())


def _from_estimator(model: Any) -> Explainable:
    from sklearn.pipeline import Pipeline

    from ..finetune import FineTuneClassifier
    from ..finetune.voting_head import voting_layers

    if isinstance(model, FineTuneClassifier):
        model._check_fitted("be explained")  # as predict_proba checks its parameters
        if model.multilabel_:
            raise ValueError(
                "This FineTuneClassifier is multi-label; explanations compare the classes of a softmax, one "
                "class per image, so they would misstate its per-label probabilities."
            )
        backbone = estimator_backbone(model)
        preprocessing = backbone.preprocessing.resized(model.image_size)
        head, embed_nodes, cam_layer = model.model_[1], None, backbone.feature_node()
        if model.head == "voting" and model.voting_head_ is not None:  # what predict_proba runs
            layers = voting_layers(model)
            head, cam_layer = model.voting_head_, layers[-1] or cam_layer
            embed_nodes = None if layers == (None,) else backbone.embedding_nodes(layers, "avg")
        net = _Net(model.model_[0], head, preprocessing, embed_nodes)  # in eval mode, as predict_proba sets it
        name = f"FineTuneClassifier({describe_backbone(model.backbone)})"
        return Explainable(net, preprocessing, np.asarray(model.classes_), backbone, name, False, cam_layer)
    if isinstance(model, Pipeline):
        return _from_pipeline(model)
    raise TypeError(f"model must be {ACCEPTED}; got {type(model).__name__}.")


def _steps(pipeline: Any) -> list[Any]:
    from sklearn.pipeline import Pipeline

    out = []
    for _, step in pipeline.steps:
        if isinstance(step, Pipeline):
            out.extend(_steps(step))
        elif step is not None and step != "passthrough":
            out.append(step)
    return out


def _from_pipeline(pipeline: Any) -> Explainable:
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.validation import check_is_fitted

    from ..extractor import PretrainedFeatureExtractor

    steps = _steps(pipeline)
    extractor, *middle, final = steps if len(steps) >= 2 else (None, None)
    ok = (
        isinstance(extractor, PretrainedFeatureExtractor)
        and all(isinstance(step, StandardScaler) for step in middle)
        and hasattr(final, "coef_")
        and hasattr(final, "classes_")
    )
    if not ok:
        kinds = " -> ".join(type(step).__name__ for step in steps)
        raise TypeError(f"model must be {ACCEPTED}; got a Pipeline of {kinds}.")
    assert isinstance(extractor, PretrainedFeatureExtractor) and final is not None  # for mypy: ok checked both
    backbone = extractor._fitted_backbone()  # as transform checks its parameters
    for step in middle:
        check_is_fitted(step)
    preprocessing = backbone.preprocessing.resized(extractor.image_size)
    layers = backbone.resolve_layers(extractor.layer)
    plain = layers == (None,) and extractor.pooling == "avg"
    embed_nodes = None if plain else backbone.embedding_nodes(layers, extractor.pooling)
    try:
        head = linear_layer(middle, final, extractor.n_features_out_)
    except TypeError as err:
        raise TypeError(f"{err}; model must be {ACCEPTED}.") from None
    net = _Net(backbone.model, head, preprocessing, embed_nodes, extractor.pooling)
    name = f"{type(final).__name__} on {describe_backbone(extractor.backbone)}"
    # The deepest layer given, by default; the penultimate features stand
    # for the last feature map, which they pool.
    cam_layer = layers[-1] or backbone.feature_node()
    return Explainable(net, preprocessing, np.asarray(final.classes_), backbone, name, False, cam_layer)


def output_paths(path: str | os.PathLike | None, samples: list, kind: str) -> list[Path] | None:
    """Where the PNG of each image goes: ``path`` itself for one image and a
    ``.png`` path, else ``{index}_{name}_{kind}.png`` in folder ``path``
    (created). ``None`` without ``path``."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() == ".png":
        if len(samples) != 1:
            raise ValueError(f"path {str(path)!r} names one PNG but there are {len(samples)} images; give a folder.")
        return [path]
    path.mkdir(parents=True, exist_ok=True)
    stems = [sample.stem if isinstance(sample, Path) else "image" for sample in samples]
    return [path / f"{i:03d}_{stem}_{kind}.png" for i, stem in enumerate(stems)]
