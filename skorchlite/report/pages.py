"""The two pages: ``skorchlite evaluate --report`` and ``skorchlite finetune --report``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..names import plural
from .gallery import ErrorGallery
from .inputs import epoch_values
from .markup import escape, format_number, html_figure, html_page
from .sections import (
    MAX_DUPLICATE_GROUPS,
    RunInfo,
    confusion_section,
    duplicates_section,
    epochs_section,
    errors_section,
    headline_section,
    per_class_section,
    ranking_section,
    run_section,
)


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
    images: bool = True,
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
    images : bool, default=True
        Embed the input images (the errors' thumbnails and Grad-CAM
        overlays, the duplicates'); a note at the top says the page holds
        them. ``False`` leaves them out (patient data that must not travel
        with the page): the errors and duplicates are listed by name.
    """
    if not images:
        errors = None if errors is None else replace(errors, thumbnails=[], overlays=None)
        X = None
    balanced = [fold["balanced"] for fold in folds]
    accuracy = [fold["accuracy"] for fold in folds]
    sections = [
        ("headline", "Headline", headline_section(balanced, accuracy, folds, duplicates, len(y_true))),
    ]
    if len(ranking) > 1:
        sections.append(("ranking", "Backbones ranked", ranking_section(ranking)))
    sections += [
        ("per-class", "Per class", per_class_section(y_true, y_pred, proba, classes)),
        ("confusion", "Confusion matrix", confusion_section(y_true, y_pred, classes, pngs)),
    ]
    if "roc_pr.png" in pngs:
        sections.append(
            (
                "roc-pr",
                "ROC and precision-recall",
                html_figure(
                    pngs["roc_pr.png"],
                    "roc_pr.png",
                    "ROC curves (left) and precision-recall curves (right), one per class against the rest, "
                    "with each class's area under the curve in the legend.",
                ),
            )
        )
    if errors is not None:
        sections.append(("errors", "Misclassified images", errors_section(errors, y_true, y_pred, names)))
    sections.append(("duplicates", "Duplicates", duplicates_section(duplicates, X)))
    sections.append(("run", "What was run", run_section(run)))
    subtitle = (
        f"{title} on {plural(len(y_true), 'image')} of {plural(len(classes), 'class', 'classes')} "
        f"from {_folder_name(run.folder)}"
    )
    return html_page("skorchlite evaluate", subtitle, run.date, sections, _images_notice(images, errors, duplicates, X))


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
    has_valid = np.isfinite(epoch_values(list(history), "valid_loss")).any()
    if has_valid:
        why = "the lowest validation loss"
        scores = (
            f'<p class="big">Chosen epoch <strong id="best-epoch">{escape(best_epoch)}</strong> of {len(history)}: '
            f"validation loss <strong>{format_number(best.get('valid_loss'))}</strong>, validation accuracy "
            f'<strong id="valid-accuracy">{format_number(best.get("valid_accuracy"))}</strong></p>'
        )
    else:
        why = "the last epoch: without a validation split there is nothing to choose by"
        scores = (
            f'<p class="big">Chosen epoch <strong id="best-epoch">{escape(best_epoch)}</strong> of {len(history)} '
            f"(no validation split, so no validation scores)</p>"
        )
    stopped = " Training was interrupted (Ctrl-C); the best complete epoch was kept." if interrupted else ""
    headline = (
        f"{scores}<p>The model holds the weights of epoch {escape(best_epoch)}, {why}.{stopped} "
        f"Trained in {seconds:.1f} s; saved to <code>{escape(model_path)}</code>.</p>"
    )
    sections = [("headline", "Headline", headline)]
    if "learning_curves.png" in pngs:
        sections.append(
            (
                "curves",
                "Learning curves",
                html_figure(
                    pngs["learning_curves.png"],
                    "learning_curves.png",
                    f"Learning curves per epoch: train and validation loss (the chosen epoch {best_epoch} starred), "
                    "validation accuracy, and the learning rate; dashed lines mark a change of phase.",
                ),
            )
        )
    sections.append(("epochs", "Every epoch", epochs_section(history, best_epoch)))
    sections.append(("run", "What was run", run_section(run)))
    counts = run.class_counts
    subtitle = (
        f"{run.fingerprint.get('backbone', '')} fine-tuned on {plural(sum(counts.values()), 'image')} of "
        f"{plural(len(counts), 'class', 'classes')} from {_folder_name(run.folder)}"
    )
    return html_page("skorchlite finetune", subtitle, run.date, sections)


def _images_notice(images: bool, errors: ErrorGallery | None, duplicates: Any, X: Any) -> str:
    """What the page holds of the input images, for every reader to see."""
    if not images:
        return (
            "The input images are left out of this page (<code>--no-report-images</code>): the misclassified "
            "images and the duplicates are listed by file name only."
        )
    shown = 0 if errors is None else len(errors.thumbnails)
    if duplicates is not None and X is not None:
        shown += sum(map(len, duplicates.duplicate_groups()[:MAX_DUPLICATE_GROUPS]))
    if not shown:
        return ""
    overlays = " and their Grad-CAM overlays" if errors is not None and errors.overlays is not None else ""
    return (
        f"This page embeds {plural(shown, 'thumbnail')} of the input images{overlays}: if they are patient data, "
        "so is this page; "
        "store and share it as you would them. <code>skorchlite evaluate --report DIR --no-report-images</code> "
        "(<code>evaluation_page(..., images=False)</code>) leaves them out."
    )


def _folder_name(folder: str | None) -> str:
    return "scikit-learn's bundled digits" if folder is None else folder
