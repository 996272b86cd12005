"""The ``skorchlite`` command line (also ``python -m skorchlite``).

Verbs: ``evaluate`` (the main job), ``embed``, ``finetune``, ``predict``,
``explain``, ``backbones``. Errors print one line and exit with status 1 (``--debug``
shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .memory import keep_freed_memory

HEADS = ("logreg", "svm", "knn", "ridge")


class CommandError(Exception):
    """A user error the command line reports in one line."""


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 images (exists on every install)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return images, digits.target.astype(str)


def _load_folder(folder: str) -> tuple[np.ndarray, np.ndarray]:
    from .datasets import load_image_folder

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        paths, labels = load_image_folder(folder)
    for warning in caught:
        print(f"note: {warning.message}", file=sys.stderr)
    return np.asarray(paths, dtype=object), np.asarray(labels)


def _dataset(folder: str | None) -> tuple[np.ndarray, np.ndarray]:
    if folder is not None:
        return _load_folder(folder)
    X, y = _digits()
    print(f"No folder given: using scikit-learn's bundled digits ({len(y)} images of 8x8 pixels).")
    return X, y


def _head(name: str) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # Balanced class weights: small medical data sets are rarely balanced.
    heads = {
        "logreg": lambda: LogisticRegression(max_iter=3000, class_weight="balanced"),
        # Probabilities by calibration, as scikit-learn advises since it
        # deprecated SVC(probability=True); cv=3 works down to 3 images a class.
        "svm": lambda: CalibratedClassifierCV(SVC(class_weight="balanced"), ensemble=False, cv=3),
        "knn": lambda: KNeighborsClassifier(n_neighbors=5),
        "ridge": lambda: RidgeClassifier(class_weight="balanced"),
    }
    return make_pipeline(StandardScaler(), heads[name]())


def _class_table(y: np.ndarray) -> str:
    from .datasets import summarize

    return str(summarize(y))


def _cross_validate(features: np.ndarray, y: np.ndarray, head: str, cv: Any, groups: Any, verbose: int) -> dict:
    """Out-of-fold predictions and per-fold scores of ``head`` on frozen
    embeddings (computing them once is exact: the extractor learns nothing)."""
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from .progress import progress_bar

    estimator = _head(head)
    classes = np.unique(y)
    predicted = np.empty(len(y), dtype=y.dtype)
    scores: np.ndarray | None = None
    accuracy, balanced = [], []
    splits = list(cv.split(features, y, groups))
    with progress_bar(len(splits), verbose, "folds", unit="fold") as bar:
        for train, test in splits:
            model = clone(estimator).fit(features[train], y[train])
            predicted[test] = model.predict(features[test])
            # Probabilities only: a ridge head's decision values are not
            # probabilities, and the report would print them as such.
            if hasattr(model, "predict_proba"):
                scores = np.zeros((len(y), len(classes))) if scores is None else scores
                scores[test] = model.predict_proba(features[test])
            accuracy.append(accuracy_score(y[test], predicted[test]))
            balanced.append(balanced_accuracy_score(y[test], predicted[test]))
            bar.update()
    return {"predicted": predicted, "scores": scores, "accuracy": np.array(accuracy), "balanced": np.array(balanced)}


def _evaluate(args: argparse.Namespace) -> int:
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from .extractor import PretrainedFeatureExtractor

    X, y = _dataset(args.dir)
    print(_class_table(y))
    if len(np.unique(y)) < 2:
        raise CommandError(f"need at least two classes to evaluate, found {len(np.unique(y))}")
    groups = None
    if args.group_duplicates:
        from .duplicates import find_duplicates

        found = find_duplicates(X, y)
        groups = found.groups
        print(found.summary())
    cv = (StratifiedGroupKFold if groups is not None else StratifiedKFold)(args.cv, shuffle=True, random_state=0)
    results = []
    for backbone in args.backbone:
        start = time.perf_counter()
        extractor = PretrainedFeatureExtractor(backbone=backbone, image_size=args.image_size, verbose=args.verbose)
        features = extractor.fit_transform(X)
        result = _cross_validate(features, y, args.head, cv, groups, args.verbose)
        result["backbone"], result["seconds"] = backbone, time.perf_counter() - start
        results.append(result)
        print(
            f"{backbone} + {args.head}, {args.cv}-fold CV{' (duplicate groups kept together)' if groups is not None else ''}: "
            f"accuracy {result['accuracy'].mean():.3f} ± {result['accuracy'].std():.3f}, "
            f"balanced accuracy {result['balanced'].mean():.3f} ± {result['balanced'].std():.3f} "
            f"({result['seconds']:.1f} s)"
        )
    results.sort(key=lambda r: -r["balanced"].mean())
    if len(results) > 1:
        print("\nRanked by balanced accuracy:")
        print(f"{'rank':>4}  {'backbone':24} {'balanced acc.':>15} {'accuracy':>15} {'seconds':>8}")
        for rank, r in enumerate(results, 1):
            print(
                f"{rank:>4}  {r['backbone']:24} {r['balanced'].mean():.3f} ± {r['balanced'].std():.3f}   "
                f"{r['accuracy'].mean():.3f} ± {r['accuracy'].std():.3f} {r['seconds']:8.1f}"
            )
    best = results[0]
    classes = np.unique(y)
    matrix = confusion_matrix(y, best["predicted"], labels=classes)
    print(f"\nConfusion matrix of {best['backbone']} (rows: true, columns: predicted, out-of-fold):")
    print(_format_confusion_matrix(classes, matrix))
    if args.report:
        from .report import write_report

        written = write_report(
            args.report, y, best["predicted"], proba=best["scores"], classes=classes, X=X if args.dir else None
        )
        print("\nReport: " + ", ".join(str(p) for p in written))
    print(f"\nTime: {sum(r['seconds'] for r in results):.1f} s (embeddings are cached: a second run is faster)")
    return 0


def _format_confusion_matrix(classes: np.ndarray, matrix: np.ndarray) -> str:
    # Wide enough for the longest label and the largest count, or cells run together.
    width = max(len(str(cell)) for cell in [*classes, *matrix.ravel()]) + 2
    lines = [" " * width + "".join(f"{str(c):>{width}}" for c in classes)]
    lines += [f"{str(label):>{width}}" + "".join(f"{v:>{width}}" for v in row) for label, row in zip(classes, matrix)]
    return "\n".join(lines)


def _embed(args: argparse.Namespace) -> int:
    from .extractor import PretrainedFeatureExtractor

    X, y = _load_folder(args.dir)
    features = PretrainedFeatureExtractor(
        backbone=args.backbone, image_size=args.image_size, verbose=args.verbose
    ).fit_transform(X)
    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        np.save(out, features, allow_pickle=False)
        index = out.with_suffix(".csv")
        _write_rows(index, ["path", "label"], zip(X, y))
        print(f"Wrote {features.shape[0]} x {features.shape[1]} embeddings to {out}, paths and labels to {index}")
        return 0
    columns = ["path", "label", *(f"f{i}" for i in range(features.shape[1]))]
    rows = ([path, label, *vector] for path, label, vector in zip(X, y, features.tolist()))
    if suffix == ".csv":
        _write_rows(out, columns, rows)
    elif suffix == ".parquet":
        try:
            import pandas as pd

            pd.DataFrame(list(rows), columns=columns).to_parquet(out)
        except ImportError as err:
            raise CommandError(f"writing .parquet needs pandas and pyarrow ({err}); use .npy or .csv") from err
    else:
        raise CommandError(f"output must end in .npy, .csv or .parquet, got {out.name!r}")
    print(f"Wrote {features.shape[0]} embeddings of {features.shape[1]} features with paths and labels to {out}")
    return 0


def _write_rows(path: Path, header: list[str], rows: Any) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _unfreeze(value: str) -> int | str:
    return value if value == "all" else int(value)


def _finetune(args: argparse.Namespace) -> int:
    import joblib

    from .finetune import FineTuneClassifier

    X, y = _load_folder(args.dir)
    print(_class_table(y))
    clf = FineTuneClassifier(
        backbone=args.backbone,
        unfreeze=args.unfreeze,
        epochs=args.epochs,
        freeze_epochs=args.freeze_epochs,
        lr=args.lr,
        image_size=args.image_size,
        batch_size=args.batch_size,
        class_weight="balanced" if args.balanced else None,
        validation_fraction=args.validation_fraction,
        n_iter_no_change=args.n_iter_no_change,
        random_state=args.random_state,
        verbose=max(args.verbose, 1),
    )
    start = time.perf_counter()
    clf.fit(X, y)
    joblib.dump(clf, args.output)
    print(f"Trained {len(clf.history_)} epochs in {time.perf_counter() - start:.1f} s; best epoch {clf.best_epoch_}; "
          f"saved to {args.output}")
    if args.report:
        from .report import plot_learning_curves

        print(f"Learning curves: {plot_learning_curves(clf.history_, Path(args.report) / 'learning_curves.png')}")
    return 0


def _load_model(path: str) -> Any:
    import joblib

    model_path = Path(path)
    if not model_path.is_file():
        raise CommandError(f"model file {str(model_path)!r} does not exist")
    return joblib.load(model_path)


def _predict(args: argparse.Namespace) -> int:
    import csv

    model_path = Path(args.model)
    model = _load_model(args.model)
    if not hasattr(model, "predict_proba"):
        raise CommandError(f"{model_path.name} holds a {type(model).__name__}, which has no predict_proba")
    proba = model.predict_proba(list(args.images))
    classes = model.classes_
    best = proba.argmax(1)
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "class", "probability", *(f"p_{c}" for c in classes)])
        for path, k, row in zip(args.images, best, proba):
            writer.writerow([path, classes[k], f"{row[k]:.4f}", *(f"{p:.4f}" for p in row)])
        return 0
    width = max(len(p) for p in args.images)
    for path, k, row in zip(args.images, best, proba):
        print(f"{path:{width}}  {classes[k]}  {row[k]:.3f}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .backbones import list_backbones
    from .inspect._model import resolve_model
    from .inspect.gradcam import grad_cam

    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise CommandError(f"output must end in .png, got {output.name!r}")
    if Path(args.model).is_file():
        if args.image_size is not None:
            raise CommandError("--image-size applies to a backbone name; a saved model uses its own")
        model = resolve_model(_load_model(args.model))
    elif args.model in list_backbones():
        model = resolve_model(args.model, args.image_size)
    else:
        raise CommandError(
            f"{args.model!r} is neither a model file nor a backbone name (skorchlite backbones lists them)"
        )
    result = grad_cam(model, [args.image], args.target, layer=args.layer, path=output)
    print(
        f"{args.image}: predicted {result.predicted[0]} ({result.predicted_probability[0]:.3f}); "
        f"Grad-CAM of {result.target[0]} ({result.target_probability[0]:.3f}) at layer {result.layer!r} "
        f"written to {output}"
    )
    return 0


def _backbones(args: argparse.Namespace) -> int:
    from .backbones import list_backbones, offline_backbones

    offline = set(offline_backbones())
    names = list_backbones()
    for name in names:
        if not args.offline or name in offline:
            print(f"{name:28} {'offline: weights here' if name in offline else 'weights not on this machine'}")
    print(f"{len(offline)} of {len(names)} backbones work offline here.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skorchlite", description="Transfer learning for images, with scikit-learn.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    def verb(name: str, run: Any, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--verbose", type=int, default=1, help="0: quiet, 1: progress on a terminal, 2: always")
        sub.set_defaults(run=run)
        return sub

    evaluate = verb("evaluate", _evaluate, "cross-validate pretrained backbones + a classifier head on an image folder")
    evaluate.add_argument("dir", nargs="?", help="one sub-folder per class (default: scikit-learn's digits)")
    evaluate.add_argument("--backbone", nargs="+", default=["efficientnet_lite0"], help="one or more backbones")
    evaluate.add_argument("--head", choices=HEADS, default="logreg")
    evaluate.add_argument("--cv", type=int, default=5, help="stratified folds (default 5)")
    evaluate.add_argument("--image-size", type=int, default=None)
    evaluate.add_argument("--group-duplicates", action="store_true", help="keep duplicate images in one fold")
    evaluate.add_argument("--report", metavar="OUT_DIR", help="write confusion matrix, ROC/PR and error PNGs")

    embed = verb("embed", _embed, "write the embeddings of an image folder to .npy, .csv or .parquet")
    embed.add_argument("dir")
    embed.add_argument("-o", "--output", required=True)
    embed.add_argument("--backbone", default="efficientnet_lite0")
    embed.add_argument("--image-size", type=int, default=None)

    finetune = verb("finetune", _finetune, "fine-tune a backbone on an image folder and save the model")
    finetune.add_argument("dir")
    finetune.add_argument("-o", "--output", required=True, help="model file (.joblib)")
    finetune.add_argument("--backbone", default="efficientnet_lite0")
    finetune.add_argument("--unfreeze", type=_unfreeze, default=2, help="layer groups to train, or 'all'")
    finetune.add_argument("--epochs", type=int, default=10)
    finetune.add_argument("--freeze-epochs", type=int, default=1)
    finetune.add_argument("--lr", type=float, default=1e-3)
    finetune.add_argument("--image-size", type=int, default=None)
    finetune.add_argument("--batch-size", type=int, default=32)
    finetune.add_argument("--validation-fraction", type=float, default=0.1)
    finetune.add_argument("--n-iter-no-change", type=int, default=None)
    finetune.add_argument("--balanced", action="store_true", help="class_weight='balanced'")
    finetune.add_argument("--random-state", type=int, default=0)
    finetune.add_argument("--report", metavar="OUT_DIR", help="write the learning curves PNG")

    predict = verb("predict", _predict, "predict the class of images with a saved model")
    predict.add_argument("model")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--csv", action="store_true", help="CSV with every class's probability")

    explain = verb("explain", _explain, "Grad-CAM of a saved model (or a backbone's ImageNet classes) on one image")
    explain.add_argument("model", help="model file (.joblib) or a backbone name for its ImageNet classes")
    explain.add_argument("image")
    explain.add_argument("-o", "--output", required=True, help="overlay PNG")
    explain.add_argument("--target", help="class to explain (default: the predicted one)")
    explain.add_argument("--layer", help="feature map (default: the last before pooling)")
    explain.add_argument("--image-size", type=int, default=None, help="input side, for a backbone name")

    backbones = verb("backbones", _backbones, "list backbones and whether their weights are on this machine")
    backbones.add_argument("--offline", action="store_true", help="only those that work offline")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args: Any = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ValueError, TypeError, OSError, RuntimeError, ImportError) as err:
        if args.debug:
            raise
        print(f"skorchlite {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"skorchlite {args.command}: interrupted", file=sys.stderr)
        return 130


def run() -> int:
    """The ``skorchlite`` program: :func:`main` in a process that keeps
    freed memory for the next batch (:func:`skorchlite.memory.keep_freed_memory`).

    A program owns its process, so it may tune the allocator where a
    library called from someone else's code may not.
    """
    keep_freed_memory()
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
