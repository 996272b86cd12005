"""The ``skorchlite`` command line (also ``python -m skorchlite``).

Verbs: ``evaluate`` (the main job), ``embed``, ``finetune``, ``predict``,
``explain``, ``backbones``. Errors print one line and exit with status 1 (``--debug``
shows the traceback); Ctrl-C exits with 130. Every output path is checked
before any work, and only the paths the user names are written, each
atomically and only once the work is done.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import write_atomic
from .memory import keep_freed_memory

HEADS = ("logreg", "svm", "knn", "ridge")
LAYER_HELP = (
    "layer(s) to embed, pooled and concatenated: node names or shortcuts such as mid, stages, penultimate "
    "(default; skorchlite backbones --layers NAME lists them)"
)


class CommandError(Exception):
    """A user error the command line reports in one line."""


EMBED_FORMATS = (".npy", ".csv", ".parquet")
# A model file ending in .pt holds data only (FineTuneClassifier.save_weights);
# any other name is a joblib pickle.
WEIGHTS_SUFFIX = ".pt"


def _check_output_file(path: str, option: str, suffixes: Sequence[str] | None = None) -> Path:
    """Fail before any work when ``path`` cannot be written as asked."""
    out = Path(path)
    if suffixes is not None and out.suffix.lower() not in suffixes:
        allowed = suffixes[0] if len(suffixes) == 1 else f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
        raise CommandError(f"{option} must end in {allowed}, got {out.name!r}")
    if out.is_dir():
        raise CommandError(f"{option} {path!r} is a folder; give a file name")
    # A rename onto a device or a FIFO would replace it, not write into it.
    if os.path.lexists(out) and not out.is_file():
        raise CommandError(f"{option} {path!r} exists and is not a regular file; give another name")
    _check_writable_folder(out.parent, option, path)
    return out


def _check_output_folder(path: str, option: str) -> Path:
    """The folder may be missing (it is created after the work), but the
    nearest existing one above it must be a writable folder."""
    out = Path(path)
    existing = out
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing == out and not out.is_dir():
        raise CommandError(f"{option} {path!r} exists and is not a folder")
    _check_writable_folder(existing, option, path)
    return out


def _check_writable_folder(folder: Path, option: str, path: str) -> None:
    folder = folder if str(folder) else Path(".")
    if os.path.lexists(folder) and not folder.is_dir():
        raise CommandError(f"{option} {path!r}: {str(folder)!r} is not a folder")
    if not folder.is_dir():
        raise CommandError(f"{option} {path!r}: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path!r}: folder {str(folder)!r} is not writable")


def _save_bytes(path: Path, write: Any) -> None:
    """``write(file)`` into memory, then one atomic write: an interrupt or a
    full disk never leaves a torn file or destroys the previous one."""
    buffer = io.BytesIO()
    write(buffer)
    write_atomic(path, buffer.getvalue())


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[list[int]]:
    """Record Ctrl-C, which still raises KeyboardInterrupt: ``fit`` catches
    it and returns normally with the epochs done so far, or re-raises it
    when no epoch was complete."""
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        signal.default_int_handler(signum, frame)

    # Only where Python's own handler is in place: not in a thread, not
    # where SIGINT is ignored (a background job).
    install = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    previous = signal.signal(signal.SIGINT, handler) if install else None
    try:
        yield seen
    finally:
        if install:
            signal.signal(signal.SIGINT, previous)


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


def _cross_validate(features: np.ndarray, y: np.ndarray, head: str, splits: list, verbose: int) -> dict:
    """Out-of-fold predictions and per-fold scores of ``head`` on frozen
    embeddings (computing them once is exact: the extractor learns nothing)."""
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from .progress import progress_bar

    estimator = _head(head)
    classes = np.unique(y)
    predicted = np.empty(len(y), dtype=y.dtype)
    fold = np.empty(len(y), dtype=np.int64)
    scores: np.ndarray | None = None
    accuracy, balanced, models = [], [], []
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
            balanced.append(balanced_accuracy_score(y[test], predicted[test]))
            bar.update()
    return {
        "predicted": predicted,
        "scores": scores,
        "accuracy": np.array(accuracy),
        "balanced": np.array(balanced),
        "fold": fold,
        "models": models,
    }


def _evaluate(args: argparse.Namespace) -> int:
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from .extractor import PretrainedFeatureExtractor
    from .report_page import format_score

    if args.report:
        _check_output_folder(args.report, "--report")
    X, y = _dataset(args.dir)
    print(_class_table(y))
    if len(np.unique(y)) < 2:
        raise CommandError(f"need at least two classes to evaluate, found {len(np.unique(y))}")
    groups = found = None
    if args.group_duplicates:
        from .duplicates import find_duplicates

        found = find_duplicates(X, y)
        groups = found.groups
        grouped = sum(map(len, found.duplicate_groups()))
        print(found.summary())
        print(
            f"{grouped} of {len(y)} images grouped with their duplicates: each group stays in one fold "
            "(--no-group-duplicates to split them at random)."
        )
    else:
        print("Duplicates not grouped (--no-group-duplicates): copies may sit on both sides of a fold.")
    cv = (StratifiedGroupKFold if groups is not None else StratifiedKFold)(args.cv, shuffle=True, random_state=0)
    # The folds depend on the labels only: an impossible --cv fails here,
    # before any image is embedded.
    splits = list(cv.split(np.zeros((len(y), 1)), y, groups))
    results = []
    for backbone in args.backbone:
        start = time.perf_counter()
        _announce_weights(backbone, args.weights)
        extractor = PretrainedFeatureExtractor(
            backbone=backbone,
            weights=args.weights,
            layer=_layer(args.layer),
            image_size=args.image_size,
            verbose=args.verbose,
        )
        features = extractor.fit_transform(X)
        result = _cross_validate(features, y, args.head, splits, args.verbose)
        backbone = _label(backbone, args.weights)
        result["backbone"], result["seconds"] = backbone, time.perf_counter() - start
        result["extractor"] = extractor
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
    if args.report:
        written = _evaluation_report(args, X, y, classes, splits, found, results)
        print("\nReport: " + ", ".join(str(p) for p in written))
    print(f"\nTime: {sum(r['seconds'] for r in results):.1f} s (embeddings are cached: a second run is faster)")
    return 0


def _evaluation_report(
    args: argparse.Namespace, X: Any, y: np.ndarray, classes: np.ndarray, splits: list, found: Any, results: list
) -> list[Path]:
    """The PNGs and the page ``index.html`` of the best backbone, written last."""
    from .report import report_figures
    from .report_page import RunInfo, error_gallery, evaluation_page

    best = results[0]
    proba = best["scores"]
    pngs = report_figures(y, best["predicted"], proba=proba, classes=classes, X=X)
    explain, note = _fold_explainer(X, best, args.head)
    if args.verbose:
        print("Drawing the report (Grad-CAM of the misclassified images)...", file=sys.stderr)
    errors = error_gallery(X, y, best["predicted"], proba, classes, explain, note=note)
    run = RunInfo(
        command=shlex.join(["skorchlite", *args.argv]),
        parameters={**_options(args), "head estimator": repr(_head(args.head))},
        fingerprint=best["extractor"].fingerprint_,
        folder=None if args.dir is None else str(Path(args.dir).resolve()),
        class_counts=_counts(y),
    )
    names = [str(x) for x in X] if args.dir else [f"digits image {i}" for i in range(len(y))]
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
    )
    return _write_report_folder(Path(args.report), pngs, page)


def _fold_explainer(X: Any, result: dict, head: str) -> tuple[Any, str]:
    """Grad-CAM of each error with the fold model that made it, or None and why not."""
    from sklearn.pipeline import Pipeline

    from .inspect import grad_cam, resolve_model

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


def _counts(y: np.ndarray) -> dict[Any, int]:
    labels, counts = np.unique(y, return_counts=True)
    return {label: int(n) for label, n in zip(labels.tolist(), counts.tolist(), strict=True)}


def _write_report_folder(folder: Path, pngs: dict[str, bytes], page: str) -> list[Path]:
    """Each PNG, then the page, every file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in [*pngs.items(), ("index.html", page.encode("utf-8"))]:
        write_atomic(folder / name, data)
        written.append(folder / name)
    return written


