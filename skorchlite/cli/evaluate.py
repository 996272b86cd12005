"""``skorchlite evaluate``: cross-validated backbones + heads, and the report of the best."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..names import columns, csv_bytes, pad, shorten_all, visible
from .apart import check_cache_apart
from .inputs import (
    announce_weights,
    backbone_weights,
    class_counts,
    class_table,
    engine_params,
    layer_option,
    load_folder,
    weights_file,
)
from .output import CommandError, check_output_folder

# "voting" first: the default, and the frozen recipe that scored best on BUSI's
# grouped folds (docs/benchmarks.md); the others read one layer.
HEADS = ("voting", "logreg", "svm", "knn", "ridge")
# What each head means, as the output names the recipe that ran.
HEAD_NAMES = {
    "voting": "a logistic head per layer, their log-probabilities summed",
    "logreg": "logistic regression",
    "svm": "an SVM",
    "knn": "k nearest neighbours",
    "ridge": "a ridge classifier",
}
# Longest class name in the printed confusion matrix; the class table above it gives them in full.
_NAME_WIDTH = 24

# What a head's own fit needs of each class in a training fold, and why.
HEAD_NEEDS = {"svm": (2, "--head svm, which calibrates its probabilities on internal folds of each training part,")}
HEAD_FIX = "another --head (logreg, ridge and knn need 1)"


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 images (exists on every install)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return images, digits.target.astype(str)


def _dataset(folder: str | None) -> tuple[np.ndarray, np.ndarray]:
    if folder is not None:
        return load_folder(folder)
    X, y = _digits()
    print(f"No folder given: using scikit-learn's bundled digits ({len(y)} images of 8x8 pixels).")
    return X, y


def _head(name: str, widths: Any, smallest_class: int = 3, smallest_fold: int = 5) -> Any:
    """The head ``name`` for an extractor's layers of ``widths``, its internal
    folds and neighbours fitted to the smallest class (``smallest_class``
    images) and training fold."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from ..voting import LayerVotingClassifier, default_layer_head

    if name == "voting":
        return LayerVotingClassifier(list(widths), estimator=default_layer_head())
    # Balanced class weights: small medical data sets are rarely balanced.
    heads = {
        "logreg": lambda: LogisticRegression(max_iter=3000, class_weight="balanced"),
        # Probabilities by calibration, as scikit-learn advises since it
        # deprecated SVC(probability=True); 3 internal folds, fewer for a
        # class of 2 (HEAD_NEEDS), never more than the class has.
        "svm": lambda: CalibratedClassifierCV(
            SVC(class_weight="balanced"), ensemble=False, cv=max(2, min(3, smallest_class))
        ),
        "knn": lambda: KNeighborsClassifier(n_neighbors=min(5, smallest_fold)),
        "ridge": lambda: RidgeClassifier(class_weight="balanced"),
    }
    return make_pipeline(StandardScaler(), heads[name]())


def _cross_validate(features: np.ndarray, y: np.ndarray, estimator: Any, splits: list, verbose: int) -> dict:
    """Out-of-fold predictions and per-fold scores of ``head`` on frozen
    embeddings (computing them once is exact: the extractor learns nothing)."""
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from ..progress import progress_bar

    classes = np.unique(y)
    predicted = np.empty(len(y), dtype=y.dtype)
    fold = np.empty(len(y), dtype=np.int64)
    scores: np.ndarray | None = None
    accuracy, balanced, models = [], [], []
    lacking: list[int] = []
    with progress_bar(len(splits), verbose, "folds", unit="fold") as bar:
        for k, (train, test) in enumerate(splits):
            model = clone(estimator).fit(features[train], y[train])
            models.append(model)  # the report explains each error with the model that made it
            fold[test] = k
            predicted[test] = model.predict(features[test])
            # Probabilities only: a ridge head's decision values are not
            # probabilities, and the report would print them as such.
            if hasattr(model, "predict_proba"):
                scores = np.zeros((len(y), len(classes))) if scores is None else scores
                scores[test] = model.predict_proba(features[test])
            accuracy.append(accuracy_score(y[test], predicted[test]))
            with warnings.catch_warnings():
                # A test part without some class (fewer of its images than folds): sklearn's
                # multi-line warnings about it become the one note below.
                warnings.filterwarnings("ignore", category=UserWarning, module=r"sklearn\.metrics")
                balanced.append(balanced_accuracy_score(y[test], predicted[test]))
            if len(np.unique(y[test])) < len(classes):
                lacking.append(k + 1)
            bar.update()
    if lacking:
        print(
            f"note: the test part of fold {', '.join(map(str, lacking))} lacks a class (it has fewer images than "
            f"there are folds); its balanced accuracy averages the classes it holds. Fewer --cv folds avoid it.",
            file=sys.stderr,
        )
    return {
        "predicted": predicted,
        "scores": scores,
        "accuracy": np.array(accuracy),
        "balanced": np.array(balanced),
        "fold": fold,
        "models": models,
    }


