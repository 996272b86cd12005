"""The default head of a fitted :class:`~skorchlite.FineTuneClassifier`
(``head="voting"``): after fine-tuning, one logistic regression per layer of
the fine-tuned backbone's ``"blocks"``, fitted on the training images, their
log-probabilities added, as :class:`~skorchlite.LayerVotingClassifier` adds
them. Kept as a torch module (:class:`VotingHead`), so that inference,
test-time augmentation, the model file and explanations run it as they run
the linear head."""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from ..backbones import estimator_backbone
from ..engine import autocast, backbone_network, embedding_module, linear_layer, output_widths
from ..voting import default_layer_head
from .parameters import FineTuneParameters

if TYPE_CHECKING:
    from .estimator import FineTuneClassifier
    from .inputs import NetworkInputs

__all__ = [
    "VotingHead",
    "fit_voting_head",
    "layer_widths",
    "voting_features",
    "layers_network",
    "voting_layers",
    "voting_probabilities",
]


class VotingHead(nn.Module):
    """Linear heads on consecutive blocks of columns; the sum of their
    log-softmaxes is the output, whose softmax is the normalised product of
    the heads' probabilities.

    Parameters
    ----------
    heads : sequence of torch.nn.Linear
        One per block, in column order; each reads ``in_features`` columns.

    Examples
    --------
    >>> head = VotingHead([nn.Linear(3, 2), nn.Linear(4, 2)])
    >>> head(torch.zeros(5, 7)).shape
    torch.Size([5, 2])
    """

    def __init__(self, heads: Sequence[nn.Linear]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    @property
    def widths(self) -> list[int]:
        """The width of each block of columns."""
        return [cast(nn.Linear, head).in_features for head in self.heads]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.widths, dim=1)
        return torch.stack(
            [head(part.float()).log_softmax(1) for head, part in zip(self.heads, parts, strict=True)]
        ).sum(0)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> VotingHead:
        """The head a ``state_dict`` of one describes (its shapes give the blocks).

        Raises
        ------
        ValueError
            When ``state`` is not a voting head's.
        """
        count = len(state) // 2
        names = {f"heads.{i}.{kind}" for i in range(count) for kind in ("weight", "bias")}
        if count == 0 or set(state) != names:
            raise ValueError(f"voting_head_ holds {sorted(state)[:4]}, not heads.0.weight, heads.0.bias, ...")
        shapes = [tuple(state[f"heads.{i}.weight"].shape) for i in range(count)]
        if any(len(shape) != 2 for shape in shapes):
            raise ValueError(f"voting_head_'s weights have shapes {shapes}, not (classes, features)")
        head = cls([nn.utils.skip_init(nn.Linear, width, n_classes) for n_classes, width in shapes])
        head.load_state_dict(state)
        return head.requires_grad_(False)


def voting_layers(estimator: FineTuneClassifier) -> tuple[str | None, ...]:
    """The layers the voting heads read: the backbone's ``"blocks"``, or its
    penultimate features when it has no stages to name."""
    backbone = estimator_backbone(FineTuneParameters.of(estimator))
    return backbone.layer_shortcuts().get("blocks", (None,))


def layer_widths(estimator: FineTuneClassifier, layer: Any) -> list[int]:
    """The pooled width of each layer ``layer`` names, as the extractor measures
    them on the pretrained backbone's network (built once per process), whose
    shape fine-tuning keeps."""
    params = FineTuneParameters.of(estimator)
    backbone = estimator_backbone(params)
    network = backbone_network(backbone, backbone.resolve_layers(layer), "avg", torch.device("cpu"))
    return list(output_widths(network, backbone.preprocessing.resized(params.image_size).crop_size))


# Each fitted body's traced views, by resolved layers: tracing is most of a
# small predict's time. Keyed weakly, so a view dies with its body; a view
# shares the body's modules, so training, a state dict loaded and a move to a
# device, all in place, reach it; a new fit or a loaded file makes a new body.
_VIEWS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str | None, ...], nn.Module]] = weakref.WeakKeyDictionary()


