"""Evaluation plots as PNG files: confusion matrix, ROC / PR, learning curves, errors.

matplotlib is an optional dependency (``pip install "skorchlite[report]"``),
imported only when a plot is drawn. Figures are built with
:class:`matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so
no display is needed and matplotlib's global state (current figure,
backend) is left alone. Every PNG has a fixed size: its figure size
(``FIGSIZES``) times ``DPI`` pixels, whatever the data and whatever
``savefig`` settings the user's rcParams hold.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    auc,
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_curve,
)
from sklearn.utils import check_consistent_length

from .figures import DPI, figure_png, new_figure, require_matplotlib, save_figure
from .files import write_atomic
from .images import check_images, load_rgb

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "FIGSIZES",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "plot_misclassified",
    "plot_roc_pr",
    "rank_misclassified",
    "report_figures",
    "write_report",
]

#: Resolution of every PNG, in pixels per inch.
#: Size in inches (width, height) of each plot; the PNG is this times ``DPI``.
FIGSIZES: dict[str, tuple[float, float]] = {
    "confusion_matrix": (12.0, 5.5),
    "roc_pr": (12.0, 5.5),
    "learning_curves": (9.0, 8.0),
    "misclassified": (12.0, 10.0),
}

# Longest side of the thumbnails in the misclassified grid, in pixels.
_THUMBNAIL = 256
# Above this many classes the confusion matrix cells carry no numbers.
_MAX_ANNOTATED = 20


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
    return save_figure(_confusion_matrix_figure(y_true, y_pred, labels), path)


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
    return save_figure(_roc_pr_figure(y_true, proba, classes), path)


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
    return save_figure(_learning_curves_figure(history), path)


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
        When the inputs differ in length, a predicted label is not in
        ``classes``, or an image cannot be read.
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
    return save_figure(_misclassified_figure(X, y_true, y_pred, proba, classes, n), path)


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
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    if proba is None:
        return wrong, None
    proba, classes = _check_proba(proba, classes, np.concatenate([y_true, y_pred]), len(y_true))
    column = {label: j for j, label in enumerate(classes.tolist())}
    missing = sorted({str(label) for label in y_pred[wrong].tolist() if label not in column})
    if missing:
        raise ValueError(f"predicted labels {missing} are not in classes {classes.tolist()}.")
    confidence = np.array([proba[i, column[label]] for i, label in zip(wrong, y_pred[wrong].tolist(), strict=True)])
    # Stable sort: equally confident errors keep the order of X.
    order = np.argsort(-confidence, kind="stable")
    return wrong[order], confidence[order]


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
    labels = None if classes is None else _labels(classes, "classes")
    figures = {}
    if y_true is None:
        if proba is not None or X is not None:
            raise ValueError("proba and X need y_true and y_pred.")
    else:
        figures["confusion_matrix.png"] = _confusion_matrix_figure(y_true, y_pred, labels)
    if proba is not None:
        y_all = np.concatenate([_labels(y_true, "y_true"), _labels(y_pred, "y_pred")])
        proba, labels = _check_proba(proba, labels, y_all, len(y_all) // 2)
        figures["roc_pr.png"] = _roc_pr_figure(y_true, proba, labels)
    if history is not None and _history_records(history, allow_empty=True):
        figures["learning_curves.png"] = _learning_curves_figure(history)
    if X is not None:
        figures["misclassified.png"] = _misclassified_figure(X, y_true, y_pred, proba, labels, 12)
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
    is given). Existing files of these names are replaced.

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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in pngs.items():
        write_atomic(out / name, data)
        paths.append(out / name)
    return paths


# -- inputs --------------------------------------------------------------------


def _labels(y: Any, name: str) -> np.ndarray:
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample); got shape {y.shape}.")
    return y


def _check_proba(
    proba: Any, classes: Any, y_seen: np.ndarray, n_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities as (n_samples, n_classes) floats, with their classes."""
    if hasattr(proba, "to_numpy"):
        proba = proba.to_numpy()
    proba = np.asarray(proba, dtype=float)
    classes = np.unique(y_seen) if classes is None else _labels(classes, "classes")
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


def _history_records(history: Any, allow_empty: bool = False) -> list[Mapping[str, Any]]:
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


def _column(records: list[Mapping[str, Any]], key: str) -> np.ndarray:
    """One value per epoch; missing, None and non-finite values become NaN."""
    values = np.array([_float(record.get(key)) for record in records])
    values[~np.isfinite(values)] = np.nan
    return values


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _thumbnail(sample: Any, index: int) -> Image.Image:
    image = load_rgb(sample, index)
    image.thumbnail((_THUMBNAIL, _THUMBNAIL))
    return image


