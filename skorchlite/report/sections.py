"""The sections of the pages, each an HTML fragment; and :class:`RunInfo`, what "What was run" shows."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from ..figures import thumbnail
from ..images import check_images, load_rgb
from ..names import plural
from .gallery import DUPLICATE_THUMBNAIL, MIN_THUMBNAIL, ErrorGallery, jpeg_uri
from .markup import escape, format_number, format_score, html_figure, html_img, html_table

# Duplicate groups shown with their images; the rest are only counted.
MAX_DUPLICATE_GROUPS = 200
_LIBRARIES = ("skorchlite", "torch", "torchvision", "scikit-learn", "numpy", "pillow", "matplotlib")


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


def headline_section(
    balanced: list, accuracy: list, folds: Sequence[Mapping[str, Any]], duplicates: Any, n: int
) -> str:
    """The evaluation page's headline: the scores over the folds, and whether duplicates were grouped.

    Parameters
    ----------
    balanced, accuracy : list of float
        Each fold's scores.
    folds : sequence of mapping
        Per fold: ``n``, ``balanced`` and ``accuracy``.
    duplicates : skorchlite.duplicates.Duplicates or None
    n : int
        How many images there are.
    """
    rows = [
        [str(k), str(fold["n"]), f"{fold['balanced']:.3f}", f"{fold['accuracy']:.3f}"]
        for k, fold in enumerate(folds, 1)
    ]
    table = html_table(["fold", "test images", "balanced accuracy", "accuracy"], rows, numeric=range(1, 4))
    return (
        f'<p class="big">Balanced accuracy <strong id="balanced-accuracy">{escape(format_score(balanced))}</strong>'
        f' &nbsp; Accuracy <strong id="accuracy">{escape(format_score(accuracy))}</strong></p>'
        f"<p>Mean ± standard deviation over {plural(len(folds), 'cross-validation fold')}; every image was predicted "
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
        f"Duplicates were grouped (<code>--group-duplicates</code>): {plural(len(groups), 'set')} of copies "
        f"{'holds' if len(groups) == 1 else 'hold'} <strong>{touched} of {n} images</strong>; each set was kept "
        f"within one fold. {plural(conflicts, 'pair')} of copies {'has' if conflicts == 1 else 'have'} different "
        f'labels. <a href="#duplicates">See them</a>.'
    )


def ranking_section(ranking: Sequence[Mapping[str, Any]]) -> str:
    """The backbones ranked, as :func:`~skorchlite.report.evaluation_page` takes ``ranking``."""
    rows = [
        [str(rank), str(r["backbone"]), format_score(r["balanced"]), format_score(r["accuracy"]), f"{r['seconds']:.1f}"]
        for rank, r in enumerate(ranking, 1)
    ]
    table = html_table(["rank", "backbone", "balanced accuracy", "accuracy", "seconds"], rows, numeric=(0, 2, 3, 4))
    return f"{table}<p>The rest of this page is about the first one.</p>"


def per_class_section(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray) -> str:
    """Precision, recall, F1 and support per class (ROC AUC and average
    precision too, with ``proba``), and their macro and weighted averages."""
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    header = ["class", "precision", "recall", "F1", "support"]
    aucs: list | None = None
    aps: list | None = None
    if proba is not None:
        header += ["ROC AUC", "average precision"]
        aucs, aps = _curve_areas(y_true, proba, classes)
    rows = []
    for j, label in enumerate(classes.tolist()):
        row = [str(label), f"{precision[j]:.3f}", f"{recall[j]:.3f}", f"{f1[j]:.3f}", str(support[j])]
        if aucs is not None and aps is not None:
            row += [format_number(aucs[j]), format_number(aps[j])]
        rows.append(row)
    total = int(support.sum())
    for name, weights in [("macro average", None), ("weighted average", support)]:
        row = [name] + [f"{np.average(v, weights=weights):.3f}" for v in (precision, recall, f1)] + [str(total)]
        if aucs is not None and aps is not None:
            row += [format_number(_average(aucs, weights)), format_number(_average(aps, weights))]
        rows.append(row)
    table = html_table(header, rows, numeric=range(1, len(header)), footer=2)
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
        aucs.append(roc_auc_score(positive, proba[:, j]) if both else np.nan)
        aps.append(average_precision_score(positive, proba[:, j]) if positive.any() else np.nan)
    return aucs, aps


def confusion_section(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray, pngs: Mapping[str, bytes]) -> str:
    """The confusion matrix as a shaded table, then its PNG from ``pngs``."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y_true, y_pred, labels=classes)
    totals = counts.sum(axis=1)
    names = [str(c) for c in classes.tolist()]
    head = "".join(f'<th scope="col">{escape(name)}</th>' for name in names)
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
        body.append(f'<tr><th scope="row">{escape(label)}</th>{"".join(cells)}<td class="num">{total}</td></tr>')
    table = (
        f'<table class="confusion"><caption>Rows: true class; columns: predicted class. Each cell: count, '
        f"and its share of the row (the diagonal is each class's recall).</caption>"
        f'<thead><tr><th scope="col">true \\ predicted</th>{head}<th scope="col">total</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    figure = html_figure(
        pngs["confusion_matrix.png"],
        "confusion_matrix.png",
        "Confusion matrix: counts on the left, normalised per true class on the right; rows are the true "
        "class, columns the predicted class.",
    )
    return table + figure


