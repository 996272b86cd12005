"""What the verbs read: image folders, and the options they share about the backbone."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..names import visible


def load_folder(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """The images of a folder of class folders, its warnings printed as notes.

    Parameters
    ----------
    folder : str

    Returns
    -------
    paths : ndarray of object
    labels : ndarray
    """
    from ..datasets import load_image_folder

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        paths, labels = load_image_folder(folder)
    for warning in caught:
        print(f"note: {visible(warning.message)}", file=sys.stderr)
    return np.asarray(paths, dtype=object), np.asarray(labels)


def class_table(y: np.ndarray) -> str:
    """The images per class, as the verbs print them first.

    Parameters
    ----------
    y : ndarray
        The labels.

    Returns
    -------
    str
        :func:`skorchlite.datasets.summarize`'s table.
    """
    from ..datasets import summarize

    return str(summarize(y))


def class_counts(y: np.ndarray) -> dict[Any, int]:
    """Images per class, sorted by class, as the report pages list them.

    Parameters
    ----------
    y : ndarray
        One label per image.

    Returns
    -------
    dict
        Class to number of images.

    Examples
    --------
    >>> class_counts(np.array(["b", "a", "b"]))
    {'a': 1, 'b': 2}
    """
    labels, counts = np.unique(y, return_counts=True)
    return {label: int(n) for label, n in zip(labels.tolist(), counts.tolist(), strict=True)}


def engine_params(args: Any) -> dict[str, Any]:
    """The estimators' parameters of the options every verb that embeds takes
    (``--device``, ``--batch-size``, ``--precision``, ``--tta``, ``--cache``).

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    dict
    """
    return {name: getattr(args, name) for name in ("device", "batch_size", "precision", "tta", "cache")}


def layer_option(names: list[str] | None) -> str | list[str] | None:
    """The extractor's ``layer`` for ``--layer NAME...``.

    Parameters
    ----------
    names : list of str or None
        The names given (``None``: no ``--layer``).

    Returns
    -------
    str, list of str or None
        One name alone, several as a list.
    """
    return names[0] if names is not None and len(names) == 1 else names


def announce_weights(backbone: str, weights: str | None) -> None:
    """Say loudly when a run starts from random weights: its scores measure
    the architecture alone, never a pretrained backbone.

    Parameters
    ----------
    backbone : str
    weights : str or None
        What ``--weights`` gave (``None``: ``random-init``).
    """
    if weights is None:
        print(
            f"NOTE: backbone {visible(backbone)} starts from a RANDOM INITIALISATION (weights 'random-init'), not pretrained."
        )


def backbone_weights(backbones: Iterable[str], weights: str | None) -> dict[str, str | None]:
    """Where each backbone reads ``weights`` from (its file, or its bundled
    weights' folder), by a label: inputs that no output may go over or into.

    Parameters
    ----------
    backbones : iterable of str
        The backbones the run uses.
    weights : str or None
        What ``--weights`` gave.

    Returns
    -------
    dict of str to (str or None)
        For :func:`skorchlite.cli.output.check_apart`; a backbone whose
        weights cannot be found is left out, for the run to say so in its
        own words.
    """
    from ..backbones import weights_location

    found: dict[str, str | None] = {}
    for name in backbones:
        try:
            where = weights_location(name, weights)
        except (ValueError, RuntimeError, ImportError):
            continue
        found[f"the weights of backbone {visible(name)}"] = None if where is None else str(where)
    return found


def model_weights(model: Any) -> dict[str, str | None]:
    """The backbone weights a saved ``model`` reads when it runs (it rebuilds
    its backbone from them): inputs that no output may go over or into, as
    :func:`backbone_weights` gives them.

    Parameters
    ----------
    model : estimator
        A fine-tuned classifier, or a pipeline whose extractor names its backbone.

    Returns
    -------
    dict of str to (str or None)
    """
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    found: dict[str, str | None] = {}
    for key, backbone in params.items():
        if (key == "backbone" or key.endswith("__backbone")) and isinstance(backbone, str):
            weights = params.get(key.removesuffix("backbone") + "weights", "DEFAULT")
            found.update(backbone_weights([backbone], str(weights) if isinstance(weights, os.PathLike) else weights))
    return found


def weights_file(weights: str | None) -> str | None:
    """``--weights`` when it names a file (a checkpoint the run reads), else ``None``.

    Parameters
    ----------
    weights : str or None
        What ``--weights`` gave.

    Returns
    -------
    str or None
        For the outputs' check that no output is an input.
    """
    return weights if weights is not None and os.path.isfile(weights) else None
