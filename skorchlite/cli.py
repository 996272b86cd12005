"""Command line: ``skorchlite evaluate [DIR]`` (also ``python -m skorchlite``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 images (exists on every install)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return images, digits.target.astype(str)


def _evaluate(args: argparse.Namespace) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline

    from .datasets import load_image_folder
    from .extractor import PretrainedFeatureExtractor

    if args.dir is None:
        X, y = _digits()
        print(f"No folder given: using scikit-learn's bundled digits ({len(y)} images of 8x8 pixels).")
    else:
        X, y = load_image_folder(args.dir)
        X, y = np.asarray(X, dtype=object), np.asarray(y)
    counts = Counter(y.tolist())
    print("Classes: " + ", ".join(f"{label} {n}" for label, n in sorted(counts.items())))
    if len(counts) < 2:
        raise ValueError(f"Need at least two classes to evaluate, found {len(counts)}.")
    start = time.perf_counter()
    pipe = make_pipeline(
        PretrainedFeatureExtractor(backbone=args.backbone, verbose=args.verbose),
        LogisticRegression(max_iter=2000),
    )
    cv = StratifiedKFold(args.cv, shuffle=True, random_state=0)
    scores = cross_validate(pipe, X, y, cv=cv, scoring=["accuracy", "balanced_accuracy"])
    elapsed = time.perf_counter() - start
    for metric in ("accuracy", "balanced_accuracy"):
        values = scores[f"test_{metric}"]
        print(f"{args.backbone} + logistic regression, {args.cv}-fold {metric}: {values.mean():.3f} ± {values.std():.3f}")
    print(f"Time: {elapsed:.1f} s (embeddings are cached: a second run is faster)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skorchlite", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser(
        "evaluate", help="cross-validate a pretrained backbone + logistic regression on an image folder"
    )
    evaluate.add_argument("dir", nargs="?", help="one sub-folder per class (default: scikit-learn's digits)")
    evaluate.add_argument("--backbone", default="efficientnet_lite0")
    evaluate.add_argument("--cv", type=int, default=5, help="stratified folds (default 5)")
    evaluate.add_argument("--verbose", type=int, default=1)
    evaluate.set_defaults(run=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args: Any = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        if args.debug:
            raise
        print(f"skorchlite: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
