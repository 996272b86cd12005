"""What the fine-tuner learns beside its images: the target of a fit (one
label per sample, checked by :func:`skorchlite.labels.check_labels`, or a
multi-label 0/1 indicator matrix), its classes and each label's index among
them, the loss weights, and the validation split."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import scipy.sparse
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from ..labels import check_labels

__all__ = ["check_classes", "check_targets", "encode_labels", "encode_targets", "loss_weights", "validation_split"]

# How errors describe the one target a multi-label fit takes.
_INDICATOR = (
    "a multi-label y is a 0/1 indicator matrix (n_samples, n_labels), 1 where the sample has the label "
    "(sklearn.preprocessing.MultiLabelBinarizer makes one from lists of labels)"
)


def check_targets(y: Any, estimator_name: str) -> np.ndarray:
    """``y`` as ``fit`` takes it: one label per sample (:func:`check_labels`),
    or, 2-D with several columns, a multi-label indicator matrix.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_labels)
        A pandas object is read as its values, a sparse matrix as its dense
        array.
    estimator_name : str
        The estimator whose ``fit`` takes ``y`` (:func:`check_labels`).

    Returns
    -------
    ndarray of shape (n_samples,), or of int and shape (n_samples, n_labels)

    Raises
    ------
    ValueError
        Naming the first entry of a 2-D ``y`` that is not 0 or 1, or when
        ``y`` is lists of different lengths or has more than two dimensions.

    Examples
    --------
    >>> check_targets([[0, 1], [1, 1]], "FineTuneClassifier").tolist()
    [[0, 1], [1, 1]]
    >>> check_targets([[0, 1], [2, 0]], "FineTuneClassifier")
    Traceback (most recent call last):
    ...
    ValueError: y[1, 0] is 2, but a multi-label y is a 0/1 indicator matrix (n_samples, n_labels), 1 where the sample has the label (sklearn.preprocessing.MultiLabelBinarizer makes one from lists of labels).
    """
    if scipy.sparse.issparse(y):
        y = cast(Any, y).toarray()  # every sparse matrix and array has it; scipy's stubs say otherwise
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    try:
        shape = np.shape(y)
    except ValueError:  # numpy's word for rows of different lengths
        raise ValueError(f"y holds rows of different lengths; {_INDICATOR}.") from None
    if len(shape) < 2 or shape[1:] == (1,):  # a column is one label per sample, as in scikit-learn
        return check_labels(y, "y", estimator=estimator_name)
    if len(shape) > 2:
        raise ValueError(f"y has shape {shape}; give one label per sample, or {_INDICATOR}.")
    # Lists as objects: numpy would make every entry a string for one string among them.
    indicator = y if isinstance(y, np.ndarray) else np.array(y, dtype=object)
    if not shape[1]:
        raise ValueError(f"y has shape {shape}: no label column; {_INDICATOR}.")
    bad = np.argwhere(~np.isin(indicator, (0, 1)))
    if len(bad):
        i, j = bad[0]
        value = indicator[i, j]
        raise ValueError(
            f"y[{i}, {j}] is {value.item() if isinstance(value, np.generic) else value!r}, but {_INDICATOR}."
        )
    return indicator.astype(np.int64)


def encode_targets(
    y: np.ndarray, classes: Any, known: tuple[np.ndarray, bool] | None, estimator_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The classes of a fit and its target: :func:`encode_labels`'s, or for
    a multi-label ``y`` the column indices (as scikit-learn's multi-label
    classifiers hold them) and ``y`` as float32.

    Parameters
    ----------
    y : ndarray
        From :func:`check_targets`.
    classes : array-like or None
        As ``partial_fit`` takes them; for a multi-label ``y``, ``None`` or
        its column indices.
    known : (ndarray, bool) or None
        The classes of the fit this one continues, and whether it was
        multi-label: ``y`` must be of the same kind.
    estimator_name : str

    Returns
    -------
    classes : ndarray
    target : ndarray of shape (n_samples,) of int, or (n_samples, n_labels) of float32

    Examples
    --------
    >>> classes, target = encode_targets(np.array([[0, 1], [1, 1]]), None, None, "FineTuneClassifier")
    >>> classes.tolist(), target.dtype
    ([0, 1], dtype('float32'))
    """
    multilabel = y.ndim == 2
    if known is not None and known[1] != multilabel:
        raise ValueError(
            f"y is {_kind(multilabel)}, but the first fit's was {_kind(known[1])}: a fit continues with "
            "the kind of target it started with."
        )
    if not multilabel:
        return encode_labels(y, classes, None if known is None else known[0], estimator_name)
    columns = np.arange(y.shape[1])
    if known is not None and len(known[0]) != len(columns):
        raise ValueError(f"y has {len(columns)} label columns, but the first fit had {len(known[0])}.")
    if classes is not None and not np.array_equal(np.asarray(classes), columns):
        raise ValueError(
            f"classes={list(classes)!r} does not fit y: a multi-label y's classes are its column indices, "
            f"np.arange({len(columns)})."
        )
    return columns, y.astype(np.float32)