def layers_network(estimator: FineTuneClassifier, layer: Any) -> nn.Module:
    """The fitted body up to the layers ``layer`` names, each average-pooled
    (the body itself for the penultimate features); shares the body's weights,
    traced once per body and layers."""
    backbone = estimator_backbone(FineTuneParameters.of(estimator))
    body = estimator.model_[0]
    views = _VIEWS.setdefault(body, {})
    layers = backbone.resolve_layers(layer)
    view = views.get(layers)
    if view is None:
        view = embedding_module(dataclasses.replace(backbone, model=body), layers, "avg")
        if view is not body:  # the penultimate features are the body: kept, it would never die
            views[layers] = view
    return view


def voting_features(estimator: FineTuneClassifier, inputs: NetworkInputs, rows: np.ndarray) -> np.ndarray:
    """The pooled :func:`voting_layers` of the fitted body on ``rows`` of
    ``inputs`` (their unaugmented images, or in embedding mode the
    extractor's cached features of those layers)."""
    if inputs.extractor is not None:
        extractor = clone(inputs.extractor).set_params(layer=list(voting_layers(estimator)))
        return extractor.fit_transform([inputs.samples[i] for i in rows])
    network = layers_network(estimator, voting_layers(estimator)).to(inputs.device).eval()
    out: list[np.ndarray] = []
    with torch.inference_mode(), autocast(inputs.device, estimator.precision):  # as predictions will run
        for _, features in inputs.outputs(network, rows):
            out.append(features.float().cpu().numpy())
    return np.concatenate(out)


def voting_probabilities(
    estimator: FineTuneClassifier, inputs: NetworkInputs, rows: np.ndarray, *, tta: bool
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(rows, probabilities)`` of the fitted body and its voting heads on
    ``rows`` of ``inputs``; with ``tta``, averaged with the mirror images'.
    The network is moved to the device now; iterate in inference mode."""
    head = cast(VotingHead, estimator.voting_head_).to(inputs.device).eval()
    if inputs.extractor is not None and not tta:

        def from_embeddings() -> Iterator[tuple[np.ndarray, torch.Tensor]]:
            features = torch.from_numpy(voting_features(estimator, inputs, rows)).to(inputs.device)
            yield rows, head(features).softmax(1)

        return from_embeddings()
    network = nn.Sequential(layers_network(estimator, voting_layers(estimator)), head)
    network.to(inputs.device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    return inputs.outputs(lambda images: network(images).softmax(1), rows, mirror=tta)


def fit_voting_head(
    estimator: FineTuneClassifier, inputs: NetworkInputs, target: np.ndarray, weight: np.ndarray, *, balanced: bool
) -> VotingHead | None:
    """Fit a clone of :func:`~skorchlite.voting.default_layer_head` per voting
    layer on every row of ``inputs`` (class indices ``target``, sample
    weights ``weight``), folded into a :class:`VotingHead`; the heads weigh
    the classes equally when ``balanced``, else by ``weight`` alone. ``None``,
    with a warning, when the rows lack a class of the estimator's (a
    ``warm_start`` fit on some classes): heads cannot learn a class they never see."""
    missing = sorted(set(range(len(estimator.classes_))) - set(np.unique(target).tolist()))
    if missing:
        warnings.warn(
            f"head='voting' fits its heads on this fit's rows, which have no sample of class "
            f"{estimator.classes_[missing].tolist()[0]!r}; the linear head predicts until a fit sees every class.",
            UserWarning,
            stacklevel=5,
        )
        return None
    rows = np.arange(len(target))
    features = voting_features(estimator, inputs, rows)
    heads = []
    start = 0
    for width in layer_widths(estimator, voting_layers(estimator)):
        block = features[:, start : start + width]
        start += width
        fitted: Any = default_layer_head()
        if not balanced:
            fitted.set_params(logisticregression__class_weight=None)
        fitted.fit(block, target, logisticregression__sample_weight=weight)
        heads.append(linear_layer(list(fitted[:-1]), fitted[-1], width))
    return VotingHead(heads)
