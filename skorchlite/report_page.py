"""The report as one self-contained HTML page (``DIR/index.html``).

``skorchlite evaluate --report DIR`` and ``skorchlite finetune --report DIR``
write it beside their PNGs. Every image is inlined as a ``data:`` URI (the
plots are the very PNG bytes of the files, thumbnails are small JPEGs),
there is no script and no link outside the page, so it opens from a USB
stick on a machine without network. All text that comes from the user
(labels, paths, parameters) is escaped.
"""

from __future__ import annotations

import base64
import datetime
import html
import importlib.metadata
import io
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from .images import check_images, load_rgb
from .report import rank_misclassified

__all__ = ["ErrorGallery", "RunInfo", "error_gallery", "evaluation_page", "finetune_page", "format_score"]

# Longest side, in pixels, of an error thumbnail and of a duplicate's.
ERROR_THUMBNAIL = 200
DUPLICATE_THUMBNAIL = 110
# Small images (8x8 digits) are enlarged to at least this side, pixels kept sharp.
_MIN_SIDE = 96
_JPEG_QUALITY = 82
# How much of an overlay is heatmap: as skorchlite.inspect.grad_cam draws it.
_HEATMAP_ALPHA = 0.45
# Duplicate groups shown with their images; the rest are only counted.
MAX_DUPLICATE_GROUPS = 200
_LIBRARIES = ("skorchlite", "torch", "torchvision", "scikit-learn", "numpy", "pillow", "matplotlib")


def format_score(scores: Sequence[float] | np.ndarray) -> str:
    """``"mean ± std"`` of per-fold scores, to three decimals, as the terminal prints it.

    Examples
    --------
    >>> format_score([0.8, 0.9])
    '0.850 ± 0.050'
    """
    scores = np.asarray(scores, dtype=float)
    return f"{scores.mean():.3f} ± {scores.std():.3f}"