def _kind(multilabel: bool) -> str:
    return "a multi-label indicator matrix" if multilabel else "one label per sample"


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
        # Python scalars in the messages: numpy's repr would read np.str_('cat').
        unknown = set(np.unique(y).tolist()) - set(known.tolist())
        if unknown:
            raise ValueError(f"y has labels {sorted(unknown)} not seen in the first fit: {known.tolist()}.")
        if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), known):
            raise ValueError(f"classes={list(classes)!r} is not the same as in the first fit: {known.tolist()}.")
        labels = known
    else:
        labels = np.unique(y if classes is None else check_labels(classes, "classes", estimator=estimator_name))
        _check_two(labels, "y")
        unknown = set(np.unique(y).tolist()) - set(labels.tolist())
        if unknown:
            raise ValueError(f"y has labels {sorted(unknown)} that are not in classes: {labels.tolist()}.")
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
    """Weights of the loss: ``sample_weight`` times ``class_weight``, per
    sample (per sample and label for a multi-label target), divided by their
    mean over the training rows (see
    :func:`skorchlite.finetune.steps.weighted_loss`).

    Parameters
    ----------
    sample_weight : ndarray of shape (n_samples,)
        Non-negative.
    target : ndarray of shape (n_samples,) or (n_samples, n_labels)
        Each sample's index in ``classes``, or its 0/1 labels.
    classes : ndarray
    class_weight : None, "balanced", dict or list of dict
        As in scikit-learn; ``"balanced"`` counts the training rows. For a
        multi-label target, ``"balanced"`` weighs each label's present and
        absent rows as ``"balanced"`` weighs a binary column's two classes
        (``n / (2 n_present)`` and ``n / (2 n_absent)``), and a list gives
        one dict ``{0: absent weight, 1: present weight}`` per label, as
        scikit-learn's multi-output classifiers take it.
    train, valid : ndarray of int
        Training and validation rows.
    scale : float or None, default=None
        The divisor instead of the mean: an earlier call's, so that the
        chunks of a ``partial_fit`` series count as much as their weights
        say against each other.

    Returns
    -------
    weights : ndarray of float32, shape of ``target``
    scale : float
        The divisor used.

    Raises
    ------
    ValueError
        When a class (or a label's value) gets no finite weight >= 0, the
        ``class_weight`` does not fit the kind of target, or the training or
        validation rows have zero total weight (their loss is undefined).

    Examples
    --------
    >>> target, classes = np.array([0, 0, 1, 1]), np.array(["a", "b"])
    >>> weights, scale = loss_weights(np.array([1.0, 3.0, 2.0, 2.0]), target, classes, None, np.arange(4), np.arange(0))
    >>> weights.tolist(), scale
    ([0.5, 1.5, 1.0, 1.0], 2.0)
    >>> labels = np.array([[1, 0], [0, 0], [0, 1], [0, 1]])
    >>> weights, _ = loss_weights(np.ones(4), labels, np.arange(2), "balanced", np.arange(4), np.arange(0))
    >>> (weights[:, 0] * 3).round(3).tolist()
    [6.0, 2.0, 2.0, 2.0]
    """
    weight = sample_weight.astype(np.float64)
    if target.ndim == 2:
        weight = weight[:, None] * _label_weights(target, class_weight, train)
    elif class_weight is not None:
        if isinstance(class_weight, list):
            raise ValueError(
                "class_weight is a list (one dict per label column), which is for a multi-label y; for one "
                "label per sample give 'balanced' or a dict {class: weight}."
            )
        # "balanced" counts the training rows: those the loss sees.
        per_class = _class_weights(
            class_weight, classes, classes[target[train]], [f"class {c!r}" for c in classes.tolist()]
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


def _class_weights(class_weight: Any, classes: np.ndarray, y: np.ndarray, names: list[str]) -> np.ndarray:
    """scikit-learn's weight of each of ``classes`` for labels ``y``,
    checked finite and >= 0; errors name a class as ``names`` does."""
    per_class = compute_class_weight(class_weight, classes=classes, y=y)
    for name, value in zip(names, per_class, strict=True):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"class_weight must give every class a finite weight >= 0; {name} gets {float(value)!r}.")
    return per_class