# -- figures -------------------------------------------------------------------


def _confusion_matrix_figure(y_true: Any, y_pred: Any, labels: Any) -> Figure:
    fig = new_figure(FIGSIZES["confusion_matrix"])
    _draw_confusion_matrix(fig, y_true, y_pred, labels)
    return fig


def _roc_pr_figure(y_true: Any, proba: Any, classes: Any) -> Figure:
    y_true = _labels(y_true, "y_true")
    proba, classes = _check_proba(proba, classes, y_true)
    fig = new_figure(FIGSIZES["roc_pr"])
    _draw_roc_pr(fig, y_true, proba, classes)
    return fig


def _learning_curves_figure(history: Any) -> Figure:
    records = _history_records(history)
    fig = new_figure(FIGSIZES["learning_curves"])
    _draw_learning_curves(fig, records)
    return fig


def _misclassified_figure(X: Any, y_true: Any, y_pred: Any, proba: Any, classes: Any, n: int) -> Figure:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred)
    samples = check_images(X)
    if len(samples) != len(y_true):
        raise ValueError(f"X has {len(samples)} images but y_true has {len(y_true)} labels.")
    wrong, confidence = rank_misclassified(y_true, y_pred, proba, classes)
    fig = new_figure(FIGSIZES["misclassified"])
    shown = wrong[:n]
    thumbnails = [_thumbnail(samples[i], int(i)) for i in shown]
    _draw_misclassified(fig, thumbnails, shown, y_true, y_pred, confidence, len(wrong))
    return fig


# -- drawing -------------------------------------------------------------------


def _draw_confusion_matrix(fig: Figure, y_true: Any, y_pred: Any, labels: Any) -> None:
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("y_true is empty: there is nothing to plot.")
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else _labels(labels, "labels")
    names = [str(label) for label in labels.tolist()]
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    annotate = len(labels) <= _MAX_ANNOTATED
    rotation = "vertical" if sum(len(name) for name in names) > 60 else "horizontal"
    small = {"fontsize": "small"} if len(labels) > 8 else {}
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    left, right = fig.subplots(1, 2)
    for ax, matrix, fmt, title in [
        (left, counts, "d", f"Counts\n(n = {counts.sum()}, accuracy {accuracy:.3f})"),
        (right, rates, ".2f", "Normalised per true class\n(diagonal: recall)"),
    ]:
        display = ConfusionMatrixDisplay(matrix, display_labels=names)
        display.plot(
            ax=ax,
            cmap="Blues",
            include_values=annotate,
            values_format=fmt,
            xticks_rotation=rotation,
            colorbar=True,
            text_kw=small,
        )
        ax.set_title(title)
    if right.images:
        right.images[0].set_clim(0, 1)