def _format_confusion_matrix(classes: np.ndarray, matrix: np.ndarray) -> str:
    # Wide enough for the longest label and the largest count, or cells run together.
    width = max(len(str(cell)) for cell in [*classes, *matrix.ravel()]) + 2
    lines = [" " * width + "".join(f"{str(c):>{width}}" for c in classes)]
    lines += [
        f"{str(label):>{width}}" + "".join(f"{v:>{width}}" for v in row)
        for label, row in zip(classes, matrix, strict=True)
    ]
    return "\n".join(lines)


def _embed(args: argparse.Namespace) -> int:
    from .extractor import PretrainedFeatureExtractor

    out = _check_output_file(args.output, "-o", EMBED_FORMATS)
    suffix = out.suffix.lower()
    index = _embed_index(args, out)
    if suffix == ".parquet":
        _require_parquet()
    X, y = _load_folder(args.dir)
    if suffix == ".parquet":
        for path in X:
            if not _encodable(path):
                raise CommandError(
                    f"{path!r} is not valid UTF-8, which .parquet requires of its strings; rename the file, or "
                    "write .npy or .csv (which keep the name's bytes)"
                )
    _announce_weights(args.backbone, args.weights)
    features = PretrainedFeatureExtractor(
        backbone=args.backbone,
        weights=args.weights,
        layer=_layer(args.layer),
        image_size=args.image_size,
        verbose=args.verbose,
    ).fit_transform(X)
    if index is not None:
        listing = _rows_bytes(["path", "label"], zip(X, y, strict=True))  # before any write: both files, or neither
        _save_bytes(out, lambda f: np.save(f, features, allow_pickle=False))
        write_atomic(index, listing)
        print(f"Wrote {features.shape[0]} x {features.shape[1]} embeddings to {out}, paths and labels to {index}")
        return 0
    columns = ["path", "label", *(f"f{i}" for i in range(features.shape[1]))]
    rows = ([path, label, *vector] for path, label, vector in zip(X, y, features.tolist(), strict=True))
    if suffix == ".csv":
        write_atomic(out, _rows_bytes(columns, rows))
    else:
        import pandas as pd

        table = pd.DataFrame(list(rows), columns=columns)
        _save_bytes(out, table.to_parquet)
    print(f"Wrote {features.shape[0]} embeddings of {features.shape[1]} features with paths and labels to {out}")
    return 0