def _label_weights(target: np.ndarray, class_weight: Any, train: np.ndarray) -> np.ndarray:
    """Each entry's weight under ``class_weight`` for a multi-label ``target``
    (see :func:`loss_weights`)."""
    n_labels = target.shape[1]
    if class_weight is None:
        return np.ones(target.shape)
    if isinstance(class_weight, dict):
        raise ValueError(
            "class_weight is a dict {class: weight}, which is for one label per sample; for a multi-label y "
            "give 'balanced' or a list of one dict {0: absent weight, 1: present weight} per label column."
        )
    if isinstance(class_weight, list) and len(class_weight) != n_labels:
        raise ValueError(f"class_weight lists {len(class_weight)} dicts, but y has {n_labels} label columns.")
    balanced = isinstance(class_weight, str)  # "balanced", the one string the constraints allow
    weights = np.empty(target.shape)
    values = np.arange(2)
    for j in range(n_labels):
        seen = target[train, j].astype(np.int64)
        n_present = int(seen.sum())
        if balanced and n_present in (0, len(seen)):
            raise ValueError(
                f"class_weight='balanced' weighs each label's present rows against its absent ones, but label "
                f"column {j} of y is {'never' if n_present == 0 else 'always'} present in the {len(seen)} training "
                "rows; drop that column, or give class weights as a list of dicts."
            )
        given = class_weight if balanced else class_weight[j]
        if not (balanced or isinstance(given, dict) and set(given) <= {0, 1}):
            raise ValueError(f"class_weight[{j}] is {given!r}, not a dict {{0: absent weight, 1: present weight}}.")
        per_value = _class_weights(given, values, seen, [f"label {j}'s value {v}" for v in values])
        weights[:, j] = per_value[target[:, j].astype(np.int64)]
    return weights


def validation_split(target: np.ndarray, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows: a share ``fraction`` held out,
    stratified by class; for a multi-label target, drawn at random (label
    sets rarely repeat often enough to stratify on).

    Parameters
    ----------
    target : ndarray of shape (n_samples,) or (n_samples, n_labels)
    fraction : float
        In [0, 1); 0 holds out nothing.
    seed : int or None

    Returns
    -------
    train, valid : ndarray of int

    Raises
    ------
    ValueError
        When some class has too few samples to stratify, or the data too
        few rows to hold any out.

    Examples
    --------
    >>> train, valid = validation_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
    >>> len(train), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[valid].tolist())
    (6, [0, 1])
    """
    indices = np.arange(len(target))
    if not fraction:
        return indices, indices[:0]
    multilabel = target.ndim == 2
    try:
        return train_test_split(indices, test_size=fraction, stratify=None if multilabel else target, random_state=seed)
    except ValueError as err:
        raise ValueError(
            f"Cannot hold out a {'' if multilabel else 'stratified '}validation_fraction={fraction} ({err}); "
            f"lower it, set it to 0, or give more images{'' if multilabel else ' per class'}."
        ) from err
