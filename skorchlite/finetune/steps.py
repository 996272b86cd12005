"""Pieces of a fine-tuning step: freezing, parameter groups, optimiser,
schedule, folded BatchNorm, the weighted loss and the count of right
predictions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BATCHNORM_MODES",
    "OPTIMIZERS",
    "SCHEDULES",
    "BatchNormMode",
    "OptimizerName",
    "Schedule",
    "correct_predictions",
    "fold_frozen_batchnorm",
    "make_optimizer",
    "make_schedule",
    "set_trainable",
    "weighted_loss",
]

# The string options of fine-tuning, each defined once, here, where it takes
# effect; the estimator's constraints and signature read them.
#: ``batchnorm``: the mode of the BatchNorm layers of unfrozen groups (set_trainable).
BatchNormMode = Literal["eval", "train"]
BATCHNORM_MODES: tuple[str, ...] = get_args(BatchNormMode)
#: ``optimizer``: AdamW, or SGD with Nesterov momentum (make_optimizer).
OptimizerName = Literal["adamw", "sgd"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
#: ``schedule``: the per-step learning-rate schedule of a phase; None is constant (make_schedule).
Schedule = Literal["onecycle", "cosine", None]
SCHEDULES: tuple[str | None, ...] = get_args(Schedule)


def _modules_of(body: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    modules = []
    for name in names:
        try:
            modules.append(body.get_submodule(name))
        except AttributeError:
            pass  # a parameter held by a container (e.g. a ViT's class token)
    return modules


def _parameters_of(body: nn.Module, names: Sequence[str]) -> list[nn.Parameter]:
    params = dict(body.named_parameters())
    found = []
    for name in names:
        found += [p for n, p in params.items() if n == name or n.startswith(name + ".")]
    return found


def set_trainable(
    body: nn.Module, layer_groups: Sequence[Sequence[str]], n_unfrozen: int, *, batchnorm: BatchNormMode = "train"
) -> list[nn.Module]:
    """Unfreeze the last ``n_unfrozen`` layer groups of ``body``; freeze the rest.

    Returns the modules that must stay in eval mode while training: those
    of the frozen groups, so that their BatchNorm statistics do not move,
    and with ``batchnorm="eval"`` also the BatchNorm layers of the unfrozen
    groups (their scale and shift still train).
    """
    split = len(layer_groups) - n_unfrozen
    for i, group in enumerate(layer_groups):
        for param in _parameters_of(body, group):
            param.requires_grad_(i >= split)
    in_eval = [m for group in layer_groups[:split] for m in _modules_of(body, group)]
    if batchnorm == "eval":
        in_eval += [
            m
            for group in layer_groups[split:]
            for module in _modules_of(body, group)
            for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
    return in_eval


def make_optimizer(
    head: nn.Module,
    body: nn.Module,
    layer_groups: Sequence[Sequence[str]],
    n_unfrozen: int,
    *,
    name: OptimizerName,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    momentum: float,
) -> torch.optim.Optimizer:
    """Optimiser with discriminative learning rates.

    The head trains at ``lr``; the last unfrozen backbone group at
    ``lr * lr_decay``, the one before at ``lr * lr_decay**2``, and so on
    towards the input. Biases and normalisation weights (1-D parameters)
    get no weight decay.
    """
    scaled: list[tuple[Iterable[nn.Parameter], float]] = [(head.parameters(), lr)]
    unfrozen = layer_groups[len(layer_groups) - n_unfrozen :]
    for depth, group in enumerate(reversed(unfrozen), start=1):
        scaled.append((_parameters_of(body, group), lr * lr_decay**depth))
    groups = []
    for params, group_lr in scaled:
        params = [p for p in params if p.requires_grad]
        for decayed in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decayed]
            if chosen:
                groups.append({"params": chosen, "lr": group_lr, "weight_decay": weight_decay if decayed else 0.0})
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)


def make_schedule(optimizer: torch.optim.Optimizer, kind: Schedule, total_steps: int, warmup: float) -> Any:
    """Per-step learning-rate multiplier of each phase.

    ``"onecycle"`` rises from 1/25 of the rate to the rate along a cosine
    over the warm-up fraction, then falls along a cosine to 1/25 of 1e-4 of
    the rate (Smith's one-cycle with fastai's cosine annealing and
    ``div=25``, ``div_final=1e4``; fastai's own ``pct_start`` and phase
    rates differ, see ``docs/strategies.md``); ``"cosine"`` warms up
    linearly from zero, then decays along a cosine to zero; ``None`` is
    constant.
    """
    warmup_steps = warmup * total_steps

    def cosine(start: float, end: float, progress: float) -> float:
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def factor(step: int) -> float:
        if kind is None:
            return 1.0
        if step < warmup_steps:
            progress = step / warmup_steps
            return cosine(1 / 25, 1.0, progress) if kind == "onecycle" else (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return cosine(1.0, 1 / 25 / 1e4 if kind == "onecycle" else 0.0, progress)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _ConvBatchNorm(nn.Module):
    """A convolution and the BatchNorm after it, run as one convolution while
    the BatchNorm normalises with its running statistics (eval mode): its
    scale and shift fold into the convolution's weight and bias at each call,
    so gradients still reach all four tensors. In train mode, the two run as
    they are."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d):
        super().__init__()
        self.conv, self.norm = conv, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm = self.conv, self.norm
        if norm.training or norm.running_var is None or norm.running_mean is None:
            return norm(conv(x))
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        return conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1), shift)