def errors_section(errors: ErrorGallery, y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> str:
    """The gallery's misclassified images as cards, the rest as a table.

    Parameters
    ----------
    errors : ErrorGallery
    y_true, y_pred : ndarray
    names : sequence of str
        How each sample is named (its path).
    """
    total = len(y_true)
    n_wrong = len(errors.indices)
    if not n_wrong:
        return f"<p>No misclassified images: every prediction of the {plural(total, 'image')} is right.</p>"
    ranked = "most confident" if errors.confidence is not None else "first"
    shown = len(errors.thumbnails)
    if not shown:
        shown_text = "Their images are left out of this page; listed by name below. "
    else:
        which = "it" if n_wrong == 1 else f"all {n_wrong}" if shown == n_wrong else f"the {shown} {ranked}"
        order = ", highest probability of the wrong class first" if errors.confidence is not None and shown > 1 else ""
        shown_text = f"Shown: {which}{order}. "
    intro = (
        f"<p>{n_wrong} of {plural(total, 'image')} {'was' if n_wrong == 1 else 'were'} misclassified (out-of-fold). "
        + shown_text
        + (f"{escape(errors.note)}" if shown else "")
        + "</p>"
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
        pictures = html_img(uri, f"Image {i}, {name}: {caption}")
        if errors.overlays is not None:
            pictures += html_img(errors.overlays[k], f"Grad-CAM of {y_pred[i]} on image {i}, {name}")
        probability = (
            ""
            if errors.confidence is None
            else (
                f' <span class="p" title="probability the model gave to the wrong class">p = {errors.confidence[k]:.2f}</span>'
            )
        )
        cards.append(
            f'<figure class="card"><div class="pair">{pictures}</div><figcaption>'
            f'true <strong>{escape(y_true[i])}</strong> → predicted <strong class="wrong">{escape(y_pred[i])}</strong>'
            f'{probability}<br><span class="name" title="{escape(name)}">{escape(_short_name(name))}</span></figcaption></figure>'
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
        table = html_table(header, rows)
        rest = (
            table
            if not shown
            else f"<details><summary>{plural(n_wrong - shown, 'more error')}</summary>{table}</details>"
        )
    return intro + f'<div class="grid">{"".join(cards)}</div>' + rest


def duplicates_section(duplicates: Any, X: Any) -> str:
    """Each duplicate group with its images (those whose labels disagree
    first), or why duplicates were not looked for.

    Parameters
    ----------
    duplicates : skorchlite.duplicates.Duplicates or None
    X : images or None
        For the thumbnails; ``None`` shows names only.
    """
    if duplicates is None:
        return (
            "<p>Not looked for. <code>skorchlite evaluate DIR --group-duplicates</code> finds exact and "
            "near copies, keeps each group within one fold, and lists them here.</p>"
        )
    groups = duplicates.duplicate_groups()
    summary = f"<p>{escape(duplicates.summary())}</p>"
    if not groups:
        return summary
    labels = duplicates.labels
    conflicting = [g for g in groups if labels is not None and len({labels[i] for i in g}) > 1]
    ordered = conflicting + [g for g in groups if not any(g is c for c in conflicting)]
    samples = check_images(X) if X is not None else None
    kinds = _group_kinds(duplicates)
    parts = []
    for number, group in enumerate(ordered[:MAX_DUPLICATE_GROUPS], 1):
        # Sets are numbered as shown and named by their first file: the
        # group ids of find_duplicates mean nothing to a reader.
        kind, low, high = kinds[int(duplicates.groups[group[0]])]
        disagree = labels is not None and len({labels[i] for i in group}) > 1
        span = f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f} to {high:.3f}"
        first = Path(duplicates.names[group[0]]).name
        copies = plural(len(group) - 1, f"{kind} copy", f"{kind} copies")
        head = (
            f"<h3>Duplicate set {number} of {len(ordered)}: {escape(first)} and {copies}"
            f"{' — labels disagree' if disagree else ''}</h3>"
            f'<p class="name">cosine similarity {span}</p>'
        )
        members = []
        for i in group.tolist():
            label = (
                ""
                if labels is None
                else f'<strong class="{"wrong" if disagree else ""}">{escape(labels[i])}</strong><br>'
            )

            picture = ""
            if samples is not None:
                uri = jpeg_uri(thumbnail(load_rgb(samples[i], i), DUPLICATE_THUMBNAIL, MIN_THUMBNAIL))
                picture = html_img(uri, f"{duplicates.names[i]}, in duplicate set {number}")
            name = duplicates.names[i]
            members.append(
                f'<figure class="dup">{picture}<figcaption>{label}'
                f'<span class="name" title="{escape(name)}">{escape(Path(name).name)}</span></figcaption></figure>'
            )
        parts.append(
            f'<div class="group{" conflict" if disagree else ""}">{head}<div class="members">{"".join(members)}</div></div>'
        )
    more = ""
    if len(ordered) > MAX_DUPLICATE_GROUPS:
        more = f"<p>And {plural(len(ordered) - MAX_DUPLICATE_GROUPS, 'more set')} (printed in full by the command).</p>"
    order = (
        "<p>Sets whose labels disagree come first: either a label is wrong or the images are not copies.</p>"
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


def epochs_section(history: Sequence[Mapping[str, Any]], best_epoch: int) -> str:
    """Every epoch's record as a table, the chosen epoch marked."""
    keys = ["epoch", "phase", "train_loss", "valid_loss", "valid_accuracy", "lr", "seconds"]
    header = ["epoch", "phase", "train loss", "valid loss", "valid accuracy", "learning rate", "seconds"]
    rows: list[list[str]] = []
    marked: list[int] = []
    for record in history:
        cells = []
        for key in keys:
            value = record.get(key)
            cells.append(value if isinstance(value, str) else format_number(value, ".2e" if key == "lr" else ".4g"))
        if record.get("epoch") == best_epoch:
            cells[0] += " ★ chosen"
            marked.append(len(rows))
        rows.append(cells)
    return html_table(header, rows, numeric=(2, 3, 4, 5, 6), marked=marked)


def run_section(run: RunInfo) -> str:
    """What was run: the command, the images per class, the library versions,
    the parameters and the backbone fingerprint."""
    counts = run.class_counts
    total = sum(counts.values())
    count_rows = [[str(label), str(n), f"{n / total:.1%}"] for label, n in counts.items()]
    count_rows.append(["total", str(total), "100.0%"])
    parameters = [[str(k), _value(v)] for k, v in run.parameters.items()]
    fingerprint = [[str(k), _value(v)] for k, v in run.fingerprint.items()]
    versions = [[name, version] for name, version in run.versions.items()]
    folder = "scikit-learn's bundled digits (8x8 images)" if run.folder is None else run.folder
    return (
        f"<dl><dt>Command</dt><dd><code>{escape(run.command)}</code></dd>"
        f"<dt>Date</dt><dd>{escape(run.date)}</dd>"
        f"<dt>Images</dt><dd><code>{escape(folder)}</code></dd></dl>"
        f'<div class="columns"><div><h3>Classes</h3>{html_table(["class", "images", "share"], count_rows, numeric=(1, 2), footer=1)}</div>'
        f"<div><h3>Library versions</h3>{html_table(['library', 'version'], versions)}</div></div>"
        f"<h3>Parameters</h3>{html_table(['parameter', 'value'], parameters)}"
        f"<h3>Backbone fingerprint</h3><p>What the embeddings depend on; the weights are identified by the "
        f"SHA-256 of their file.</p>{html_table(['key', 'value'], fingerprint)}"
    )


def _average(values: Sequence[float], weights: Any) -> float:
    array = np.asarray(values, dtype=float)
    keep = np.isfinite(array)
    if not keep.any():
        return np.nan
    return float(np.average(array[keep], weights=None if weights is None else np.asarray(weights)[keep]))


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _short_name(name: str) -> str:
    """The file name and its folder: enough to find it, short enough for a card."""
    path = Path(name)
    return str(Path(path.parent.name, path.name)) if path.parent.name else name


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
