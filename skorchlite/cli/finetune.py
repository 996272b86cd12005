"""``skorchlite finetune``: train a backbone on an image folder, save it, report it."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..names import csv_bytes, visible
from .apart import check_cache_apart
from .inputs import (
    announce_weights,
    backbone_weights,
    class_counts,
    class_table,
    engine_params,
    load_folder,
    weights_file,
)
from .output import check_output_file, check_output_folder

# The command line writes models as data only, never a pickle, which can run
# code: skorchlite.save's file (SHARED_SUFFIX), or FineTuneClassifier.save_weights'
# under PyTorch's names for such files.
SHARED_SUFFIX = ".skorchlite"
WEIGHTS_SUFFIX = ".pt"
MODEL_SUFFIXES = (SHARED_SUFFIX, WEIGHTS_SUFFIX, ".pth")


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


def finetune_command(args: argparse.Namespace) -> int:
    """``skorchlite finetune``: fine-tune, save the model, and report on the training.

    Runs on the parsed command line (:func:`skorchlite.cli.build_parser`)
    and returns the exit status, as every verb does.
    """
    from ..finetune import FineTuneClassifier

    inputs = {
        "the input DIR": args.dir,
        "the --weights file": weights_file(args.weights),
        **backbone_weights([args.backbone], args.weights),
    }
    output = check_output_file(args.output, "-o", MODEL_SUFFIXES, inputs=inputs)
    report = (
        check_output_folder(args.report, "--report", {**inputs, "-o": args.output}) if args.report is not None else None
    )
    check_cache_apart(inputs, args.cache)
    X, y = load_folder(args.dir)
    print(class_table(y))
    announce_weights(args.backbone, args.weights)
    clf = FineTuneClassifier(
        backbone=args.backbone,
        weights=args.weights,
        unfreeze=args.unfreeze,
        epochs=args.epochs,
        freeze_epochs=args.freeze_epochs,
        lr=args.lr,
        image_size=args.image_size,
        **engine_params(args),
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
    if output.suffix.lower() == SHARED_SUFFIX:
        from ..model_io import save

        save(clf, output)
    else:
        clf.save_weights(output)
    print(
        f"{'Interrupted: trained' if interrupted else 'Trained'} {epochs} epochs in {seconds:.1f} s; "
        f"best epoch {clf.best_epoch_}; saved to {visible(output)}"
    )
    if report is not None:
        written = _finetune_report(args, report, clf, y, output, seconds, bool(interrupted))
        print("Report: " + ", ".join(visible(p) for p in written))
    return 130 if interrupted else 0


def _finetune_report(
    args: argparse.Namespace, report: Path, clf: Any, y: np.ndarray, output: Path, seconds: float, interrupted: bool
) -> list[Path]:
    from ..backbones import estimator_backbone
    from ..report import RunInfo, finetune_page, report_figures
    from ..report.folder import save_report

    columns = list(dict.fromkeys(key for record in clf.history_ for key in record))
    history = csv_bytes(columns, ([record.get(key) for key in columns] for record in clf.history_))

    def draw() -> tuple[dict[str, bytes], str]:
        pngs = report_figures(history=clf.history_)
        run = RunInfo(
            command=shlex.join(["skorchlite", *args.argv]),
            parameters={"FineTuneClassifier": repr(clf), **clf.get_params()},
            fingerprint=estimator_backbone(clf).fingerprint(),
            folder=str(Path(args.dir).resolve()),
            class_counts=class_counts(y),
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
        return pngs, page

    return save_report(report, {"history.csv": history}, draw)