def _embed_index(args: argparse.Namespace, out: Path) -> Path | None:
    """Where a .npy output's paths and labels go: ``--index``, or a .csv of
    the same name, which must not exist (the user did not name it)."""
    if out.suffix.lower() != ".npy":
        if args.index is not None:
            raise CommandError(f"--index is for a .npy output; {out.name} holds the paths and labels itself")
        return None
    if args.index is None:
        index = out.with_suffix(".csv")
        if os.path.lexists(index):
            raise CommandError(
                f"{str(index)!r} exists: a .npy output's paths and labels go to a .csv of the same name; "
                f"replace it with --index {index}, or give --index another .csv"
            )
    else:
        index = Path(args.index)
    if index.resolve() == out.resolve():
        raise CommandError("--index and -o name the same file")
    return _check_output_file(str(index), "--index", (".csv",))


def _require_parquet() -> None:
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise CommandError(f"writing .parquet needs pandas and pyarrow ({err}); use .npy or .csv") from err


def _rows_bytes(header: list[str], rows: Any) -> bytes:
    """CSV of ``rows``, UTF-8; a file name that is not valid UTF-8 keeps its
    own bytes (as the filesystem holds them), as ``os.fsencode`` writes it."""
    import csv

    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8", "surrogateescape")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _at_least_two(value: str) -> int:
    number = int(value)
    if number < 2:
        raise argparse.ArgumentTypeError(f"needs at least 2 folds, got {number}")
    return number


