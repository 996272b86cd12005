"""Progress bars (tqdm) for long loops: extraction, epochs, folds."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(
    total: int, verbose: int, desc: str, min_total: int = 0, unit: str = "img", scale: bool = False
) -> Any:
    """A tqdm bar on stderr, shown when asked and worth showing.

    ``verbose=1`` shows it on a terminal only (a log file or CI output gets
    no carriage-return clutter); ``verbose>=2`` shows it anywhere; loops
    shorter than ``min_total`` get none. ``scale=True`` counts in k, M, G
    (of 1024: bytes).

    Examples
    --------
    >>> with progress_bar(3, verbose=0, desc="demo") as bar:
    ...     bar.update(3)
    """
    hidden = verbose <= 0 or total < min_total or (verbose == 1 and not sys.stderr.isatty())
    return tqdm(
        total=total,
        disable=hidden,
        unit=unit,
        unit_scale=scale,
        unit_divisor=1024,
        desc=desc,
        leave=False,
        file=sys.stderr,
    )
