"""What the fine-tuner learns beside its images: the classes of a fit and
each label's index among them, per-sample loss weights, and the stratified
validation split (the labels themselves are checked by
:func:`skorchlite.labels.check_labels`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from ..labels import check_labels

__all__ = ["check_classes", "encode_labels", "loss_weights", "validation_split"]


def check_classes(classes: Any, name: str, estimator_name: str) -> np.ndarray:
    """Classes as a fit makes them (:func:`encode_labels`): labels of one
    type (:func:`check_labels`), at least two, distinct and sorted.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        E.g. a ``classes_`` read from a file.
    name, estimator_name : str
        How errors name the classes, and the estimator (:func:`check_labels`).

    Returns
    -------
    ndarray of shape (n_classes,)

    Raises
    ------
    ValueError
        Naming the first label that repeats or is out of order.

    Examples
    --------
    >>> check_classes(["cat", "cat"], "classes_", "FineTuneClassifier")
    Traceback (most recent call last):
    ...
    ValueError: classes_ holds 'cat' twice (at 0 and 1); a fit makes distinct classes, sorted.
    """
    array = np.asarray(classes)
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise ValueError(f"{name}[{int(np.argmin(np.isfinite(array)))}] is not finite: a missing label.")
    labels = check_labels(array, name, estimator=estimator_name)
    values = labels.tolist()  # plain values: their repr is the user's
    for i in range(1, len(values)):
        if not values[i - 1] < values[i]:
            what = "twice" if values[i - 1] == values[i] else "before a smaller one"
            raise ValueError(
                f"{name} holds {values[i - 1]!r} {what} (at {i - 1} and {i}); a fit makes distinct classes, sorted."
            )
    _check_two(labels, name)
    return labels


def _check_two(labels: np.ndarray, name: str) -> None:
    if len(labels) < 2:
        found = f"a single class ({labels[0].item()!r})" if len(labels) else "no class"
        raise ValueError(f"{name} has {found}; a classifier needs at least two.")


def encode_labels(
    y: np.ndarray, classes: Any, known: np.ndarray | None, estimator_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The classes of a fit, and each label's index among them.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels from :func:`check_labels`.
    classes : array-like or None
        All the labels, as ``partial_fit`` takes them; ``None``: those of ``y``.
    known : ndarray or None
        The classes of the fit this one continues (a warm start, a later
        ``partial_fit``), which ``y`` and ``classes`` must keep to.
    estimator_name : str
        How the error for a missing ``classes`` names the estimator.

    Returns
    -------
    classes : ndarray
        Sorted.
    target : ndarray of int, shape (n_samples,)

    Raises
    ------
    ValueError
        For fewer than two classes, or labels outside ``classes`` or ``known``.

    Examples
    --------
    >>> classes, target = encode_labels(np.array(["dog", "cat", "dog"]), None, None, "FineTuneClassifier")
    >>> classes.tolist(), target.tolist()
    (['cat', 'dog'], [1, 0, 1])
    """
    if known is not None:
        unknown = set(np.unique(y)) - set(known)
        if unknown:
            raise ValueError(f"y has labels {sorted(unknown)} not seen in the first fit: {list(known)}.")
        if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), known):
            raise ValueError(f"classes={list(classes)!r} is not the same as in the first fit: {list(known)}.")
        labels = known
    else:
        labels = np.unique(y if classes is None else check_labels(classes, "classes", estimator=estimator_name))
        _check_two(labels, "y")
        unknown = set(np.unique(y)) - set(labels)
        if unknown:
            raise ValueError(f"y has labels {sorted(unknown)} that are not in classes: {list(labels)}.")
    return labels, np.searchsorted(labels, y)


def loss_weights(
    sample_weight: np.ndarray,
    target: np.ndarray,
    classes: np.ndarray,
    class_weight: Any,
    train: np.ndarray,
    valid: np.ndarray,
    scale: float | None = None,
) -> tuple[np.ndarray, float]:
    """Per-sample weights of the loss: ``sample_weight`` times
    ``class_weight``, divided by their mean over the training rows (see
    :func:`skorchlite.finetune.steps.weighted_loss`).

    Parameters
    ----------
    sample_weight : ndarray of shape (n_samples,)
        Non-negative.
    target : ndarray of int, shape (n_samples,)
        Each sample's index in ``classes``.
    classes : ndarray
    class_weight : None, "balanced" or dict
        As in scikit-learn; ``"balanced"`` counts the training rows.
    train, valid : ndarray of int
        Training and validation rows.
    scale : float or None, default=None
        The divisor instead of the mean: an earlier call's, so that the
        chunks of a ``partial_fit`` series count as much as their weights
        say against each other.

    Returns
    -------
    weights : ndarray of float32, shape (n_samples,)
    scale : float
        The divisor used.

    Raises
    ------
    ValueError
        When a class gets no finite weight >= 0, or the training or
        validation rows have zero total weight (their loss is undefined).

    Examples
    --------
    >>> target, classes = np.array([0, 0, 1, 1]), np.array(["a", "b"])
    >>> weights, scale = loss_weights(np.array([1.0, 3.0, 2.0, 2.0]), target, classes, None, np.arange(4), np.arange(0))
    >>> weights.tolist(), scale
    ([0.5, 1.5, 1.0, 1.0], 2.0)
    """
    weight = sample_weight.astype(np.float64)
    if class_weight is not None:
        # "balanced" counts the training rows: those the loss sees.
        per_class = compute_class_weight(class_weight, classes=classes, y=classes[target[train]])
        bad = [c for c, w in zip(classes, per_class, strict=True) if not (np.isfinite(w) and w >= 0)]
        if bad:
            raise ValueError(
                f"class_weight must give every class a finite weight >= 0; class {bad[0]!r} gets "
                f"{per_class[list(classes).index(bad[0])]!r}."
            )
        weight = weight * per_class[target]
    for rows, name in [(train, "training"), (valid, "validation")]:
        if len(rows) and not weight[rows].sum() > 0:
            raise ValueError(
                f"The {len(rows)} {name} rows have zero total weight (sample_weight times class_weight), so "
                f"their loss is undefined; give weight to more samples"
                + (", or set validation_fraction=0." if name == "validation" else ".")
            )
    if scale is None:
        scale = float(weight[train].mean())
    return (weight / scale).astype(np.float32), scale


def validation_split(target: np.ndarray, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows: a stratified share ``fraction`` held out.

    Parameters
    ----------
    target : ndarray of shape (n_samples,)
    fraction : float
        In [0, 1); 0 holds out nothing.
    seed : int or None

    Returns
    -------
    train, valid : ndarray of int

    Raises
    ------
    ValueError
        When some class has too few samples to stratify.

    Examples
    --------
    >>> train, valid = validation_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
    >>> len(train), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[valid].tolist())
    (6, [0, 1])
    """
    indices = np.arange(len(target))
    if not fraction:
        return indices, indices[:0]
    try:
        return train_test_split(indices, test_size=fraction, stratify=target, random_state=seed)
    except ValueError as err:
        raise ValueError(
            f"Cannot hold out a stratified validation_fraction={fraction} ({err}); "
            "lower it, set it to 0, or give more images per class."
        ) from err