def evaluate_command(args: argparse.Namespace) -> int:
    """``skorchlite evaluate``: cross-validate each backbone with a head, rank them, report the best.

    Runs on the parsed command line (:func:`skorchlite.cli.build_parser`)
    and returns the exit status, as every verb does.
    """
    from sklearn.metrics import confusion_matrix

    from ..folds import fold_groups, stratified_folds
    from ..report import format_score

    inputs = {
        "the input DIR": args.dir,
        "the --weights file": weights_file(args.weights),
        **backbone_weights(args.backbone, args.weights),
    }
    if args.report is not None:
        check_output_folder(args.report, "--report", inputs)
    check_cache_apart(inputs, args.cache)
    X, y = _dataset(args.dir)
    print(class_table(y))
    if len(np.unique(y)) < 2:
        raise CommandError(f"need at least two classes to evaluate, found {len(np.unique(y))}")
    extractors = _extractors(args)
    grouping = fold_groups(X, y, "duplicates" if args.group_duplicates else None, verbose=args.verbose)
    groups, found = grouping.groups, grouping.duplicates
    if found is not None:
        print(found.summary())
        print(
            f"{grouping.n_grouped} of {len(y)} images grouped with their duplicates: each group stays in one fold "
            "(--no-group-duplicates to split them at random)."
        )
    else:
        print("Duplicates not grouped (--no-group-duplicates): copies may sit on both sides of a fold.")
    # The folds depend on the labels and groups only: a fold that cannot
    # learn a class fails here, before any image is embedded.
    need, needed_by = HEAD_NEEDS.get(args.head, (1, None))
    splits = stratified_folds(y, groups, args.cv, min_count=need, needed_by=needed_by, other_fix=HEAD_FIX)
    smallest = {
        "smallest_class": min(np.unique(y[train], return_counts=True)[1].min() for train, _ in splits),
        "smallest_fold": min(len(train) for train, _ in splits),
    }
    print(f"Recipe: {_recipe(args.head, extractors[0].layer)}.")
    results = []
    for backbone, extractor in zip(args.backbone, extractors, strict=True):
        head = _head(args.head, extractor.layer_widths_, **smallest)
        start = time.perf_counter()
        announce_weights(backbone, args.weights)
        features = extractor.fit_transform(X)
        result = _cross_validate(features, y, head, splits, args.verbose)
        backbone = _label(backbone, args.weights)
        result["backbone"], result["seconds"] = backbone, time.perf_counter() - start
        result["extractor"], result["head"] = extractor, head
        results.append(result)
        print(
            f"{backbone} + {args.head}, {args.cv}-fold CV{' (duplicate groups kept together)' if groups is not None else ''}: "
            f"accuracy {format_score(result['accuracy'])}, balanced accuracy {format_score(result['balanced'])} "
            f"({result['seconds']:.1f} s)"
        )
    results.sort(key=lambda r: -r["balanced"].mean())
    if len(results) > 1:
        print("\nRanked by balanced accuracy:")
        print(f"{'rank':>4}  {'backbone':24} {'balanced acc.':>15} {'accuracy':>15} {'seconds':>8}")
        for rank, r in enumerate(results, 1):
            print(
                f"{rank:>4}  {r['backbone']:24} {format_score(r['balanced'])}   "
                f"{format_score(r['accuracy'])} {r['seconds']:8.1f}"
            )
    best = results[0]
    classes = np.unique(y)
    matrix = confusion_matrix(y, best["predicted"], labels=classes)
    print(f"\nConfusion matrix of {best['backbone']} (rows: true, columns: predicted, out-of-fold):")
    print(_format_confusion_matrix(classes, matrix))
    if args.report is not None:
        written = _evaluation_report(args, X, y, classes, splits, found, results)
        print("\nReport: " + ", ".join(visible(p) for p in written))
    print(f"\nTime: {sum(r['seconds'] for r in results):.1f} s (embeddings are cached: a second run is faster)")
    return 0


def _extractors(args: argparse.Namespace) -> list[Any]:
    """Each backbone's extractor, fitted: every name, its weights and layers
    resolved before the first image is embedded, so that the second of
    ``--backbone A B`` cannot fail after the first one's work."""
    from ..extractor import PretrainedFeatureExtractor

    return [
        PretrainedFeatureExtractor(
            backbone=backbone,
            weights=args.weights,
            layer=_layer(args),
            image_size=args.image_size,
            verbose=args.verbose,
            **engine_params(args),
        ).fit()
        for backbone in args.backbone
    ]


def _layer(args: argparse.Namespace) -> str | list[str] | None:
    """``--layer``; without it, every block for the voting head (one head
    per block) and the penultimate features for the others."""
    if args.layer is None and args.head == "voting":
        return "blocks"
    return layer_option(args.layer)


def _recipe(head: str, layer: Any) -> str:
    """The recipe that runs, in words: the extractor's ``layer`` and the ``head``."""
    names = [] if layer is None else [layer] if isinstance(layer, str) else layer
    features = " ".join(names) + " features" if names else "penultimate features"
    default = " (the default; --head logreg for one head on the penultimate features)" if head == "voting" else ""
    return f"frozen {features} + {HEAD_NAMES[head]}{default}"