def _draw_roc_pr(fig: Figure, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> None:
    from matplotlib import colormaps

    roc_ax, pr_ax = fig.subplots(1, 2)
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    roc_aucs, aps, absent, only = [], [], [], []
    for j, label in enumerate(classes.tolist()):
        positive = y_true == label
        colour = cmap(j % cmap.N)
        name = str(label)
        if not positive.any():
            absent.append(name)
            continue
        precision, recall, _ = precision_recall_curve(positive, proba[:, j])
        ap = average_precision_score(positive, proba[:, j])
        aps.append(ap)
        pr_ax.plot(recall, precision, drawstyle="steps-post", color=colour, label=f"{name} (AP {ap:.3f})")
        if positive.all():
            only.append(name)
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, j])
        roc_auc = auc(fpr, tpr)
        roc_aucs.append(roc_auc)
        roc_ax.plot(fpr, tpr, color=colour, label=f"{name} (AUC {roc_auc:.3f})")
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    roc_ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    pr_ax.set(xlabel="Recall", ylabel="Precision", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    roc_ax.set_title("ROC, one-vs-rest" + (f" (macro AUC {np.mean(roc_aucs):.3f})" if roc_aucs else ""))
    pr_ax.set_title("Precision-recall, one-vs-rest" + (f" (macro AP {np.mean(aps):.3f})" if aps else ""))
    legend = {"fontsize": "small" if len(classes) <= 10 else "x-small", "ncols": 1 if len(classes) <= 12 else 2}
    roc_ax.legend(loc="lower right", **legend)
    if aps:
        pr_ax.legend(loc="lower left", **legend)
    for ax in (roc_ax, pr_ax):
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    notes = [
        f"{kind}: {', '.join(names)}"
        for kind, names in [
            ("No curves for classes absent from y_true", absent),
            ("No ROC curve, y_true holds no other class", only),
        ]
        if names
    ]
    if notes:
        fig.suptitle("; ".join(notes), fontsize="small")


def _draw_learning_curves(fig: Figure, records: list[Mapping[str, Any]]) -> None:
    from matplotlib.ticker import MaxNLocator

    epochs = np.array([_float(r.get("epoch", i + 1)) for i, r in enumerate(records)])
    epochs = np.where(np.isfinite(epochs), epochs, np.arange(1, len(records) + 1))
    phases = [r.get("phase") for r in records]
    train_loss = _column(records, "train_loss")
    valid_loss = _column(records, "valid_loss")
    valid_acc = _column(records, "valid_accuracy")
    lr = _column(records, "lr")

    loss_ax, acc_ax, lr_ax = fig.subplots(3, 1, sharex=True, height_ratios=[3, 2, 1])
    line = {"marker": "o", "markersize": 4}
    if np.isfinite(train_loss).any():
        loss_ax.plot(epochs, train_loss, label="train loss", color="tab:blue", **line)
    if np.isfinite(valid_loss).any():
        loss_ax.plot(epochs, valid_loss, label="valid loss", color="tab:orange", **line)
        best = int(np.nanargmin(valid_loss))
        loss_ax.plot(
            epochs[best],
            valid_loss[best],
            marker="*",
            markersize=14,
            color="tab:red",
            linestyle="none",
            label=f"best valid loss (epoch {epochs[best]:g})",
        )
    loss_ax.set(ylabel="loss", title="Learning curves")
    if loss_ax.lines:
        loss_ax.legend(loc="upper right", fontsize="small")

    if np.isfinite(valid_acc).any():
        acc_ax.plot(epochs, valid_acc, label="valid accuracy", color="tab:green", **line)
        acc_ax.legend(loc="lower right", fontsize="small")
    else:
        acc_ax.text(
            0.5,
            0.5,
            "no validation scores (no validation split)",
            transform=acc_ax.transAxes,
            ha="center",
            va="center",
            color="grey",
        )
    acc_ax.set_ylabel("valid accuracy")

    if np.isfinite(lr).any():
        lr_ax.plot(epochs, lr, color="tab:purple", **line)
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    lr_ax.set(ylabel="lr", xlabel="epoch")
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    # Phase changes: a dashed line between the last epoch of one phase and
    # the first of the next, on every panel, named on the loss panel.
    changes = [i for i in range(1, len(records)) if phases[i] != phases[i - 1]]
    for i in changes:
        x = (epochs[i - 1] + epochs[i]) / 2
        for ax in (loss_ax, acc_ax, lr_ax):
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
    if changes:
        blended = loss_ax.get_xaxis_transform()  # x in epochs, y in axes fraction
        for start in [0, *changes]:
            x = epochs[0] if start == 0 else (epochs[start - 1] + epochs[start]) / 2
            loss_ax.text(x, 0.98, f" {phases[start]}", transform=blended, ha="left", va="top", color="dimgrey")
    elif phases[0] is not None:
        loss_ax.set_title(f"Learning curves (phase: {phases[0]})")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)


def _draw_misclassified(
    fig: Figure,
    thumbnails: list[Image.Image],
    shown: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray | None,
    n_wrong: int,
) -> None:
    total = len(y_true)
    if not thumbnails:
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            f"No misclassified images:\nall {total} predictions are correct.",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=20,
        )
        return
    ncols = math.ceil(math.sqrt(len(thumbnails)))
    nrows = math.ceil(len(thumbnails) / ncols)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    fontsize = 10 if ncols <= 4 else 8
    # Characters of a title line that fit above one image (about 0.55 em each).
    width = int(fig.get_figwidth() / ncols * 72 / (0.55 * fontsize))
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k >= len(thumbnails):
            continue
        i = shown[k]
        ax.imshow(np.asarray(thumbnails[k]))
        score = "" if confidence is None else f" ({confidence[k]:.2f})"
        ax.set_title(_fit_title(str(y_true[i]), str(y_pred[i]), score, width), fontsize=fontsize, color="darkred")
    ranked = "most confident " if confidence is not None else "first "
    fig.suptitle(f"The {len(thumbnails)} {ranked}of {n_wrong} misclassified images (of {total})")


def _fit_title(true: str, pred: str, score: str, width: int) -> str:
    """``"true: A / pred: B (0.93)"`` on one line when it fits in ``width``
    characters, else on two lines, with overlong labels shortened by '…'."""
    title = f"true: {true} / pred: {pred}{score}"
    if len(title) <= width:
        return title
    first, second = f"true: {_shorten(true, width - 8)} /", f"pred: {_shorten(pred, width - 6 - len(score))}{score}"
    return f"{first}\n{second}"


def _shorten(text: str, width: int) -> str:
    width = max(width, 4)
    return text if len(text) <= width else text[: width - 1] + "…"