@dataclass
class RunInfo:
    """What was run, for the page's "What was run" section.

    Attributes
    ----------
    command : str
        The command line, as typed.
    parameters : dict
        The estimator's or the command's parameters.
    fingerprint : dict
        The backbone fingerprint (name, weights, weights hash, preprocessing...).
    folder : str or None
        The image folder (``None``: scikit-learn's digits).
    class_counts : dict
        Class -> number of images.
    date : str
        When the report was made (ISO 8601, local time with its offset).
    versions : dict
        Library -> installed version.
    """

    command: str
    parameters: Mapping[str, Any]
    fingerprint: Mapping[str, Any]
    folder: str | None
    class_counts: Mapping[Any, int]
    date: str = field(default_factory=lambda: datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    versions: Mapping[str, str] = field(default_factory=lambda: _versions())


@dataclass
class ErrorGallery:
    """The misclassified images a page shows, ranked, with their overlays.

    Attributes
    ----------
    indices : ndarray of int
        Every misclassified sample, most confident first.
    confidence : ndarray or None
        The probability of each one's predicted class.
    thumbnails : list of str
        ``data:`` URIs of the first ``len(thumbnails)`` images.
    overlays : list of str or None
        Their Grad-CAM overlays (``None`` when the model has none).
    note : str
        Why there are no overlays, or what they show.
    """

    indices: np.ndarray
    confidence: np.ndarray | None
    thumbnails: list[str]
    overlays: list[str] | None
    note: str


def error_gallery(
    X: Any,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: np.ndarray,
    explain: Any = None,
    n: int = 40,
    note: str = "",
) -> ErrorGallery:
    """Rank the errors and draw the first ``n``, with Grad-CAM overlays.

    Parameters
    ----------
    X : images
        One per label.
    y_true, y_pred : ndarray
        True and predicted labels.
    proba : ndarray or None
        Predicted probabilities, to rank the errors.
    classes : ndarray
        The columns of ``proba``.
    explain : callable, optional
        ``explain(rows, targets) -> list of heatmaps``: the Grad-CAM heatmap
        of each row for its predicted class, on the image's own pixel grid.
        ``None`` draws no overlay and shows ``note`` instead.
    n : int
        Most errors drawn.
    note : str
        What the overlays show, or why there are none.
    """
    samples = check_images(X)
    indices, confidence = rank_misclassified(y_true, y_pred, proba, classes)
    shown = indices[:n].tolist()
    images = [load_rgb(samples[i], i) for i in shown]
    thumbnails = [_jpeg_uri(_thumbnail(image, ERROR_THUMBNAIL)) for image in images]
    overlays = None
    if explain is not None and shown:
        heatmaps = explain(shown, [y_pred[i] for i in shown])
        overlays = [_jpeg_uri(_overlay(image, heatmap)) for image, heatmap in zip(images, heatmaps, strict=True)]
    return ErrorGallery(indices, confidence, thumbnails, overlays, note)


def evaluation_page(
    run: RunInfo,
    *,
    title: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: np.ndarray,
    folds: Sequence[Mapping[str, Any]],
    pngs: Mapping[str, bytes],
    names: Sequence[str],
    errors: ErrorGallery | None = None,
    duplicates: Any = None,
    X: Any = None,
    ranking: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The page of ``skorchlite evaluate --report``.

    Parameters
    ----------
    run : RunInfo
    title : str
        What was evaluated, e.g. ``"efficientnet_lite0 + logreg, 5-fold CV"``.
    y_true, y_pred, proba, classes
        Labels, out-of-fold predictions and probabilities (or ``None``),
        and the classes of ``proba``'s columns.
    folds : list of dict
        Per fold: ``n`` (test images), ``balanced`` and ``accuracy``.
    pngs : dict of str to bytes
        The report's PNGs by file name (:func:`skorchlite.report.report_figures`).
    names : list of str
        How each sample is named (its path).
    errors : ErrorGallery, optional
    duplicates : skorchlite.duplicates.Duplicates, optional
        What ``--group-duplicates`` found; ``None`` when not looked for.
    X : images, optional
        For the duplicates' thumbnails.
    ranking : list of dict
        With several backbones: per backbone ``backbone``, ``balanced``,
        ``accuracy`` (per-fold arrays) and ``seconds``, best first.
    """
    balanced = [fold["balanced"] for fold in folds]
    accuracy = [fold["accuracy"] for fold in folds]
    sections = [
        ("headline", "Headline", _headline(balanced, accuracy, folds, duplicates, len(y_true))),
    ]
    if len(ranking) > 1:
        sections.append(("ranking", "Backbones ranked", _ranking(ranking)))
    sections += [
        ("per-class", "Per class", _per_class(y_true, y_pred, proba, classes)),
        ("confusion", "Confusion matrix", _confusion(y_true, y_pred, classes, pngs)),
    ]
    if "roc_pr.png" in pngs:
        sections.append(
            (
                "roc-pr",
                "ROC and precision-recall",
                _figure(
                    pngs["roc_pr.png"],
                    "roc_pr.png",
                    "ROC curves (left) and precision-recall curves (right), one per class against the rest, "
                    "with each class's area under the curve in the legend.",
                ),
            )
        )
    if errors is not None:
        sections.append(("errors", "Misclassified images", _errors(errors, y_true, y_pred, names)))
    sections.append(("duplicates", "Duplicates", _duplicates(duplicates, X)))
    sections.append(("run", "What was run", _run(run)))
    subtitle = f"{title} on {len(y_true)} images of {len(classes)} classes from {_folder_name(run.folder)}"
    return _page("skorchlite evaluate", subtitle, run.date, sections)


def finetune_page(
    run: RunInfo,
    *,
    history: Sequence[Mapping[str, Any]],
    best_epoch: int,
    pngs: Mapping[str, bytes],
    model_path: str,
    seconds: float,
    interrupted: bool = False,
) -> str:
    """The page of ``skorchlite finetune --report``: the chosen epoch, the
    learning curves and every epoch's scores.

    Parameters
    ----------
    run : RunInfo
    history : list of dict
        ``FineTuneClassifier.history_``.
    best_epoch : int
        ``FineTuneClassifier.best_epoch_``: the epoch whose weights were kept.
    pngs : dict of str to bytes
        Holding ``"learning_curves.png"``.
    model_path : str
        Where the model was saved.
    seconds : float
        Training time.
    interrupted : bool
        Whether Ctrl-C stopped the training.
    """
    best = next((r for r in history if r.get("epoch") == best_epoch), history[-1])
    has_valid = np.isfinite(_floats(history, "valid_loss")).any()
    if has_valid:
        why = "the lowest validation loss"
        scores = (
            f'<p class="big">Chosen epoch <strong id="best-epoch">{_e(best_epoch)}</strong> of {len(history)}: '
            f"validation loss <strong>{_num(best.get('valid_loss'))}</strong>, validation accuracy "
            f'<strong id="valid-accuracy">{_num(best.get("valid_accuracy"))}</strong></p>'
        )
    else:
        why = "the last epoch: without a validation split there is nothing to choose by"
        scores = (
            f'<p class="big">Chosen epoch <strong id="best-epoch">{_e(best_epoch)}</strong> of {len(history)} '
            f"(no validation split, so no validation scores)</p>"
        )
    stopped = " Training was interrupted (Ctrl-C); the best complete epoch was kept." if interrupted else ""
    headline = (
        f"{scores}<p>The model holds the weights of epoch {_e(best_epoch)}, {why}.{stopped} "
        f"Trained in {seconds:.1f} s; saved to <code>{_e(model_path)}</code>.</p>"
    )
    sections = [("headline", "Headline", headline)]
    if "learning_curves.png" in pngs:
        sections.append(
            (
                "curves",
                "Learning curves",
                _figure(
                    pngs["learning_curves.png"],
                    "learning_curves.png",
                    f"Learning curves per epoch: train and validation loss (the chosen epoch {best_epoch} starred), "
                    "validation accuracy, and the learning rate; dashed lines mark a change of phase.",
                ),
            )
        )
    sections.append(("epochs", "Every epoch", _epochs(history, best_epoch)))
    sections.append(("run", "What was run", _run(run)))
    counts = run.class_counts
    subtitle = (
        f"{run.fingerprint.get('backbone', '')} fine-tuned on {sum(counts.values())} images of "
        f"{len(counts)} classes from {_folder_name(run.folder)}"
    )
    return _page("skorchlite finetune", subtitle, run.date, sections)


# -- sections ------------------------------------------------------------------


def _headline(balanced: list, accuracy: list, folds: Sequence[Mapping[str, Any]], duplicates: Any, n: int) -> str:
    rows = [
        [str(k), str(fold["n"]), f"{fold['balanced']:.3f}", f"{fold['accuracy']:.3f}"]
        for k, fold in enumerate(folds, 1)
    ]
    table = _table(["fold", "test images", "balanced accuracy", "accuracy"], rows, numeric=range(1, 4))
    return (
        f'<p class="big">Balanced accuracy <strong id="balanced-accuracy">{_e(format_score(balanced))}</strong>'
        f' &nbsp; Accuracy <strong id="accuracy">{_e(format_score(accuracy))}</strong></p>'
        f"<p>Mean ± standard deviation over {len(folds)} cross-validation folds; every image was predicted "
        f"once, by a model that did not see it. Balanced accuracy is the mean recall of the classes, so a "
        f"rare class counts as much as a common one.</p>"
        f"<p>Each fold's balanced accuracy: {', '.join(f'{b:.3f}' for b in balanced)}; "
        f"accuracy: {', '.join(f'{a:.3f}' for a in accuracy)}.</p>"
        f"<p>{_duplicates_sentence(duplicates, n)}</p>"
        f"<details><summary>The folds' sizes and scores as a table</summary>{table}</details>"
    )


def _duplicates_sentence(duplicates: Any, n: int) -> str:
    if duplicates is None:
        return (
            "Duplicates were <strong>not</strong> looked for: a copy of an image in both the training and "
            "the test fold would inflate the scores. Rerun with <code>--group-duplicates</code> to check."
        )
    groups = duplicates.duplicate_groups()
    touched = sum(map(len, groups))
    if not groups:
        return "Duplicates were looked for (<code>--group-duplicates</code>): none found."
    conflicts = len(duplicates.conflicts)
    return (
        f"Duplicates were grouped (<code>--group-duplicates</code>): {len(groups)} groups of copies hold "
        f"<strong>{touched} of {n} images</strong>; each group was kept within one fold. "
        f'{_plural(conflicts, "pair")} of copies have different labels. <a href="#duplicates">See them</a>.'
    )


def _ranking(ranking: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [str(rank), str(r["backbone"]), format_score(r["balanced"]), format_score(r["accuracy"]), f"{r['seconds']:.1f}"]
        for rank, r in enumerate(ranking, 1)
    ]
    table = _table(["rank", "backbone", "balanced accuracy", "accuracy", "seconds"], rows, numeric=(0, 2, 3, 4))
    return f"{table}<p>The rest of this page is about the first one.</p>"


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray) -> str:
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    header = ["class", "precision", "recall", "F1", "support"]
    aucs = aps = None
    if proba is not None:
        header += ["ROC AUC", "average precision"]
        aucs, aps = _curve_areas(y_true, proba, classes)
    rows = []
    for j, label in enumerate(classes.tolist()):
        row = [str(label), f"{precision[j]:.3f}", f"{recall[j]:.3f}", f"{f1[j]:.3f}", str(support[j])]
        if aucs is not None:
            row += [_num(aucs[j]), _num(aps[j])]
        rows.append(row)
    total = int(support.sum())
    for name, weights in [("macro average", None), ("weighted average", support)]:
        row = [name] + [f"{np.average(v, weights=weights):.3f}" for v in (precision, recall, f1)] + [str(total)]
        if aucs is not None:
            row += [_num(_average(aucs, weights)), _num(_average(aps, weights))]
        rows.append(row)
    table = _table(header, rows, numeric=range(1, len(header)), footer=2)
    return (
        f"{table}<p>Out-of-fold. Precision: of the images predicted as the class, the share that are. "
        f"Recall: of the images of the class, the share found. Support: images of the class. "
        f"ROC AUC and average precision: the class against the rest, from the probabilities.</p>"
    )


def _curve_areas(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> tuple[list, list]:
    aucs, aps = [], []
    for j, label in enumerate(classes.tolist()):
        positive = y_true == label
        both = 0 < positive.sum() < len(positive)
        aucs.append(roc_auc_score(positive, proba[:, j]) if both else float("nan"))
        aps.append(average_precision_score(positive, proba[:, j]) if positive.any() else float("nan"))
    return aucs, aps


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray, pngs: Mapping[str, bytes]) -> str:
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y_true, y_pred, labels=classes)
    totals = counts.sum(axis=1)
    names = [str(c) for c in classes.tolist()]
    head = "".join(f'<th scope="col">{_e(name)}</th>' for name in names)
    body = []
    for label, row, total in zip(names, counts, totals, strict=True):
        cells = []
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            diagonal = " diag" if names[j] == label else ""
            # The cell's shade is its share of the row: the eye finds the errors.
            cells.append(
                f'<td class="num{diagonal}" style="background:rgba(31,119,180,{0.08 + 0.6 * share:.2f})">'
                f"{count}<br><small>{share:.0%}</small></td>"
            )
        body.append(f'<tr><th scope="row">{_e(label)}</th>{"".join(cells)}<td class="num">{total}</td></tr>')
    table = (
        f'<table class="confusion"><caption>Rows: true class; columns: predicted class. Each cell: count, '
        f"and its share of the row (the diagonal is each class's recall).</caption>"
        f'<thead><tr><th scope="col">true \\ predicted</th>{head}<th scope="col">total</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    figure = _figure(
        pngs["confusion_matrix.png"],
        "confusion_matrix.png",
        "Confusion matrix: counts on the left, normalised per true class on the right; rows are the true "
        "class, columns the predicted class.",
    )
    return table + figure


def _errors(errors: ErrorGallery, y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> str:
    total = len(y_true)
    n_wrong = len(errors.indices)
    if not n_wrong:
        return f"<p>No misclassified images: all {total} predictions are right.</p>"
    ranked = "most confident" if errors.confidence is not None else "first"
    shown = len(errors.thumbnails)
    intro = (
        f"<p>{n_wrong} of {total} images were misclassified (out-of-fold). "
        + (f"Shown: all {shown}, " if shown == n_wrong else f"Shown: the {shown} {ranked}, ")
        + ("highest probability of the wrong class first. " if errors.confidence is not None else "")
        + f"{_e(errors.note)}</p>"
        + (
            '<p class="legend">Grad-CAM scale: <span class="jet"></span> no evidence → most evidence</p>'
            if errors.overlays is not None
            else ""
        )
    )
    cards = []
    for k, uri in enumerate(errors.thumbnails):
        i = int(errors.indices[k])
        name = names[i]
        caption = f"true {y_true[i]}, predicted {y_pred[i]}" + (
            f" (probability {errors.confidence[k]:.2f})" if errors.confidence is not None else ""
        )
        pictures = f'<img src="{uri}" alt="{_e(f"Image {i}, {name}: {caption}")}">'
        if errors.overlays is not None:
            pictures += f'<img src="{errors.overlays[k]}" alt="{_e(f"Grad-CAM of {y_pred[i]} on image {i}, {name}")}">'
        probability = (
            ""
            if errors.confidence is None
            else (
                f' <span class="p" title="probability the model gave to the wrong class">p = {errors.confidence[k]:.2f}</span>'
            )
        )
        cards.append(
            f'<figure class="card"><div class="pair">{pictures}</div><figcaption>'
            f'true <strong>{_e(y_true[i])}</strong> → predicted <strong class="wrong">{_e(y_pred[i])}</strong>'
            f'{probability}<br><span class="name" title="{_e(name)}">{_e(_short_name(name))}</span></figcaption></figure>'
        )
    rest = ""
    if shown < n_wrong:
        rows = [
            [str(int(i)), names[int(i)], str(y_true[i]), str(y_pred[i])]
            + ([f"{errors.confidence[k]:.2f}"] if errors.confidence is not None else [])
            for k, i in enumerate(errors.indices)
            if k >= shown
        ]
        header = ["#", "image", "true", "predicted"] + (["probability"] if errors.confidence is not None else [])
        rest = f"<details><summary>The other {n_wrong - shown} errors</summary>{_table(header, rows)}</details>"
    return intro + f'<div class="grid">{"".join(cards)}</div>' + rest


def _duplicates(duplicates: Any, X: Any) -> str:
    if duplicates is None:
        return (
            "<p>Not looked for. <code>skorchlite evaluate DIR --group-duplicates</code> finds exact and "
            "near copies, keeps each group within one fold, and lists them here.</p>"
        )
    groups = duplicates.duplicate_groups()
    summary = f"<p>{_e(duplicates.summary())}</p>"
    if not groups:
        return summary
    labels = duplicates.labels
    conflicting = [g for g in groups if labels is not None and len({labels[i] for i in g}) > 1]
    ordered = conflicting + [g for g in groups if not any(g is c for c in conflicting)]
    samples = check_images(X) if X is not None else None
    kinds = _group_kinds(duplicates)
    parts = []
    for group in ordered[:MAX_DUPLICATE_GROUPS]:
        gid = int(duplicates.groups[group[0]])
        kind, low, high = kinds[gid]
        disagree = labels is not None and len({labels[i] for i in group}) > 1
        span = f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f} to {high:.3f}"
        head = (
            f"<h3>Group {gid}: {len(group)} {kind} copies{' — labels disagree' if disagree else ''}</h3>"
            f'<p class="name">cosine similarity {span}</p>'
        )
        members = []
        for i in group.tolist():
            label = (
                "" if labels is None else f'<strong class="{"wrong" if disagree else ""}">{_e(labels[i])}</strong><br>'
            )

            picture = ""
            if samples is not None:
                uri = _jpeg_uri(_thumbnail(load_rgb(samples[i], i), DUPLICATE_THUMBNAIL))
                picture = f'<img src="{uri}" alt="{_e(f"Image {i}, {duplicates.names[i]}, in duplicate group {gid}")}">'
            name = duplicates.names[i]
            members.append(
                f'<figure class="dup">{picture}<figcaption>{label}'
                f'<span class="name" title="{_e(name)}">{_e(Path(name).name)}</span></figcaption></figure>'
            )
        parts.append(
            f'<div class="group{" conflict" if disagree else ""}">{head}<div class="members">{"".join(members)}</div></div>'
        )
    more = ""
    if len(ordered) > MAX_DUPLICATE_GROUPS:
        more = f"<p>And {len(ordered) - MAX_DUPLICATE_GROUPS} more groups (printed in full by the command).</p>"
    order = (
        "<p>Groups whose labels disagree come first: either a label is wrong or the images are not copies.</p>"
        if conflicting
        else ""
    )
    return summary + order + f'<div class="groups">{"".join(parts)}</div>' + more


def _group_kinds(duplicates: Any) -> dict[int, tuple[str, float, float]]:
    """Per group id: "exact" when every pair is, else "near"; the similarity range."""
    kinds: dict[int, tuple[str, float, float]] = {}
    for pair in duplicates.pairs:
        gid = int(duplicates.groups[pair.i])
        kind, low, high = kinds.get(gid, ("exact", 1.0, 0.0))
        kinds[gid] = (
            "exact" if kind == "exact" and pair.kind == "exact" else "near",
            min(low, pair.similarity),
            max(high, pair.similarity),
        )
    return kinds


def _epochs(history: Sequence[Mapping[str, Any]], best_epoch: int) -> str:
    keys = ["epoch", "phase", "train_loss", "valid_loss", "valid_accuracy", "lr", "seconds"]
    header = ["epoch", "phase", "train loss", "valid loss", "valid accuracy", "learning rate", "seconds"]
    rows, marked = [], []
    for record in history:
        cells = []
        for key in keys:
            value = record.get(key)
            cells.append(value if isinstance(value, str) else _num(value, ".2e" if key == "lr" else ".4g"))
        if record.get("epoch") == best_epoch:
            cells[0] += " ★ chosen"
            marked.append(len(rows))
        rows.append(cells)
    return _table(header, rows, numeric=(2, 3, 4, 5, 6), marked=marked)


def _run(run: RunInfo) -> str:
    counts = run.class_counts
    total = sum(counts.values())
    count_rows = [[str(label), str(n), f"{n / total:.1%}"] for label, n in counts.items()]
    count_rows.append(["total", str(total), "100.0%"])
    parameters = [[str(k), _value(v)] for k, v in run.parameters.items()]
    fingerprint = [[str(k), _value(v)] for k, v in run.fingerprint.items()]
    versions = [[name, version] for name, version in run.versions.items()]
    folder = "scikit-learn's bundled digits (8x8 images)" if run.folder is None else run.folder
    return (
        f"<dl><dt>Command</dt><dd><code>{_e(run.command)}</code></dd>"
        f"<dt>Date</dt><dd>{_e(run.date)}</dd>"
        f"<dt>Images</dt><dd><code>{_e(folder)}</code></dd></dl>"
        f'<div class="columns"><div><h3>Classes</h3>{_table(["class", "images", "share"], count_rows, numeric=(1, 2), footer=1)}</div>'
        f"<div><h3>Library versions</h3>{_table(['library', 'version'], versions)}</div></div>"
        f"<h3>Parameters</h3>{_table(['parameter', 'value'], parameters)}"
        f"<h3>Backbone fingerprint</h3><p>What the embeddings depend on; the weights are identified by the "
        f"SHA-256 of their file.</p>{_table(['key', 'value'], fingerprint)}"
    )


# -- building blocks -----------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1240px;
padding:0 24px 48px;color:#1a1a1a;line-height:1.45}
header{border-bottom:2px solid #1f77b4;margin-bottom:8px}
h1{margin:20px 0 4px;font-size:1.6em}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{margin:18px 0 6px;font-size:1.05em}.sub{color:#444;margin:0 0 10px}
nav{font-size:.95em;margin:8px 0 0}nav a{margin-right:14px;white-space:nowrap}
.big{font-size:1.35em}.big strong{font-size:1.15em;color:#0b4f8a}
table{border-collapse:collapse;margin:8px 0;font-size:.93em}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:left;vertical-align:top}
thead th{background:#f0f3f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
tfoot td,tfoot th{font-weight:600;background:#fafafa}tr.marked td{background:#fff4cc;font-weight:600}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.9em;padding-top:4px}
table.confusion td{text-align:center;min-width:70px}table.confusion td.diag{outline:2px solid #1f77b4}
figure{margin:10px 0}figure.plot img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:14px}
.card{margin:0;border:1px solid #ddd;border-radius:6px;padding:6px;background:#fcfcfc}
.pair{display:flex;gap:4px}.pair img{width:50%;height:auto;object-fit:contain;background:#000}
.wrong{color:#b00020}.p{background:#b00020;color:#fff;border-radius:3px;padding:0 4px;font-size:.85em;white-space:nowrap}
.name{color:#666;font-size:.85em;overflow-wrap:anywhere;margin:0}
.groups{display:flex;flex-wrap:wrap;gap:12px}
.group{border:1px solid #ddd;border-left:4px solid #999;border-radius:4px;padding:4px 8px}
.group h3{margin:2px 0;font-size:.95em}.group.conflict{border-left-color:#b00020;background:#fff5f5}
.group.conflict h3{color:#b00020}
.members{display:flex;flex-wrap:wrap;gap:6px;max-width:600px}.dup{margin:0;width:112px}.dup img{width:110px;height:auto}
.legend{font-size:.9em}.jet{display:inline-block;width:160px;height:12px;vertical-align:middle;
background:linear-gradient(to right,#00007f,#0000ff,#00ffff,#7fff7f,#ffff00,#ff0000,#7f0000)}
.columns{display:flex;flex-wrap:wrap;gap:40px}code{background:#f4f4f4;padding:1px 4px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}dt{font-weight:600}dd{margin:0}
details{margin:8px 0}summary{cursor:pointer;color:#0b4f8a}
"""


def _page(heading: str, subtitle: str, date: str, sections: Sequence[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{anchor}">{_e(name)}</a>' for anchor, name, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{_e(name)}</h2>{content}</section>' for anchor, name, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # An empty icon: browsers would otherwise ask for /favicon.ico.
        '<link rel="icon" href="data:,">'
        f"<title>{_e(heading)}: {_e(subtitle)}</title><style>{_STYLE}</style></head><body>"
        f'<header><h1>{_e(heading)}</h1><p class="sub">{_e(subtitle)}. Report made {_e(date)}.</p>'
        f"<nav>{nav}</nav></header>{body}</body></html>\n"
    )


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Iterable[int] = (),
    footer: int = 0,
    marked: Sequence[int] = (),
) -> str:
    """An HTML table; ``footer`` last rows go to ``<tfoot>``, ``marked`` rows are highlighted."""
    numeric = set(numeric)
    rows = list(rows)

    def row_html(k: int, row: Sequence[str]) -> str:
        cells = "".join(
            f'<td class="num">{_e(cell)}</td>' if c in numeric else f"<td>{_e(cell)}</td>" for c, cell in enumerate(row)
        )
        return f'<tr class="marked">{cells}</tr>' if k in marked else f"<tr>{cells}</tr>"

    body = "".join(row_html(k, row) for k, row in enumerate(rows[: len(rows) - footer]))
    foot = "".join(row_html(-1, row) for row in rows[len(rows) - footer :]) if footer else ""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in header)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        + (f"<tfoot>{foot}</tfoot>" if foot else "")
        + "</table>"
    )


