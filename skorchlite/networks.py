"""The networks that embed: a backbone up to one or more layers, globally
pooled, and its copy optimised for inference, built once per process; and
the linear layer a fitted scikit-learn head on embeddings becomes
(:func:`linear_layer`), so that a network can run it.

:mod:`skorchlite.engine` runs them (and re-exports the public names);
:mod:`skorchlite.inspect` pools the same nodes the same way
(:class:`PooledNodes`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from .memo import Memo

if TYPE_CHECKING:
    from .backbones import Backbone

__all__ = [
    "POOLINGS",
    "GlobalPool",
    "PooledNodes",
    "Pooling",
    "backbone_network",
    "embedding_module",
    "decides_like",
    "inference_network",
    "linear_layer",
    "optimize_for_inference",
    "output_widths",
]

#: ``pooling``: the global pooling of a feature map (GlobalPool).
Pooling = Literal["avg", "max", "avg+max"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


class GlobalPool(nn.Module):
    """Global pooling of a feature map (N, C, H, W) or token sequence (N, L, C).

    Parameters
    ----------
    pooling : {"avg", "max", "avg+max"}
        ``"avg+max"`` concatenates both, doubling the width.

    Examples
    --------
    >>> GlobalPool("avg+max")(torch.ones(2, 3, 4, 4)).shape
    torch.Size([2, 6])
    """

    def __init__(self, pooling: str):
        super().__init__()
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return x
        dims = (2, 3) if x.ndim == 4 else tuple(range(1, x.ndim - 1))
        parts = {"avg": [x.mean(dims)], "max": [x.amax(dims)], "avg+max": [x.mean(dims), x.amax(dims)]}
        return torch.cat(parts[self.pooling], dim=1).flatten(1)


class PooledNodes(nn.Module):
    """A traced body's outputs at ``nodes``, each pooled, concatenated in order.

    Parameters
    ----------
    body : nn.Module
        Returns a dict of node outputs (``create_feature_extractor``); it
        may return more nodes than ``nodes``.
    nodes : sequence of str
    pooling : {"avg", "max", "avg+max"}

    Examples
    --------
    >>> body = lambda x: {"a": x, "b": 2 * x}
    >>> PooledNodes(body, ["a", "b"], pooling="avg")(torch.ones(1, 3, 4, 4)).tolist()
    [[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]]
    """

    def __init__(self, body: Any, nodes: Sequence[str], *, pooling: str):
        super().__init__()
        self.body, self.nodes, self.pool = body, tuple(nodes), GlobalPool(pooling)

    def parts(self, outputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each node's output in ``outputs`` (a result of ``body``), pooled, in order."""
        return [self.pool(outputs[node]) for node in self.nodes]

    def join(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The pooled :meth:`parts` side by side: the embedding."""
        parts = self.parts(outputs)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.join(self.body(x))


def embedding_module(backbone: Backbone, layer: Any, pooling: str) -> nn.Module:
    """``backbone.model`` up to ``layer``, pooled; shares the backbone's weights.

    ``layer`` is anything :meth:`~skorchlite.backbones.Backbone.resolve_layers`
    takes (``None``: the penultimate features). Several layers come from one
    traced network, one forward pass, their pooled outputs concatenated in
    the order given.
    """
    if backbone.resolve_layers(layer) == (None,) and pooling == "avg":
        return backbone.model
    nodes = backbone.embedding_nodes(layer, pooling)
    from torchvision.models.feature_extraction import create_feature_extractor

    body = create_feature_extractor(backbone.model, {node: node for node in nodes})
    return PooledNodes(body, nodes, pooling=pooling).eval()


def output_widths(network: nn.Module, image_size: int) -> tuple[int, ...]:
    """Width of each layer's pooled output in an :func:`inference_network`
    (one entry for a single layer), from one image of zeros on the CPU."""
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.inference_mode():
        parts = network.parts(network.body(x)) if isinstance(network, PooledNodes) else [network(x)]
    return tuple(int(part.shape[1]) for part in parts)


def optimize_for_inference(module: nn.Module) -> nn.Module:
    """A private copy with BatchNorm folded into the preceding convolutions,
    in channels-last memory: together about 2-3x faster on CPU."""
    from torch.fx.experimental.optimization import fuse

    # deepcopy of an fx GraphModule comes back in training mode, hence eval().
    module = copy.deepcopy(module).eval()
    wrapper = module if isinstance(module, PooledNodes) else None
    target = module if wrapper is None else wrapper.body
    try:
        fused = fuse(target, inplace=True, no_trace=wrapper is not None)
    except Exception:  # noqa: BLE001 - a model fx cannot trace runs unfused, still correct
        fused = target
    if wrapper is not None:
        wrapper.body = fused
    else:
        module = fused
    return module.eval().to(memory_format=torch.channels_last)


# Embedding networks built by this process, by backbone name, weights
# (id and sha256: a replaced weights file is never served stale), layers,
# pooling and device.
_NETWORKS: Memo[tuple[Any, ...], nn.Module] = Memo(maxsize=8)


def inference_network(
    backbone: Backbone, layer: str | tuple[str | None, ...] | None, pooling: str, device: torch.device
) -> nn.Module:
    """The embedding network of a backbone, optimised, built once per process.

    Kept by the backbone's name and weights (:class:`~skorchlite.backbones.WeightsRef`,
    its sha256 included), never by the module object. Several layers come
    as a tuple (they are part of the key, so must be hashable).
    """
    key = (backbone.name, backbone.weights, layer, pooling, device)
    return _NETWORKS.get_or_make(
        key, lambda: optimize_for_inference(embedding_module(backbone, layer, pooling)).to(device)
    )


def backbone_network(
    backbone: Backbone, layer: tuple[str | None, ...], pooling: str, device: torch.device
) -> nn.Module:
    """:func:`inference_network` of ``backbone`` at ``layer`` (resolved names).

    Built once per process, keyed by the backbone's name and weights; but
    afresh each time for a module whose digest does not cover all it
    computes (``backbone.weights.unkeyed``), whose key may miss a change.
    """
    if backbone.weights.unkeyed:
        return optimize_for_inference(embedding_module(backbone, layer, pooling)).to(device)
    return inference_network(backbone, layer, pooling, device)


def linear_layer(scalers: Sequence[Any], classifier: Any, width: int) -> nn.Linear:
    """Fitted ``scalers`` and the linear ``classifier`` after them folded into one
    ``nn.Linear`` on ``width`` features whose outputs are the decision values, one
    per class (two classes: ``(-d/2, d/2)``, whose softmax is ``sigmoid(d)``), so
    that a logistic regression's softmax is its ``predict_proba``.

    Raises
    ------
    TypeError
        When the classifier does not compute one linear score per class.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import StandardScaler
    >>> X, y = np.random.default_rng(0).normal(size=(20, 3)), np.repeat([0, 1], 10)
    >>> scaler = StandardScaler().fit(X)
    >>> clf = LogisticRegression().fit(scaler.transform(X), y)
    >>> layer = linear_layer([scaler], clf, 3)
    >>> proba = layer(torch.from_numpy(X).float()).softmax(1).numpy()
    >>> bool(np.allclose(proba, clf.predict_proba(scaler.transform(X)), atol=1e-5))
    True
    """
    coef = classifier.coef_
    coef = np.asarray(coef.toarray() if hasattr(coef, "toarray") else coef, dtype=np.float64)
    intercept = np.broadcast_to(np.asarray(classifier.intercept_, dtype=np.float64), coef.shape[:1]).copy()
    # (x - mean) / scale, then W x + b, is again affine: fold from the last scaler back.
    for scaler in reversed(scalers):
        scale = scaler.scale_ if scaler.scale_ is not None else np.ones(width)
        mean = scaler.mean_ if scaler.mean_ is not None and scaler.with_mean else np.zeros(width)
        coef = coef / scale
        intercept = intercept - coef @ mean
    if coef.ndim == 2 and coef.shape[0] == 1:
        # Symmetric, not (0, d): a constant logit has no gradient, which would
        # leave Grad-CAM and class visualisation of the first class blank.
        coef, intercept = np.vstack([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    if (
        coef.ndim != 2
        or coef.shape != (len(classifier.classes_), width)
        or not decides_like(classifier, scalers, coef, intercept)
    ):
        raise TypeError(
            f"{type(classifier).__name__} does not compute one linear score per class from the "
            f"{width} embedding features (a one-vs-one SVC does not)"
        )
    head = nn.utils.skip_init(nn.Linear, width, coef.shape[0])  # leaves torch's random state alone
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef))
        head.bias.copy_(torch.from_numpy(intercept))
    return head.requires_grad_(False)


def decides_like(classifier: Any, scalers: Sequence[Any], coef: np.ndarray, intercept: np.ndarray) -> bool:
    """Whether the folded weights reproduce the classifier's own
    ``decision_function`` on a few random embeddings."""
    if not hasattr(classifier, "decision_function"):
        return False
    probe = np.random.default_rng(0).normal(size=(4, coef.shape[1]))
    expected = probe
    for scaler in scalers:
        expected = scaler.transform(expected)
    expected = np.asarray(classifier.decision_function(expected), dtype=np.float64)
    scores = probe @ coef.T + intercept
    if expected.ndim == 1:
        scores = scores[:, 1] - scores[:, 0]
    return expected.shape == scores.shape and np.allclose(
        scores, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
    )