def _unfreeze(value: str) -> int | str:
    return value if value == "all" else int(value)


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import FineTuneClassifier

    output = _check_output_file(args.output, "-o")
    report = _check_output_folder(args.report, "--report") if args.report else None
    X, y = _load_folder(args.dir)
    print(_class_table(y))
    _announce_weights(args.backbone, args.weights)
    clf = FineTuneClassifier(
        backbone=args.backbone,
        weights=args.weights,
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
    with _noting_interrupts() as interrupted:
        try:
            clf.fit(X, y)
        except KeyboardInterrupt:
            if not interrupted:
                raise
    seconds = time.perf_counter() - start
    epochs = len(getattr(clf, "history_", []))
    if interrupted and not (args.keep_partial and epochs):
        why = "no epoch was complete" if args.keep_partial else "--keep-partial keeps the best complete epoch"
        print(f"Interrupted after {epochs} epochs; nothing written ({why}).", file=sys.stderr)
        return 130
    if output.suffix.lower() == WEIGHTS_SUFFIX:
        clf.save_weights(output)
    else:
        import joblib

        _save_bytes(output, lambda f: joblib.dump(clf, f))
    print(
        f"{'Interrupted: trained' if interrupted else 'Trained'} {epochs} epochs in {seconds:.1f} s; "
        f"best epoch {clf.best_epoch_}; saved to {output}"
    )
    if report is not None:
        written = _finetune_report(args, report, clf, y, output, seconds, bool(interrupted))
        print("Report: " + ", ".join(str(p) for p in written))
    return 130 if interrupted else 0


def _finetune_report(
    args: argparse.Namespace, report: Path, clf: Any, y: np.ndarray, output: Path, seconds: float, interrupted: bool
) -> list[Path]:
    from .backbones import estimator_backbone
    from .report import report_figures
    from .report_page import RunInfo, finetune_page

    pngs = report_figures(history=clf.history_)
    run = RunInfo(
        command=shlex.join(["skorchlite", *args.argv]),
        parameters={"FineTuneClassifier": repr(clf), **clf.get_params()},
        fingerprint=estimator_backbone(clf).fingerprint(),
        folder=str(Path(args.dir).resolve()),
        class_counts=_counts(y),
    )
    page = finetune_page(
        run,
        history=clf.history_,
        best_epoch=clf.best_epoch_,
        pngs=pngs,
        model_path=str(output),
        seconds=seconds,
        interrupted=interrupted,
    )
    return _write_report_folder(report, pngs, page)


def _load_model(path: str) -> Any:
    """A saved model, or one clear line naming the file and the cause."""
    model_path = Path(path)
    if not model_path.is_file():
        raise CommandError(f"model file {str(model_path)!r} does not exist")
    if model_path.suffix.lower() == WEIGHTS_SUFFIX:
        from .finetune import FineTuneClassifier

        return FineTuneClassifier.load_weights(model_path)
    import joblib

    try:
        return joblib.load(model_path)
    except Exception as err:  # unpickling arbitrary bytes can raise anything
        raise CommandError(
            f"{str(model_path)!r} is not a model file: expected a FineTuneClassifier or fitted pipeline saved "
            f"by skorchlite finetune or joblib.dump ({type(err).__name__}: {err})"
        ) from err


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
        for path, k, row in zip(args.images, best, proba, strict=True):
            writer.writerow([path, classes[k], f"{row[k]:.4f}", *(f"{p:.4f}" for p in row)])
        return 0
    width = max(len(p) for p in args.images)
    for path, k, row in zip(args.images, best, proba, strict=True):
        print(f"{path:{width}}  {classes[k]}  {row[k]:.3f}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .backbones import list_backbones
    from .inspect._model import resolve_model
    from .inspect.gradcam import grad_cam

    output = _check_output_file(args.output, "-o", (".png",))
    if Path(args.model).is_file():
        if args.image_size is not None:
            raise CommandError("--image-size applies to a backbone name; a saved model uses its own")
        try:
            model = resolve_model(_load_model(args.model))
        except (TypeError, ValueError) as err:
            raise CommandError(f"{args.model!r}: {err}") from err
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


def _layer(names: list[str] | None) -> str | list[str] | None:
    """The extractor's ``layer`` for ``--layer NAME...``."""
    return names[0] if names is not None and len(names) == 1 else names


def _backbones(args: argparse.Namespace) -> int:
    from .backbones import list_layers
    from .backbones.registry import SOURCES, offline_backbones

    if args.layers is not None:
        nodes, shortcuts = list_layers(args.layers)
        print(f"Shortcuts of {args.layers} (--layer NAME, or layer=NAME in Python):")
        for shortcut, members in shortcuts.items():
            print(f"  {shortcut:12} {', '.join('(penultimate features)' if m is None else m for m in members)}")
        print(f"Nodes ({len(nodes)}), from input to output (any of them, or several, as --layer A B ...):")
        for node in nodes:
            print(f"  {node}")
        return 0
    total = offline_count = 0
    for source in SOURCES:
        names = sorted(source.names())
        offline = set(offline_backbones(source))
        total, offline_count = total + len(names), offline_count + len(offline)
        print(f"{source.title}: {len(offline)} of {len(names)} offline now")
        for name in names:
            if not args.offline or name in offline:
                print(f"  {name:26} {'offline: weights here' if name in offline else 'weights not on this machine'}")
    print(
        "Also, from Python: any torch.nn.Module, an (architecture, checkpoint path) pair, and "
        f"weights=None ({RANDOM_INIT_LABEL}) for any name above; see docs/backbones.md."
    )
    print(f"{offline_count} of {total} backbones work offline here.")
    return 0


RANDOM_INIT_LABEL = "random initialisation, not pretrained"
WEIGHTS_HELP = "DEFAULT, a weights member, a checkpoint path, or random-init (a baseline without pretraining)"


def _weights(value: str) -> str | None:
    """``--weights``: ``random-init`` (or ``none``) is ``weights=None``."""
    return None if value.lower() in ("random-init", "none") else value


def _announce_weights(backbone: str, weights: str | None) -> None:
    """Say loudly when a run starts from random weights: its scores measure
    the architecture alone, never a pretrained backbone."""
    if weights is None:
        print(f"NOTE: backbone {backbone} starts from a RANDOM INITIALISATION (weights 'random-init'), not pretrained.")


def _label(backbone: str, weights: str | None) -> str:
    return f"{backbone} [random-init]" if weights is None else backbone


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
    evaluate.add_argument("--weights", type=_weights, default="DEFAULT", help=WEIGHTS_HELP)
    evaluate.add_argument("--head", choices=HEADS, default="logreg")
    evaluate.add_argument("--cv", type=_at_least_two, default=5, help="stratified folds (default 5)")
    evaluate.add_argument("--image-size", type=int, default=None)
    evaluate.add_argument("--layer", nargs="+", metavar="NAME", help=LAYER_HELP)
    evaluate.add_argument(
        "--group-duplicates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep duplicate images (find_duplicates) in one fold; on unless --no-group-duplicates",
    )
    evaluate.add_argument(
        "--report",
        metavar="OUT_DIR",
        help="write index.html (one self-contained page) and the confusion matrix, ROC/PR and error PNGs",
    )

    embed = verb("embed", _embed, "write the embeddings of an image folder to .npy, .csv or .parquet")
    embed.add_argument("dir")
    embed.add_argument("-o", "--output", required=True, help="features file: .npy, .csv or .parquet")
    embed.add_argument("--index", help="for .npy: the .csv of paths and labels (default: same name; never replaced)")
    embed.add_argument("--backbone", default="efficientnet_lite0")
    embed.add_argument("--weights", type=_weights, default="DEFAULT", help=WEIGHTS_HELP)
    embed.add_argument("--image-size", type=int, default=None)
    embed.add_argument("--layer", nargs="+", metavar="NAME", help=LAYER_HELP)

    finetune = verb("finetune", _finetune, "fine-tune a backbone on an image folder and save the model")
    finetune.add_argument("dir")
    finetune.add_argument(
        "-o", "--output", required=True, help="model file: .pt holds data only (safe to share), else a joblib pickle"
    )
    finetune.add_argument("--backbone", default="efficientnet_lite0")
    finetune.add_argument("--weights", type=_weights, default="DEFAULT", help=WEIGHTS_HELP)
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
    finetune.add_argument(
        "--report", metavar="OUT_DIR", help="write index.html (one self-contained page) and the learning curves PNG"
    )
    finetune.add_argument(
        "--keep-partial", action="store_true", help="on Ctrl-C, still save the best complete epoch (exit status 130)"
    )

    predict = verb("predict", _predict, "predict the class of images with a saved model")
    predict.add_argument("model", help="model file (.joblib, .pt)")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--csv", action="store_true", help="CSV with every class's probability")

    explain = verb("explain", _explain, "Grad-CAM of a saved model (or a backbone's ImageNet classes) on one image")
    explain.add_argument("model", help="model file (.joblib, .pt) or a backbone name for its ImageNet classes")
    explain.add_argument("image")
    explain.add_argument("-o", "--output", required=True, help="overlay PNG")
    explain.add_argument("--target", help="class to explain (default: the predicted one)")
    explain.add_argument("--layer", help="feature map (default: the last before pooling)")
    explain.add_argument("--image-size", type=int, default=None, help="input side, for a backbone name")

    backbones = verb(
        "backbones", _backbones, "list every source's backbones and whether their weights are on this machine"
    )
    backbones.add_argument("--offline", action="store_true", help="only those that work offline")
    backbones.add_argument("--layers", metavar="NAME", help="list the layer names and shortcuts of backbone NAME")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args: Any = build_parser().parse_args(argv)
    args.argv = argv  # the command line, as the report shows it
    try:
        status = args.run(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
        return status
    except BrokenPipeError:
        # The reader is gone (``skorchlite backbones | head``): stop quietly,
        # as a Unix tool killed by SIGPIPE does.
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except (CommandError, ValueError, TypeError, OSError, RuntimeError, ImportError) as err:
        if args.debug:
            raise
        print(f"skorchlite {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"skorchlite {args.command}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, or the interpreter's last flush at exit
    reports the broken pipe again."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


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
