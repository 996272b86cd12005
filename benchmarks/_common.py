"""What the benchmarks share: the BUSI images, the machine line, the verdict."""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "busi"


def busi_arguments(doc: str, quick: int) -> argparse.ArgumentParser:
    """A parser with ``--data`` and ``--limit N`` / ``--quick`` (a subset of ``quick`` images)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BUSI folder (default: %(default)s)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--limit", type=int, help="a stratified subset of N images (default: all)")
    size.add_argument("--quick", action="store_const", const=quick, dest="limit", help=f"same as --limit {quick}")
    return parser


def load_busi(data: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """BUSI's paths and labels; ``limit`` keeps a stratified subset (seed 0).

    Exits with a message (status 1) when the folder is missing.
    """
    from skorchlite.datasets import load_image_folder

    if not data.is_dir():
        raise SystemExit(f"BUSI not found at {data}; pass --data DIR (a folder with one sub-folder per class).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # BUSI's README.md beside the class folders
        paths, labels = load_image_folder(data)
    X, y = np.asarray(paths, dtype=object), np.asarray(labels)
    return (X, y) if limit is None else stratified_subset(X, y, limit)


def class_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--classes``: keep only those of BUSI's classes (``busi_samples``)."""
    parser.add_argument("--classes", nargs="+", help="only these classes (e.g. benign malignant: the two-class task)")


def busi_samples(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """BUSI's paths and labels as ``args`` select them: ``--classes`` (all
    when absent; a parser error names unknown ones), then a stratified
    ``--limit`` of those."""
    X, y = load_busi(args.data, None)
    if args.classes:
        if unknown := sorted(set(args.classes) - set(y.tolist())):
            parser.error(f"--classes: {unknown} not among BUSI's classes {sorted(set(y.tolist()))}")
        keep = np.isin(y, args.classes)
        X, y = X[keep], y[keep]
    return (X, y) if args.limit is None else stratified_subset(X, y, args.limit)


def stratified_subset(X: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of the samples, classes in their proportions (seed 0); all when ``n >= len(y)``."""
    from sklearn.model_selection import train_test_split

    if n >= len(y):
        return X, y
    X, _, y, _ = train_test_split(X, y, train_size=n, stratify=y, random_state=0)
    return X, y


def duplicate_groups(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A group id per image: copies found by ``find_duplicates`` share one,
    so that grouped folds never put a copy on both sides of a split."""
    from skorchlite.duplicates import find_duplicates

    return find_duplicates(list(X), y).groups


def grouped_folds(folds: int = 5):
    """The benchmarks' duplicate-aware folds: StratifiedGroupKFold(shuffle, seed 0)."""
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(folds, shuffle=True, random_state=0)


def machine() -> str:
    """Platform, CPU model, cores, torch version and threads, on one line."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        cpuinfo = []
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = models[0] if models else platform.processor() or "unknown CPU"
    return (
        f"{platform.platform()}, {cpu}, {os.cpu_count()} cores; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def verdict(ok: bool) -> str:
    """How a target is reported: measured and printed, never asserted."""
    return "PASS" if ok else "FAIL"
