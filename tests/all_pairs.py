"""The duplicate search before issue 24: every crop of every image against
every whole image, no screen.

The reference that tests/test_duplicates.py checks the screened search
against, and the "before" that ``benchmarks/duplicates.py --scaling`` times
(it puts tests/ on its path).
"""

from __future__ import annotations

import numpy as np

from skorchlite import aligned_search, duplicates


def all_pairs(grey: np.ndarray, threshold: float, dtype: type = np.float64) -> dict[tuple[int, int], float]:
    """Every pair ``(i, j)``, ``i < j``, of the (n, 64, 64) grey squares whose
    best alignment reaches ``threshold``, with its similarity.

    ``dtype=np.float32`` compares as the search before issue 24 did, in
    blocks of rows; ``np.float64`` as the screened search's last step does.
    """
    n = len(grey)
    whole = duplicates._unit_rows(duplicates._thumbnails(grey, [(0.0, 0.0)]))[:, 0].astype(dtype)
    rows = max(1, aligned_search._BLOCK_ELEMENTS // (n * len(duplicates._CUTS) ** 2))
    found: dict[tuple[int, int], float] = {}
    for start in range(0, n, rows):
        crops = duplicates._unit_rows(duplicates._thumbnails(grey[start : start + rows], duplicates._CUTS))
        block = (crops.astype(dtype) @ whole.T).max(axis=1)
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -1
        for a, b in zip(*np.nonzero(block >= threshold), strict=True):
            pair = (min(start + int(a), int(b)), max(start + int(a), int(b)))
            found[pair] = max(found.get(pair, -1.0), min(float(block[a, b]), 1.0))
    return found
