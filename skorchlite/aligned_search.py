"""The search behind :func:`skorchlite.duplicates.find_duplicates`: pairs
of images whose vectors align, found without comparing every pair in full.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .progress import progress_bar

__all__ = ["aligned_pairs"]

# The screen compares this many matrix elements at a time (64 MB of
# float32), so memory stays bounded however many images there are...
_BLOCK_ELEMENTS = 1 << 24
# ... for at most this many images, whose crops it holds (230 kB each).
_BLOCK_IMAGES = 128
# The screens compare images on this many principal axes of their vectors:
# on synthetic scans, fewer axes pass more pairs, and more axes pass no
# fewer (the crops of an image spread further apart).
_SCREEN_AXES = 24
# The screens run in float32: a dot product of 256 terms of vectors of norm
# <= 1 errs by under 256 float32 roundings (1.6e-5), a distance between two
# projections on 24 axes by under 2 * sqrt(24) * 1.6e-5 < 2e-4; this much
# more radius keeps every pair that the full float64 comparison keeps.
_SLACK = 1e-3


def aligned_pairs(
    whole: np.ndarray,
    crops_of: Callable[[slice], np.ndarray],
    threshold: float,
    groups: np.ndarray,
    verbose: int,
) -> dict[tuple[int, int], float]:
    """The pairs ``(i, j)``, ``i < j``, where some crop of one has dot product
    ``>= threshold`` with the whole of the other, and that dot product (the
    better of the two alignments).

    ``whole`` holds one vector per image (n, d), ``crops_of(rows)`` the crops
    of those images (rows, crops, d), ``groups`` a group number per crop
    (crops that lie close together); every vector has unit norm, or less.
    Three screens on principal axes drop the pairs that
    cannot reach ``threshold``, with bounds that never drop one that can;
    the pairs left are compared in full (float64). Only the first screen
    sees every pair, at one product of 25 numbers and one comparison each.
    """
    n = len(whole)
    axes = _principal_axes(whole)
    projected = whole @ axes
    lifted = np.hstack([projected, -0.5 * np.einsum("ij,ij->i", projected, projected)[:, None]])
    # <c, w> >= t implies |c - w|^2 = |c|^2 + |w|^2 - 2 <c, w> <= 2 - 2 t
    # for norms <= 1 (divided by their norm, they exceed it by a few float32
    # roundings at most, which _SLACK covers).
    reach = np.sqrt(max(2 - 2 * threshold, 0.0)) + _SLACK
    step = max(1, min(_BLOCK_IMAGES, _BLOCK_ELEMENTS // n))
    found: dict[tuple[int, int], float] = {}
    with progress_bar(n, verbose, "comparing") as bar:
        for start in range(0, n, step):
            crops = crops_of(slice(start, start + step))
            spots = (crops.reshape(-1, crops.shape[-1]) @ axes).reshape(*crops.shape[:2], -1)
            # Screen 1, every pair: one ball around all of an image's projected crops.
            centres, radii = _balls(spots, np.zeros(len(groups), dtype=np.int64))
            passed = _within(centres[:, 0], reach + radii[:, 0], lifted)
            passed[np.arange(len(crops)), np.arange(start, start + len(crops))] = False
            rows, columns = _sparse_nonzero(passed)
            ends = np.searchsorted(rows, np.arange(len(crops) + 1))
            # Screens 2 to 4, an image at a time: a ball around each group of
            # its crops, then every projected crop, then the full vectors.
            centres, radii = _balls(spots, groups)
            for row in np.flatnonzero(np.diff(ends)):
                others = columns[ends[row] : ends[row + 1]]
                near = _within(centres[row], reach + radii[row], lifted[others])
                others = others[near.any(axis=0)]
                near = _within(spots[row], np.full(len(spots[row]), reach), lifted[others])
                others = others[near.any(axis=0)]
                if len(others):
                    best = _best_alignment(crops[row], whole[others])
                    for j, similarity in zip(others, best, strict=True):
                        if similarity >= threshold:
                            pair = min(start + int(row), int(j)), max(start + int(row), int(j))
                            found[pair] = max(found.get(pair, -1.0), float(similarity))
            bar.update(len(crops))
    return found


def _sparse_nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-D mask that is almost all False, in row order.

    Screen 1 makes a mask for every pair and keeps few of them: eight False
    at a time are skipped as one 64-bit word, where ``np.nonzero`` looks at
    every element.
    """
    flat = mask.reshape(-1)
    whole_words = flat.size // 8 * 8
    words = np.flatnonzero(flat[:whole_words].view(np.uint64))
    flat_indices = np.concatenate([(words[:, None] * 8 + np.arange(8)).ravel(), np.arange(whole_words, flat.size)])
    flat_indices = flat_indices[flat[flat_indices]]
    return np.divmod(flat_indices, mask.shape[1])


def _balls(spots: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre (m, g, k) and radius (m, g) of the ball holding each group of
    each image's projected crops (m, crops, k)."""
    members = [spots[:, groups == group] for group in range(int(groups.max()) + 1)]
    centres = np.stack([member.mean(axis=1) for member in members], axis=1)
    radii = [np.linalg.norm(member - centres[:, [g]], axis=-1).max(axis=1) for g, member in enumerate(members)]
    return centres, np.stack(radii, axis=1)


def _within(points: np.ndarray, radii: np.ndarray, lifted: np.ndarray) -> np.ndarray:
    """Whether each projected vector ``x`` lies within ``radii`` of each point
    ``p`` (q, k), as a (q, m) mask.

    ``lifted`` holds each ``x`` followed by ``-|x|^2 / 2`` (m, k + 1):
    ``|p - x|^2 <= r^2`` is ``<p, x> - |x|^2 / 2 >= (|p|^2 - r^2) / 2``, one
    matrix product and one comparison, both in float32.
    """
    scores = np.hstack([points, np.ones((len(points), 1), np.float32)]) @ lifted.T
    bound = 0.5 * (np.einsum("ij,ij->i", points, points) - radii**2)
    return scores >= bound.astype(np.float32)[:, None]


def _best_alignment(crops: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """The highest dot product of any of the (crops, d) with each of the (m, d), in float64."""
    return (crops.astype(np.float64) @ whole.T.astype(np.float64)).max(axis=0)


def _principal_axes(vectors: np.ndarray) -> np.ndarray:
    """Up to ``_SCREEN_AXES`` orthonormal directions (d, k) along which the
    vectors differ most, from at most 10,000 of them."""
    sample = vectors[:: max(1, len(vectors) // 10_000)].astype(np.float64)
    centred = sample - sample.mean(axis=0)
    _, directions = np.linalg.eigh(centred.T @ centred)  # by increasing variance
    return np.ascontiguousarray(directions[:, ::-1][:, :_SCREEN_AXES], dtype=np.float32)
