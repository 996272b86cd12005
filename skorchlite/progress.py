"""Progress bars (tqdm) for long loops: extraction, epochs, folds."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(total: int, verbose: int, desc: str, min_total: int = 0) -> Any:
    """A tqdm bar shown when ``verbose`` and ``total >= min_total``.

    Examples
    --------
    >>> with progress_bar(3, verbose=0, desc="demo") as bar:
    ...     bar.update(3)
    """
    return tqdm(total=total, disable=not verbose or total < min_total, unit="img", desc=desc, leave=False)