def fold_frozen_batchnorm(model: nn.Module) -> nn.Module:
    """A view of ``model`` for training steps in which each convolution
    followed by a BatchNorm runs as one convolution while that BatchNorm is
    in eval mode (``batchnorm="eval"``, frozen groups).

    The view shares every parameter and buffer with ``model``; nothing is
    copied, and ``model`` itself is unchanged. Normalising activations
    costs about a fifth of a CPU training step of EfficientNet-Lite0, and
    folding scales the weights instead. A model torch.fx cannot trace is
    returned as it is.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    >>> x = torch.randn(2, 3, 8, 8)
    >>> torch.allclose(fold_frozen_batchnorm(net)(x), net(x), atol=1e-6)
    True
    """
    try:
        graph_module = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - an untraceable model trains unfolded, still correct
        return model
    modules = dict(graph_module.named_modules())
    folded = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if not (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and type(modules.get(source.target)) is nn.Conv2d
            and len(source.users) == 1
        ):
            continue
        name = f"conv_batchnorm_{folded}"
        graph_module.add_submodule(name, _ConvBatchNorm(modules[source.target], modules[node.target]))
        with graph_module.graph.inserting_after(node):
            replacement = graph_module.graph.call_module(name, source.args, source.kwargs)
        node.replace_all_uses_with(replacement)
        graph_module.graph.erase_node(node)
        graph_module.graph.erase_node(source)
        folded += 1
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def weighted_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, label_smoothing: float
) -> torch.Tensor:
    """Sum over the batch of each sample's loss times its weight.

    For one label per sample (``target`` of class indices), the loss is the
    cross-entropy of the softmax. For a multi-label ``target`` (0/1 floats
    of shape (N, n_labels), ``weight`` of the same shape), it is each
    label's binary cross-entropy of the sigmoid (PyTorch's
    ``BCEWithLogitsLoss``) times its weight, averaged over the labels;
    ``label_smoothing`` moves each 0/1 towards 1/2 by half its value, as
    Keras's binary cross-entropy does.

    The caller divides, by a constant that does not depend on which samples
    share a batch: training by the number of rows with weights scaled to mean
    1 over the whole training set, so that a weight of 2 acts as the sample
    appearing twice at any batch size; validation by the weight sum of the
    whole validation set. (Dividing by the batch's own weight sum, as
    PyTorch's weighted mean does, only rebalances samples within a batch, and
    does nothing at ``batch_size=1``.)

    Examples
    --------
    >>> logits, target = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    >>> round(weighted_loss(logits, target, torch.tensor([[3.0, 1.0]]), 0.0).item() / math.log(2), 3)
    2.0
    """
    if target.ndim == 2:
        smoothed = target * (1 - label_smoothing) + label_smoothing / 2
        losses = F.binary_cross_entropy_with_logits(logits.float(), smoothed, weight=weight, reduction="none")
        return losses.mean(1).sum()
    losses = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    return (losses * weight).sum()


def correct_predictions(logits: torch.Tensor, target: torch.Tensor) -> int:
    """Rows of a batch predicted right: the class of the highest logit, or
    for a multi-label ``target`` every label (a positive logit where it is
    present), as ``score``'s subset accuracy counts them.

    Examples
    --------
    >>> correct_predictions(torch.tensor([[2.0, -1.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    1
    """
    hits = ((logits > 0) == (target > 0.5)).all(1) if target.ndim == 2 else logits.argmax(1) == target
    return int(hits.sum())
