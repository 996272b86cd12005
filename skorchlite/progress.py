"""Progress bars (tqdm) for long loops: extraction, epochs, folds."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["in_notebook", "progress_bar"]


def progress_bar(
    total: int, verbose: int, desc: str, min_total: int = 0, unit: str = "img", scale: bool = False
) -> Any:
    """A tqdm bar, shown when asked and worth showing.

    ``verbose=1`` shows it on a terminal and in a Jupyter notebook (where
    :mod:`tqdm.auto` draws a widget, or a text bar without ipywidgets), not
    in a log file or CI output (no carriage-return clutter); ``verbose>=2``
    shows it anywhere; loops shorter than ``min_total`` get none.
    ``scale=True`` counts in k, M, G (of 1024: bytes).

    Examples
    --------
    >>> with progress_bar(3, verbose=0, desc="demo") as bar:
    ...     bar.update(3)
    """
    hidden = verbose <= 0 or total < min_total or (verbose == 1 and not (sys.stderr.isatty() or in_notebook()))
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


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel, whose stderr is no terminal but
    shows progress bars (as :mod:`tqdm.autonotebook` tells: IPython is loaded
    and its shell runs in an ``IPKernelApp``).

    Examples
    --------
    >>> in_notebook()
    False
    """
    ipython = sys.modules.get("IPython")  # never imported here: only a running IPython has loaded it
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    try:
        return shell is not None and "IPKernelApp" in shell.config
    except (AttributeError, TypeError):
        return False
