"""The one check of class labels, for every function and estimator that takes
them (the fine-tuner's ``y`` and ``classes_``, the report's plots, the data
set helpers)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

__all__ = ["check_labels"]


def check_labels(y: Any, name: str, *, estimator: str | None = None) -> np.ndarray:
    """Labels as a 1-D array of one type: one label per sample, none missing.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        All strings or all numbers; a pandas Series is read as its values.
    name : str
        How errors name ``y``.
    estimator : str or None, default=None
        The estimator whose ``fit`` takes ``y``, if any: ``y`` is then
        checked as scikit-learn's classifiers check their target (``None``
        refused naming the estimator, a column ``(n_samples, 1)`` flattened
        with a warning, continuous values refused).

    Returns
    -------
    ndarray of shape (n_samples,)

    Raises
    ------
    ValueError
        When ``y`` or one of its labels is missing, ``y`` is not one label
        per sample, or (for an estimator) no classification target.
    TypeError
        When strings and numbers are mixed (numpy would silently make the
        numbers strings).

    Examples
    --------
    >>> check_labels(["cat", "dog"], "y_true")
    array(['cat', 'dog'], dtype='<U3')
    >>> check_labels(["cat", 1], "y", estimator="FineTuneClassifier")
    Traceback (most recent call last):
    ...
    TypeError: y mixes label types: str (first at 0), number (first at 1). Labels must be all strings or all numbers.
    >>> check_labels([["cat", "dog"]], "labels")
    Traceback (most recent call last):
    ...
    ValueError: labels must be one-dimensional, one label per sample; got shape (1, 2).
    """
    if y is None:
        if estimator is not None:  # scikit-learn's message
            raise ValueError(f"{estimator} requires {name} to be passed, but the target {name} is None.")
        raise ValueError(f"{name} is None; pass one label per sample.")
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    # Checked before numpy sees them: np.asarray(["a", 1]) would silently make 1 into "1".
    kinds: dict[str, int] = {}
    for i, label in enumerate(np.asarray(y, dtype=object).ravel()):
        if label is None:
            raise ValueError(f"{name}[{i}] is None: a missing label. Drop that sample or give it a label.")
        kind = (
            "str" if isinstance(label, str) else "number" if isinstance(label, numbers.Number) else type(label).__name__
        )
        kinds.setdefault(kind, i)
    if len(kinds) > 1:
        found = ", ".join(f"{kind} (first at {i})" for kind, i in kinds.items())
        raise TypeError(f"{name} mixes label types: {found}. Labels must be all strings or all numbers.")
    labels = np.asarray(y)
    if estimator is not None and labels.ndim == 2 and labels.shape[1] == 1:
        labels = column_or_1d(labels, warn=True)  # as scikit-learn's classifiers take a column
    if labels.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, one label per sample; got shape {labels.shape}.")
    if estimator is not None:
        check_classification_targets(labels)
    return labels
