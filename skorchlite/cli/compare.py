"""``skorchlite compare``: every transfer-learning strategy on one folder, nested and grouped."""

from __future__ import annotations

import argparse

import numpy as np

from .apart import check_cache_apart
from .inputs import class_table, load_folder
from .output import CommandError


def compare_command(args: argparse.Namespace) -> int:
    """``skorchlite compare DIR``: :func:`skorchlite.strategies.compare_strategies` on a folder.

    Prints a line per strategy and outer fold as it finishes, then the
    ranked table and which strategy to use. With fine-tuning among the
    strategies, it is the comparison's ``baseline``.
    """
    from ..strategies import compare_strategies, default_strategies

    check_cache_apart({"the input DIR": args.dir})
    X, y = load_folder(args.dir)
    print(class_table(y))
    if len(np.unique(y)) < 2:
        raise CommandError(f"need at least two classes to compare strategies, found {len(np.unique(y))}")
    try:
        strategies = default_strategies(args.backbone, finetune=args.finetune, image_size=args.image_size)
    except ValueError as err:
        raise CommandError(str(err)) from err
    groups = "duplicates" if args.group_duplicates else None
    log = print if args.verbose else None
    # default_strategies puts the fine-tuner last: the recipe recommended
    # without a comparison, kept unless a frozen one leads it significantly.
    baseline = strategies[-1].name if args.finetune else None
    result = compare_strategies(
        X, y, strategies, groups=groups, cv=args.cv, inner_cv=args.inner_cv, baseline=baseline, log=log
    )
    print()
    print(result)
    return 0
