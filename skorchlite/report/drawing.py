"""Each plot built from checked inputs and drawn on a matplotlib ``Figure``."""

from __future__ import annotations

import math
from collections.abc import Mapping
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

from ..figures import FIGSIZES, new_figure, thumbnail
from ..images import check_images, load_rgb
from ..names import plural, shorten, shorten_all, visible
from .inputs import check_labels, check_proba, epoch_values, float_or_nan, history_records, rank_misclassified

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


# Longest side of the thumbnails in the misclassified grid, in pixels.
_THUMBNAIL = 256
# Above this many classes the confusion matrix cells carry no numbers.
_MAX_ANNOTATED = 20
# Longest class name on an axis or in a legend, in characters: longer ones
# are shortened (the page's tables give them in full).
_NAME_WIDTH = 18


def confusion_matrix_figure(y_true: Any, y_pred: Any, labels: Any) -> Figure:
    """The figure :func:`~skorchlite.report.plot_confusion_matrix` saves, not yet rendered.

    Takes its parameters but ``path``. The inputs are checked here, raising as it documents.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = new_figure(FIGSIZES["confusion_matrix"])
    _draw_confusion_matrix(fig, y_true, y_pred, labels)
    return fig


def roc_pr_figure(y_true: Any, proba: Any, classes: Any) -> Figure:
    """The figure :func:`~skorchlite.report.plot_roc_pr` saves, not yet rendered.

    Takes its parameters but ``path``. The inputs are checked here, raising as it documents.

    Returns
    -------
    matplotlib.figure.Figure
    """
    y_true = check_labels(y_true, "y_true")
    proba, classes = check_proba(proba, classes, y_true)
    fig = new_figure(FIGSIZES["roc_pr"])
    _draw_roc_pr(fig, y_true, proba, classes)
    return fig


def learning_curves_figure(history: Any) -> Figure:
    """The figure :func:`~skorchlite.report.plot_learning_curves` saves, not yet rendered.

    Takes its ``history``. The inputs are checked here, raising as it documents.

    Returns
    -------
    matplotlib.figure.Figure
    """
    records = history_records(history)
    fig = new_figure(FIGSIZES["learning_curves"])
    _draw_learning_curves(fig, records)
    return fig


def misclassified_figure(X: Any, y_true: Any, y_pred: Any, proba: Any, classes: Any, n: int) -> Figure:
    """The figure :func:`~skorchlite.report.plot_misclassified` saves, not yet rendered.

    Takes its parameters but ``path``. The data are checked here, raising as it documents;
    ``n`` by it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred)
    samples = check_images(X)
    if len(samples) != len(y_true):
        raise ValueError(f"X has {len(samples)} images but y_true has {len(y_true)} labels.")
    wrong, confidence = rank_misclassified(y_true, y_pred, proba, classes)
    fig = new_figure(FIGSIZES["misclassified"])
    shown = wrong[:n]
    thumbnails = [thumbnail(load_rgb(samples[i], int(i)), _THUMBNAIL) for i in shown]
    _draw_misclassified(fig, thumbnails, shown, y_true, y_pred, confidence, len(wrong))
    return fig


def _draw_confusion_matrix(fig: Figure, y_true: Any, y_pred: Any, labels: Any) -> None:
    y_true, y_pred = check_labels(y_true, "y_true"), check_labels(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("y_true is empty: there is nothing to plot.")
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else check_labels(labels, "labels")
    names = shorten_all(labels.tolist(), _NAME_WIDTH)
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    annotate = len(labels) <= _MAX_ANNOTATED
    # Upright only when every name fits under its column (about 36 characters across the matrix).
    rotation = "vertical" if max(map(len, names)) * len(names) > 36 else "horizontal"
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


def _legend(ax: Any, lines: dict[str, Any], **kwargs: Any) -> None:
    """A legend entry for each line, its text exactly the dict's key.

    matplotlib leaves out an entry whose label starts with "_", as a class
    name may; matplotlib 3.7 even a label passed explicitly to ``legend()``. So
    the entries are made with neutral labels and given their texts after.
    """
    legend = ax.legend(handles=list(lines.values()), labels=[" "] * len(lines), **kwargs)
    for text, label in zip(legend.get_texts(), lines, strict=True):
        text.set_text(label)


def _draw_roc_pr(fig: Figure, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> None:
    from matplotlib import colormaps

    roc_ax, pr_ax = fig.subplots(1, 2)
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    roc_aucs, aps, absent, only = [], [], [], []
    roc_lines: dict[str, Any] = {}  # legend entry -> line
    pr_lines: dict[str, Any] = {}
    for j, (label, name) in enumerate(zip(classes.tolist(), shorten_all(classes.tolist(), _NAME_WIDTH), strict=True)):
        positive = y_true == label
        colour = cmap(j % cmap.N)
        if not positive.any():
            absent.append(name)
            continue
        precision, recall, _ = precision_recall_curve(positive, proba[:, j])
        ap = average_precision_score(positive, proba[:, j])
        aps.append(ap)
        (pr_lines[f"{name} (AP {ap:.3f})"],) = pr_ax.plot(recall, precision, drawstyle="steps-post", color=colour)
        if positive.all():
            only.append(name)
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, j])
        roc_auc = auc(fpr, tpr)
        roc_aucs.append(roc_auc)
        (roc_lines[f"{name} (AUC {roc_auc:.3f})"],) = roc_ax.plot(fpr, tpr, color=colour)
    (roc_lines["chance"],) = roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    roc_ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    pr_ax.set(xlabel="Recall", ylabel="Precision", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    roc_ax.set_title("ROC, one-vs-rest" + (f" (macro AUC {np.mean(roc_aucs):.3f})" if roc_aucs else ""))
    pr_ax.set_title("Precision-recall, one-vs-rest" + (f" (macro AP {np.mean(aps):.3f})" if aps else ""))
    legend = {"fontsize": "small" if len(classes) <= 10 else "x-small", "ncols": 1 if len(classes) <= 12 else 2}
    _legend(roc_ax, roc_lines, loc="lower right", **legend)
    if aps:
        _legend(pr_ax, pr_lines, loc="lower left", **legend)
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

    epochs = np.array([float_or_nan(r.get("epoch", i + 1)) for i, r in enumerate(records)])
    epochs = np.where(np.isfinite(epochs), epochs, np.arange(1, len(records) + 1))
    phases = [r.get("phase") for r in records]
    train_loss = epoch_values(records, "train_loss")
    valid_loss = epoch_values(records, "valid_loss")
    valid_acc = epoch_values(records, "valid_accuracy")
    lr = epoch_values(records, "lr")

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
            f"No misclassified images:\nevery prediction of the {plural(total, 'image')} is correct.",
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
    which = "The" if len(thumbnails) == n_wrong else f"The {len(thumbnails)} {ranked}of"
    fig.suptitle(f"{which} {plural(n_wrong, 'misclassified image')} (of {total})")


def _fit_title(true: str, pred: str, score: str, width: int) -> str:
    """``"true: A / pred: B (0.93)"`` on one line when it fits in ``width``
    characters, else on two lines, with overlong labels shortened by '…'."""
    true, pred = visible(true), visible(pred)
    title = f"true: {true} / pred: {pred}{score}"
    if len(title) <= width:
        return title
    first = f"true: {shorten(true, max(width - 8, 4))} /"
    second = f"pred: {shorten(pred, max(width - 6 - len(score), 4))}{score}"
    return f"{first}\n{second}"
