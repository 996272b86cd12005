"""Names inside a network: graph nodes, layer shortcuts, layer groups, and
the submodules a backbone replaces."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from torch import nn


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


def feature_node_of(nodes: list[str]) -> str | None:
    """The last spatial feature map among graph ``nodes``: the node the
    global average pooling takes.

    Parameters
    ----------
    nodes : list of str
        Graph node names, from input to output.

    Returns
    -------
    str or None
        ``None`` for networks without one (vision transformers pool a
        class token).

    Examples
    --------
    >>> feature_node_of(["features.8", "avgpool", "flatten", "classifier"])
    'features.8'
    """
    for before, node in itertools.pairwise(nodes):
        if node.endswith(("avgpool", "avg_pooling")) or node.startswith(("adaptive_avg_pool2d", "global_pool")):
            return before
    return None


# Which stage output "mid" is, counted from the last before the feature map.
# -3 is the end of the stride-16 stage in EfficientNets (BUSI, grouped folds:
# 0.783 balanced accuracy against 0.740 for the penultimate features); in
# ResNets the stride-16 stage (layer3) is the last one before the map.
_MID_STAGE = {"resnet": -1, "resnext": -1, "wide_resnet": -1}


def shortcuts_of(name: str, nodes: list[str], groups: list[tuple[str, ...]]) -> dict[str, tuple[str | None, ...]]:
    """The layer shortcuts of a network, from its names alone.

    What :meth:`~skorchlite.backbones.Backbone.layer_shortcuts` returns,
    without a built backbone.

    Parameters
    ----------
    name : str
        The backbone's name (its family decides which stage is ``"mid"``).
    nodes : list of str
        Graph node names of the headless network, from input to output.
    groups : list of tuple of str
        Its layer groups, from input to output.

    Returns
    -------
    dict
        Shortcut name to node names (``None``: the penultimate features).
    """
    last = feature_node_of(nodes) or nodes[-1]
    stages: list[str] = []
    repeats: list[list[str]] = []
    for group in groups:
        ends = [node for module in group if (node := node_of(module, nodes)) is not None]
        if ends and nodes.index(ends[-1]) < nodes.index(last) and ends[-1] not in stages:
            stages.append(ends[-1])
            repeats.append(_repeated_block_ends(group, nodes))
    if not stages:
        return {"penultimate": (None,)}
    index = max(next((i for family, i in _MID_STAGE.items() if name.startswith(family)), -3), -len(stages))
    # Networks whose groups are single blocks have no repeats to list: their
    # stage outputs stand for them.
    blocks = [node for stage in repeats[index:] for node in stage] or stages[index:]
    return {
        "penultimate": (None,),
        "mid": (stages[index],),
        "stages": (*stages[-3:], None),
        "blocks": (*blocks, None),
    }


def _repeated_block_ends(group: Sequence[str], nodes: Sequence[str]) -> list[str]:
    """Output nodes of a stage's blocks after its first (the first changes
    stride or width; the others add to a residual of the same shape).

    A module of the group whose children are numbered modules with layers
    of their own (``layer3.0``, ``layer3.1``: a stage container) stands for
    its children.

    Examples
    --------
    >>> nodes = ["layer3.0.relu", "layer3.1.relu", "layer3.2.relu", "avgpool"]
    >>> _repeated_block_ends(("layer3",), nodes)
    ['layer3.1.relu', 'layer3.2.relu']
    >>> _repeated_block_ends(("_blocks.8", "_blocks.9"), ["_blocks.8._bn2", "_blocks.9.add"])
    ['_blocks.9.add']
    """
    blocks: list[str] = []
    for module in group:
        inside = [node[len(module) + 1 :].split(".", 1) for node in nodes if node.startswith(module + ".")]
        children = [f"{module}.{k[0]}" for k in inside if k[0].isdigit() and len(k) == 2]
        children = list(dict.fromkeys(children))
        blocks.extend(children if len(children) > 1 else [module])
    ends = [node for block in blocks if (node := node_of(block, nodes)) is not None]
    return ends[1:]


def top_level_groups(model: nn.Module) -> list[tuple[str, ...]]:
    """Top-level children in order; the trunk containers are opened up.

    Parameters
    ----------
    model : torch.nn.Module
        A headless network.

    Returns
    -------
    list of tuple of str
        Module names per group, from input to output; parameters held
        directly by a container join the next group (the last, at the end).
    """
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
GROUPS: dict[str, Any] = {
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


def last_linear(model: nn.Module) -> str:
    """The module name of ``model``'s last ``nn.Linear``: the classifier of
    most architectures.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    str

    Examples
    --------
    >>> last_linear(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    '2'
    """
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def set_submodule(model: nn.Module, qualname: str, module: nn.Module) -> None:
    """Put ``module`` in ``model`` at the dotted name ``qualname``.

    Parameters
    ----------
    model : torch.nn.Module
    qualname : str
        A module name of ``model``, e.g. ``"classifier.1"``.
    module : torch.nn.Module
        What replaces the module there.
    """
    parent, _, attr = qualname.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)