def _figure(png: bytes, name: str, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (
        f'<figure class="plot"><img src="{uri}" alt="{_e(alt)}"><figcaption>{_e(alt)} '
        f"Also in <code>{_e(name)}</code> beside this page.</figcaption></figure>"
    )


def _thumbnail(image: Image.Image, side: int) -> Image.Image:
    image = image.copy()
    image.thumbnail((side, side))
    if max(image.size) < _MIN_SIDE:  # an 8x8 digit: enlarge, keep its pixels sharp
        scale = -(-_MIN_SIDE // max(image.size))
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def _overlay(image: Image.Image, heatmap: np.ndarray) -> Image.Image:
    """The thumbnail under its heatmap, coloured as grad_cam's PNGs are."""
    from matplotlib import colormaps

    thumb = _thumbnail(image, ERROR_THUMBNAIL)
    resample = Image.NEAREST if thumb.width > image.width else Image.BILINEAR
    heat = np.asarray(Image.fromarray(heatmap.astype(np.float32), "F").resize(thumb.size, resample))
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    blended = (1 - _HEATMAP_ALPHA) * np.asarray(thumb, dtype=np.float64) + _HEATMAP_ALPHA * colours
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")


def _jpeg_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = ".3f") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return format(number, fmt) if np.isfinite(number) else "–"


def _floats(records: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    values = []
    for record in records:
        try:
            values.append(float(record.get(key)))
        except (TypeError, ValueError):
            values.append(float("nan"))
    return np.array(values)


def _average(values: Sequence[float], weights: Any) -> float:
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    if not keep.any():
        return float("nan")
    return float(np.average(values[keep], weights=None if weights is None else np.asarray(weights)[keep]))


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _short_name(name: str) -> str:
    """The file name and its folder: enough to find it, short enough for a card."""
    path = Path(name)
    return str(Path(path.parent.name, path.name)) if path.parent.name else name


def _folder_name(folder: str | None) -> str:
    return "scikit-learn's bundled digits" if folder is None else folder


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
