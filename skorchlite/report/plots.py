"""The report's plots as PNG files, or all of them as PNG bytes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from ..figures import figure_png, require_matplotlib, save_figure
from ..validation import Interval, check_params
from .drawing import confusion_matrix_figure, learning_curves_figure, misclassified_figure, roc_pr_figure
from .folder import write_files
from .inputs import check_labels, check_proba, history_records


def plot_confusion_matrix(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    path: str | os.PathLike,
    labels: Sequence[Any] | np.ndarray | None = None,
) -> Path:
    """Draw the confusion matrix: counts, and normalised per true class.

    Two panels drawn with scikit-learn's
    :class:`~sklearn.metrics.ConfusionMatrixDisplay`: on the left the counts
    (rows: true class, columns: predicted class), titled with the accuracy;
    on the right each row divided by its total, so the diagonal holds each
    class's recall. Cells carry their values up to 20 classes.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    path : str or path-like
        Where to write the PNG (``FIGSIZES["confusion_matrix"]`` times
        ``DPI`` pixels); its folder must exist.
    labels : array-like, optional
        Classes and their order on the axes, e.g. the estimator's
        ``classes_``; by default the sorted labels found in ``y_true`` and
        ``y_pred``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ImportError
        When matplotlib is not installed.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = plot_confusion_matrix(["cat", "dog", "dog"], ["cat", "dog", "cat"], Path(tmp.name) / "cm.png")
    >>> path.name
    'cm.png'
    >>> tmp.cleanup()
    """
    return save_figure(confusion_matrix_figure(y_true, y_pred, labels), path)


def plot_roc_pr(
    y_true: Sequence[Any] | np.ndarray,
    proba: Sequence[Sequence[float]] | np.ndarray,
    classes: Sequence[Any] | np.ndarray | None,
    path: str | os.PathLike,
) -> Path:
    """Draw one-vs-rest ROC and precision-recall curves, one per class.

    The left panel holds the ROC curves with each class's area under the
    curve in the legend, the right panel the precision-recall curves with
    each class's average precision; the titles give the macro averages.
    A class without positives in ``y_true`` (or, for ROC, without
    negatives) has no curve and is named under the panels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities (``predict_proba``), or for two classes the
        probabilities of the second one, shape (n_samples,).
    classes : array-like of shape (n_classes,) or None
        The class of each column of ``proba`` (the estimator's
        ``classes_``). ``None`` takes the sorted labels of ``y_true``, which
        must then be as many as the columns.
    path : str or path-like
        Where to write the PNG (``FIGSIZES["roc_pr"]`` times ``DPI``
        pixels); its folder must exist.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When ``proba`` does not have one row per label and one column per
        class.
    ImportError
        When matplotlib is not installed.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> proba = [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]]
    >>> path = plot_roc_pr(["cat", "dog", "dog", "cat"], proba, ["cat", "dog"], Path(tmp.name) / "roc.png")
    >>> path.name
    'roc.png'
    >>> tmp.cleanup()
    """
    return save_figure(roc_pr_figure(y_true, proba, classes), path)


def plot_learning_curves(history: Any, path: str | os.PathLike) -> Path:
    """Draw training curves from a history of epochs.

    Three panels sharing the epoch axis: train and validation loss (the
    epoch with the lowest validation loss, the one whose weights
    :class:`~skorchlite.FineTuneClassifier` keeps, is starred); validation
    accuracy; and the learning rate, smaller. Each change of phase (head,
    then fine-tune) is a dashed vertical line, named at the top. Missing and
    NaN values, such as the validation scores of a fit without a validation
    split, are not drawn.

    Parameters
    ----------
    history : list of dict, or an estimator with ``history_``
        One mapping per epoch with any of the keys ``epoch``, ``phase``,
        ``train_loss``, ``valid_loss``, ``valid_accuracy`` and ``lr``, as
        in :attr:`FineTuneClassifier.history_
        <skorchlite.FineTuneClassifier>`. A pandas DataFrame with those
        columns works too.
    path : str or path-like
        Where to write the PNG (``FIGSIZES["learning_curves"]`` times
        ``DPI`` pixels); its folder must exist.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When the history has no epochs.
    ImportError
        When matplotlib is not installed.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> history = [
    ...     {"epoch": 1, "phase": "head", "train_loss": 0.9, "valid_loss": 0.8, "valid_accuracy": 0.6, "lr": 1e-3},
    ...     {"epoch": 2, "phase": "fine-tune", "train_loss": 0.5, "valid_loss": 0.6, "valid_accuracy": 0.8, "lr": 5e-4},
    ... ]
    >>> path = plot_learning_curves(history, Path(tmp.name) / "curves.png")
    >>> path.name
    'curves.png'
    >>> tmp.cleanup()
    """
    return save_figure(learning_curves_figure(history), path)


def plot_misclassified(
    X: Any,
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    proba: Sequence[Sequence[float]] | np.ndarray | None,
    classes: Sequence[Any] | np.ndarray | None,
    path: str | os.PathLike,
    n: int = 12,
) -> Path:
    """Draw a grid of the most confidently misclassified images.

    The wrong predictions are ranked by the probability given to the
    predicted class, highest first, and the first ``n`` are shown as
    thumbnails, each titled ``"true: A / pred: B (0.93)"``. Without
    ``proba`` they are shown in the order of ``X``, without the
    probability. When every prediction is right the figure says so.

    Parameters
    ----------
    X : images
        Anything :func:`skorchlite.images.check_images` accepts: paths, PIL
        images, arrays. Only the images shown are decoded, with
        :func:`skorchlite.images.load_rgb`.
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    proba : array-like of shape (n_samples, n_classes) or None
        Predicted probabilities (``predict_proba``), to rank the errors.
    classes : array-like of shape (n_classes,) or None
        The class of each column of ``proba`` (the estimator's
        ``classes_``); ``None`` takes the sorted labels of ``y_true`` and
        ``y_pred``, which must then be as many as the columns.
    path : str or path-like
        Where to write the PNG (``FIGSIZES["misclassified"]`` times ``DPI``
        pixels); its folder must exist.
    n : int, default=12
        Most images shown.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When ``n`` is not a positive int, the inputs differ in length, a
        predicted label is not in ``classes``, or an image cannot be read.
    ImportError
        When matplotlib is not installed.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> X = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    >>> proba = [[0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]
    >>> path = plot_misclassified(X, ["a", "a", "b"], ["a", "b", "b"], proba, ["a", "b"], Path(tmp.name) / "errors.png")
    >>> path.name
    'errors.png'
    >>> tmp.cleanup()
    """
    check_params({"n": n}, {"n": [Interval(Integral, 1, None, closed="left")]}, "plot_misclassified")
    return save_figure(misclassified_figure(X, y_true, y_pred, proba, classes, n), path)


def report_figures(
    y_true: Sequence[Any] | np.ndarray | None = None,
    y_pred: Sequence[Any] | np.ndarray | None = None,
    proba: Sequence[Sequence[float]] | np.ndarray | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
    X: Any = None,
    history: Any = None,
) -> dict[str, bytes]:
    """Every plot the inputs allow, as PNG bytes by file name.

    What :func:`write_report` writes, rendered in memory (once, so that a
    page can inline the very bytes of the files). The parameters are
    :func:`write_report`'s, except that the labels may be left out to draw
    the learning curves alone.

    Returns
    -------
    dict of str to bytes
        ``"confusion_matrix.png"`` with labels, then ``"roc_pr.png"``,
        ``"learning_curves.png"`` and ``"misclassified.png"`` as the inputs
        allow, in this order.

    Raises
    ------
    ImportError
        When matplotlib is not installed.

    Examples
    --------
    >>> pngs = report_figures(["cat", "dog", "dog"], ["cat", "dog", "cat"])
    >>> list(pngs), pngs["confusion_matrix.png"][:4]
    (['confusion_matrix.png'], b'\\x89PNG')
    """
    require_matplotlib()
    if (y_true is None) != (y_pred is None):
        raise ValueError("give both y_true and y_pred, or neither.")
    labels = None if classes is None else check_labels(classes, "classes")
    figures = {}
    if y_true is None:
        if proba is not None or X is not None:
            raise ValueError("proba and X need y_true and y_pred.")
    else:
        figures["confusion_matrix.png"] = confusion_matrix_figure(y_true, y_pred, labels)
    if proba is not None:
        y_all = np.concatenate([check_labels(y_true, "y_true"), check_labels(y_pred, "y_pred")])
        proba, labels = check_proba(proba, labels, y_all, len(y_all) // 2)
        figures["roc_pr.png"] = roc_pr_figure(y_true, proba, labels)
    if history is not None and history_records(history, allow_empty=True):
        figures["learning_curves.png"] = learning_curves_figure(history)
    if X is not None:
        figures["misclassified.png"] = misclassified_figure(X, y_true, y_pred, proba, labels, 12)
    # Rendered one at a time as they are built would hold no less memory:
    # figures are small next to the images they come from.
    return {name: figure_png(fig) for name, fig in figures.items()}


def write_report(
    out_dir: str | os.PathLike,
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    proba: Sequence[Sequence[float]] | np.ndarray | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
    X: Any = None,
    history: Any = None,
) -> list[Path]:
    """Write every plot the inputs allow into a folder.

    ``confusion_matrix.png`` always; ``roc_pr.png`` with ``proba``;
    ``learning_curves.png`` with a non-empty ``history``;
    ``misclassified.png`` with ``X`` (ranked by confidence when ``proba``
    is given). Existing files of these names are replaced, all at once
    (:func:`skorchlite.report.folder.write_files`); nothing else in the
    folder is touched.

    Parameters
    ----------
    out_dir : str or path-like
        The folder, created with its parents when missing.
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    proba : array-like of shape (n_samples, n_classes), optional
        Predicted probabilities (``predict_proba``).
    classes : array-like of shape (n_classes,), optional
        The estimator's ``classes_``: the order of the confusion matrix and
        of the columns of ``proba``. By default the sorted labels of
        ``y_true`` and ``y_pred``.
    X : images, optional
        The images of ``y_true``, anything
        :func:`skorchlite.images.check_images` accepts.
    history : list of dict or estimator, optional
        Epoch records, e.g. :class:`~skorchlite.FineTuneClassifier`'s
        ``history_`` (or the fitted classifier itself).

    Returns
    -------
    list of pathlib.Path
        The files written, in the order above.

    Raises
    ------
    ImportError
        When matplotlib is not installed.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> y_true, y_pred = ["cat", "dog", "dog", "cat"], ["cat", "dog", "cat", "cat"]
    >>> proba = [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.6, 0.4]]
    >>> paths = write_report(Path(tmp.name) / "report", y_true, y_pred, proba, ["cat", "dog"])
    >>> [p.name for p in paths]
    ['confusion_matrix.png', 'roc_pr.png']
    >>> tmp.cleanup()
    """
    pngs = report_figures(y_true, y_pred, proba, classes, X, history)  # fails before creating anything
    return write_files(Path(out_dir), pngs)