def _scores(results: list, splits: list, head: str, names: list[str], y: np.ndarray) -> dict[str, bytes]:
    """Every backbone's fold scores and the best one's out-of-fold predictions,
    as CSV files: saved with the report, first, whatever happens to its figures."""
    best = results[0]
    rows = (
        [r["backbone"], head, k, len(test), r["accuracy"][k - 1], r["balanced"][k - 1]]
        for r in results
        for k, (_, test) in enumerate(splits, 1)
    )
    return {
        "scores.csv": csv_bytes(["backbone", "head", "fold", "test images", "accuracy", "balanced accuracy"], rows),
        "predictions.csv": csv_bytes(
            ["image", "label", "predicted", "fold"],
            zip(names, y, best["predicted"], best["fold"] + 1, strict=True),
        ),
    }


def _evaluation_report(
    args: argparse.Namespace,
    X: Any,
    y: np.ndarray,
    classes: np.ndarray,
    splits: list,
    found: Any,
    results: list,
) -> list[Path]:
    """The scores, then the PNGs and the page ``index.html`` of the best backbone, written last."""
    from ..report import RunInfo, error_gallery, evaluation_page, report_figures
    from ..report.folder import save_report

    best = results[0]
    names = [str(x) for x in X] if args.dir else [f"digits image {i}" for i in range(len(y))]

    def draw() -> tuple[dict[str, bytes], str]:
        proba = best["scores"]
        images = args.report_images  # with --no-report-images, no file of the report shows an input image
        pngs = report_figures(y, best["predicted"], proba=proba, classes=classes, X=X if images else None)
        explain, note = _fold_explainer(X, best, args.head) if images else (None, "")
        if args.verbose and images:
            print("Drawing the report (Grad-CAM of the misclassified images)...", file=sys.stderr)
        errors = error_gallery(X, y, best["predicted"], proba, classes, explain, note=note)
        run = RunInfo(
            command=shlex.join(["skorchlite", *args.argv]),
            parameters={**_options(args), "head estimator": repr(best["head"])},
            fingerprint=best["extractor"].fingerprint_,
            folder=None if args.dir is None else str(Path(args.dir).resolve()),
            class_counts=class_counts(y),
        )
        folds = [
            {"n": len(test), "balanced": b, "accuracy": a}
            for (_, test), b, a in zip(splits, best["balanced"], best["accuracy"], strict=True)
        ]
        page = evaluation_page(
            run,
            title=f"{best['backbone']} + {args.head}, {args.cv}-fold cross-validation",
            y_true=y,
            y_pred=best["predicted"],
            proba=proba,
            classes=classes,
            folds=folds,
            pngs=pngs,
            names=names,
            errors=errors,
            duplicates=found,
            X=X,
            ranking=results,
            images=images,
        )
        return pngs, page

    return save_report(Path(args.report), _scores(results, splits, args.head, names, y), draw)


def _fold_explainer(X: Any, result: dict, head: str) -> tuple[Any, str]:
    """Grad-CAM of each error with the fold model that made it, or None and why not."""
    from sklearn.pipeline import Pipeline

    from ..inspect import grad_cam, resolve_model

    try:
        models = [resolve_model(Pipeline([("features", result["extractor"]), ("head", m)])) for m in result["models"]]
    except TypeError:
        return None, f"No Grad-CAM: it needs a linear head (--head logreg or ridge), and {head} is not one."

    def explain(rows: list[int], targets: list) -> list[np.ndarray]:
        heatmaps: dict[int, np.ndarray] = {}
        for k, model in enumerate(models):
            mine = [(row, target) for row, target in zip(rows, targets, strict=True) if result["fold"][row] == k]
            if mine:
                cam = grad_cam(model, [X[row] for row, _ in mine], [target for _, target in mine])
                heatmaps.update(zip((row for row, _ in mine), cam.heatmaps, strict=True))
        return [heatmaps[row] for row in rows]

    note = (
        "Right of each image: its Grad-CAM for the predicted class, from the fold's model that made the "
        "prediction (red: where the evidence for that class lies)."
    )
    return explain, note


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The verb's options, defaults included, as the page lists them."""
    return {
        key: value for key, value in vars(args).items() if key not in ("run", "argv", "debug", "command", "verbose")
    }


def _format_confusion_matrix(classes: np.ndarray, matrix: np.ndarray) -> str:
    names = shorten_all(classes.tolist(), _NAME_WIDTH)
    # Wide enough for the longest label and the largest count, or cells run together.
    width = max(columns(str(cell)) for cell in [*names, *matrix.ravel()]) + 2
    lines = [" " * width + "".join(pad(name, width) for name in names)]
    lines += [pad(name, width) + "".join(f"{v:>{width}}" for v in row) for name, row in zip(names, matrix, strict=True)]
    return "\n".join(lines)


def _label(backbone: str, weights: str | None) -> str:
    return f"{backbone} [random-init]" if weights is None else backbone
