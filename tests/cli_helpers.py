"""Small image folders for the command line's tests (tests/test_attacks_cli_*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def image_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """A folder of class folders of 32x32 PNGs named 0.png, 1.png...; each class a band of brightness.

    Parameters
    ----------
    root : Path
        Created.
    counts : dict of str to int
        Images per class, in the order of the bands (darkest first).
    seed : int, default=0

    Returns
    -------
    Path
        ``root``.
    """
    rng = np.random.default_rng(seed)
    for k, (label, n) in enumerate(counts.items()):
        (root / label).mkdir(parents=True)
        low = 200 * k // max(len(counts) - 1, 1)
        for i in range(n):
            Image.fromarray(rng.integers(low, low + 56, (32, 32, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root
