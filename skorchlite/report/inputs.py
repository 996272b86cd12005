"""What the plots are drawn from: labels, probabilities and epoch records checked, and the errors ranked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.utils import check_consistent_length

from ..labels import check_labels


def check_proba(
    proba: Any, classes: Any, y_seen: np.ndarray, n_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities as (n_samples, n_classes) floats, with their classes.

    Parameters
    ----------
    proba : array-like of shape (n_rows, n_classes), or (n_rows,) for two classes
        The probabilities of the second class, for a 1-D ``proba``.
    classes : array-like or None
        The class of each column; ``None``: the sorted labels of ``y_seen``.
    y_seen : ndarray
        The labels the classes default to.
    n_rows : int, optional
        Rows expected; by default one per label of ``y_seen``.

    Returns
    -------
    proba : ndarray of shape (n_rows, n_classes)
    classes : ndarray of shape (n_classes,)

    Raises
    ------
    ValueError
        For another shape, or NaN or infinite values.
    """
    if hasattr(proba, "to_numpy"):
        proba = proba.to_numpy()
    proba = np.asarray(proba, dtype=float)
    classes = np.unique(y_seen) if classes is None else check_labels(classes, "classes")
    n_rows = len(y_seen) if n_rows is None else n_rows
    if proba.ndim == 1 and len(classes) == 2:
        proba = np.column_stack([1 - proba, proba])
    if proba.ndim != 2 or proba.shape != (n_rows, len(classes)):
        raise ValueError(
            f"proba has shape {proba.shape}; expected ({n_rows}, {len(classes)}): one row per sample "
            f"and one column per class of {classes.tolist()} (pass the estimator's classes_ as classes)."
        )
    if not np.isfinite(proba).all():
        raise ValueError("proba contains NaN or infinite values.")
    return proba, classes


def history_records(history: Any, allow_empty: bool = False) -> list[Mapping[str, Any]]:
    """One mapping per epoch, from a history in any form the report takes.

    Parameters
    ----------
    history : list of dict, a DataFrame, or an estimator with ``history_``
    allow_empty : bool, default=False
        Whether no epochs at all is an error.

    Returns
    -------
    list of mapping

    Raises
    ------
    TypeError
        When a record is not a mapping.
    ValueError
        When there are no epochs and ``allow_empty`` is false.
    """
    if hasattr(history, "history_"):
        history = history.history_
    if hasattr(history, "to_dict"):  # a pandas DataFrame
        history = history.to_dict("records")
    records = list(history)
    if not all(isinstance(record, Mapping) for record in records):
        raise TypeError("history must be a list of dicts, one per epoch (FineTuneClassifier.history_).")
    if not records and not allow_empty:
        raise ValueError("history is empty: there are no epochs to plot.")
    return records


def epoch_values(records: list[Mapping[str, Any]], key: str) -> np.ndarray:
    """One value per epoch; missing, None and non-finite values become NaN.

    Parameters
    ----------
    records : list of mapping
        As :func:`history_records` returns them.
    key : str
        E.g. ``"valid_loss"``.

    Returns
    -------
    ndarray of float, one per record

    Examples
    --------
    >>> epoch_values([{"lr": 0.1}, {"lr": None}, {}], "lr")
    array([0.1, nan, nan])
    """
    values = np.array([float_or_nan(record.get(key)) for record in records])
    values[~np.isfinite(values)] = np.nan
    return values


def float_or_nan(value: Any) -> float:
    """``float(value)``, or NaN for what is not a number (``None``, text).

    Parameters
    ----------
    value : object

    Returns
    -------
    float
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def rank_misclassified(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    proba: Sequence[Sequence[float]] | np.ndarray | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The misclassified samples, most confident first, as
    :func:`plot_misclassified` shows them.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    proba : array-like of shape (n_samples, n_classes), optional
        Predicted probabilities; without them the errors keep the order of
        the samples.
    classes : array-like of shape (n_classes,), optional
        The class of each column of ``proba``; by default the sorted labels
        of ``y_true`` and ``y_pred``.

    Returns
    -------
    indices : ndarray of int
        The rows whose prediction is wrong, ranked.
    confidence : ndarray of float or None
        The probability each gave to its predicted class (``None`` without
        ``proba``).

    Raises
    ------
    ValueError
        When the inputs differ in length or a predicted label is not in
        ``classes``.

    Examples
    --------
    >>> rank_misclassified(["a", "a", "b"], ["b", "b", "b"], [[0.4, 0.6], [0.1, 0.9], [0.2, 0.8]], ["a", "b"])
    (array([1, 0]), array([0.9, 0.6]))
    """
    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    if proba is None:
        return wrong, None
    proba, classes = check_proba(proba, classes, np.concatenate([y_true, y_pred]), len(y_true))
    column = {label: j for j, label in enumerate(classes.tolist())}
    missing = sorted({str(label) for label in y_pred[wrong].tolist() if label not in column})
    if missing:
        raise ValueError(f"predicted labels {missing} are not in classes {classes.tolist()}.")
    confidence = np.array([proba[i, column[label]] for i, label in zip(wrong, y_pred[wrong].tolist(), strict=True)])
    # Stable sort: equally confident errors keep the order of X.
    order = np.argsort(-confidence, kind="stable")
    return wrong[order], confidence[order]
