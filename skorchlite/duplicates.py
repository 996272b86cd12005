"""Leakage guard: find duplicate images before splitting or cross-validating.

A copy of an image on both sides of a split (the same file twice, or a
resized or re-encoded copy) lets a model score by recognising it rather
than by generalising. :func:`find_duplicates` groups such copies so that
group-aware splitters (``GroupKFold``, ``StratifiedGroupKFold``,
:func:`skorchlite.datasets.train_val_test_split`) keep each group on one
side, and lists the copies whose labels disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from numbers import Real
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.base import clone

from .aligned_search import aligned_pairs
from .images import check_images, content_key, describe
from .names import plural
from .progress import progress_bar
from .validation import HasMethods, Interval, check_params

__all__ = ["DEFAULT_THRESHOLD", "Duplicates", "Pair", "find_duplicates"]

# Measured on BUSI (780 ultrasound images) and copies of them, see
# find_duplicates.
DEFAULT_THRESHOLD = 0.97
# The pixel check: each image squashed (whole, aspect ignored) to this many
# pixels a side in grey, then compared as _THUMB_SIDE thumbnails...
_PIXEL_SIZE = 64
# Below this shorter side, thumbnails hold too little detail to tell a copy
# from a look-alike: scikit-learn's 8x8 digits pair by the thousand. Such
# images are compared by exact content only.
MIN_NEAR_SIDE = 32
_THUMB_SIDE = 16
# ... against the thumbnails of the other's border crops: these fractions
# cut from (left, right), and from (top, bottom), up to 10 % in all. Steps
# of 2.5 %: at 3.3 % a cut photograph fell to 0.964, at 2.5 % it keeps 0.984.
_CUTS = [(a / 40, b / 40) for a in range(5) for b in range(5 - a)]
# The search bounds an image's crops by a ball around each group of crops
# that shift it alike: cut more from the left (top), about as much from each
# side, or more from the right (bottom). Nine small balls pass far fewer
# pairs than one ball around all crops (aligned_search.py).
_SHIFTS = np.digitize([low - high for low, high in _CUTS], [-0.03, 0.03])
_CUT_GROUPS = (3 * _SHIFTS[:, None] + _SHIFTS[None, :]).ravel()


class Pair(NamedTuple):
    """Two samples found to be copies of each other, ``i < j``."""

    i: int
    j: int
    similarity: float
    kind: str  # "exact": same content; "near": similarity >= threshold


@dataclass(frozen=True)
class Duplicates:
    """What :func:`find_duplicates` found.

    Attributes
    ----------
    groups : ndarray of shape (n_samples,), dtype int
        A group id per sample; copies share one, every other sample has its
        own. Ids are numbered 0, 1, ... in order of first appearance. Pass
        as ``groups=`` to ``GroupKFold``, ``StratifiedGroupKFold`` or
        :func:`skorchlite.datasets.train_val_test_split`.
    pairs : list of Pair
        Every pair ``(i, j, similarity, kind)`` found, sorted by ``(i, j)``;
        ``kind`` is ``"exact"`` (same content, similarity 1.0) or ``"near"``.
    conflicts : list of Pair
        The pairs whose labels differ (empty without ``y``).
    threshold : float
        The similarity at and above which images count as copies.
    names : list of str
        How the report names each sample (its path, or its description).
    labels : list or None
        The labels given as ``y``.

    Examples
    --------
    >>> found = Duplicates(
    ...     groups=np.array([0, 1, 0]), pairs=[Pair(0, 2, 1.0, "exact")], conflicts=[Pair(0, 2, 1.0, "exact")],
    ...     threshold=0.97, names=["a.png", "b.png", "copy of a.png"], labels=["cat", "dog", "dog"])
    >>> found.duplicate_groups()
    [array([0, 2])]
    >>> print(found.report())
    1 duplicate group (1 exact, 0 near) holding 2 of 3 images at similarity >= 0.97; 1 label conflict.
    <BLANKLINE>
    group 0: 2 images, exact (similarity 1.000), labels disagree
      [0] cat: a.png
      [2] dog: copy of a.png
    <BLANKLINE>
    Label conflicts (1 pair):
      exact, similarity 1.000:
        [0] cat: a.png
        [2] dog: copy of a.png
    """

    groups: np.ndarray
    pairs: list[Pair]
    conflicts: list[Pair]
    threshold: float
    names: list[str]
    labels: list[Any] | None

    def duplicate_groups(self) -> list[np.ndarray]:
        """The samples of each group with more than one, by group id.

        Returns
        -------
        list of ndarray of int
        """
        order = np.argsort(self.groups, kind="stable")
        _, starts, sizes = np.unique(self.groups[order], return_index=True, return_counts=True)
        return [order[start : start + size] for start, size in zip(starts, sizes, strict=True) if size > 1]

    def summary(self) -> str:
        """One line: how many duplicate groups of each kind, and label conflicts.

        A group is *exact* when all its samples have the same content, else
        *near*.

        Returns
        -------
        str
        """
        groups = self.duplicate_groups()
        exact = sum(self._kind(group) == "exact" for group in groups)
        conflicts = f"; {plural(len(self.conflicts), 'label conflict')}" if self.labels is not None else ""
        return (
            f"{plural(len(groups), 'duplicate group')} ({exact} exact, {len(groups) - exact} near) holding "
            f"{sum(map(len, groups))} of {len(self.groups)} images at similarity >= {self.threshold:g}"
            f"{conflicts}."
        )

    def report(self) -> str:
        """The summary, each duplicate group with its samples, and the label conflicts.

        Returns
        -------
        str
        """
        lines = [self.summary()]
        for group in self.duplicate_groups():
            similarities = [p.similarity for p in self._pairs_of[self.groups[group[0]]]]
            low, high = f"{min(similarities):.3f}", f"{max(similarities):.3f}"
            span = low if low == high else f"{low} to {high}"
            labels = {self.labels[i] for i in group} if self.labels is not None else set()
            disagree = ", labels disagree" if len(labels) > 1 else ""
            kind = f"{self._kind(group)} (similarity {span}){disagree}"
            lines += ["", f"group {self.groups[group[0]]}: {len(group)} images, {kind}"]
            lines += [f"  {self._name(i)}" for i in group]
        if self.conflicts:
            lines += ["", f"Label conflicts ({plural(len(self.conflicts), 'pair')}):"]
            for pair in self.conflicts:
                lines += [f"  {pair.kind}, similarity {pair.similarity:.3f}:"]
                lines += [f"    {self._name(pair.i)}", f"    {self._name(pair.j)}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def _name(self, i: int) -> str:
        label = f"{self.labels[i]!s}: " if self.labels is not None else ""
        return f"[{i}] {label}{self.names[i]}"

    @cached_property
    def _pairs_of(self) -> dict[int, list[Pair]]:
        """The pairs of each group id, indexed once for the report."""
        pairs_of: dict[int, list[Pair]] = {}
        for pair in self.pairs:
            pairs_of.setdefault(int(self.groups[pair.i]), []).append(pair)
        return pairs_of

    def _kind(self, group: np.ndarray) -> str:
        return "exact" if all(p.kind == "exact" for p in self._pairs_of[self.groups[group[0]]]) else "near"


def find_duplicates(
    X: Any, y: Any = None, threshold: float = DEFAULT_THRESHOLD, extractor: Any = None, verbose: int = 0
) -> Duplicates:
    """Find exact and near-duplicate images, and group them transitively.

    Exact duplicates share a :func:`skorchlite.images.content_key`: for
    paths that is the file's bytes, so two files with the same bytes match
    and a file never matches a decoded array of itself (that one is a near
    duplicate). Near duplicates are what copying does to an image: resized
    (to any aspect ratio), cut at the border, re-encoded, turned grey or
    colour, brightened, annotated. Each image is squashed whole to 64x64
    grey; two images are near duplicates when the correlation of their
    16x16 thumbnails reaches ``threshold`` once one of them is cut by up
    to 10 % at its border to line up with the other (225 cuts tried).
    Images under ``MIN_NEAR_SIDE`` (32) pixels on their shorter side are
    compared by exact content only: at that size distinct images look
    alike (scikit-learn's 8x8 digits chained 1,167 of 1,797 into groups).
    Pairs are merged transitively: if a ~ b and b ~ c, all three share a
    group even when a and c are less similar.

    Why: measured by ``benchmarks/duplicates.py`` on BUSI (780 ultrasound
    images; 120 of them copied under each perturbation of
    ``tests/perturbations.py``), against the images that are clearly
    different (32x32 grey correlation below 0.9 at their best alignment).
    *similarity* is this function's; *embedding* the cosine similarity of
    ``PretrainedFeatureExtractor(image_size=64)``, the detector before this
    one, with recall at 0.97:

    | copy of the original              | similarity: min, 5th pct | embedding: min, recall |
    | --------------------------------- | ------------------------ | ---------------------- |
    | resized, aspect ratio +-15 %      | 1.000, 1.000             | 0.804, 0.250           |
    | border cut, up to 10 %            | 0.981, 0.989             | 0.730, 0.083           |
    | JPEG quality 50-95                | 1.000, 1.000             | 0.984, 1.000           |
    | grey <-> RGB                      | 1.000, 1.000             | 0.672, 0.233           |
    | brightness, contrast +-15 %       | 0.999, 1.000             | 0.902, 0.917           |
    | caliper mark and text             | 0.992, 0.996             | 0.725, 0.283           |
    | re-exported as a JPEG square      | 1.000, 1.000             | 0.990, 1.000           |
    | cut, resized, brightened and JPEG | 0.976, 0.991             | 0.671, 0.008           |
    | different images: max             | 0.937                    | 0.949                  |

    At 0.97, between the most similar different images (0.937) and the
    least similar copy (0.976), every copy is found (recall 1.000; the
    embedding 0.472; pHash, which published dataset audits use, 0.895 at
    the largest Hamming distance, 9, that pairs no different images) and no
    clearly different images are paired, in 1.8 s for all of BUSI.

    The work grows about linearly with the number of images
    (:mod:`skorchlite.aligned_search`): each pair is screened on the 24
    principal axes of the thumbnails, against a ball around all of an
    image's crops and then around each of nine groups of them, with bounds
    that never drop a pair reaching ``threshold`` (two vectors of norm <= 1
    with dot product >= ``threshold`` are within ``sqrt(2 - 2 * threshold)``
    of each other, and projecting onto orthonormal axes only brings them
    closer); only the pairs that pass are aligned in full. The result is the
    one comparing every pair in full gives (to float32 rounding of the
    similarity). On synthetic scans (``benchmarks/duplicates.py
    --scaling``): 10,000 images in 6.8 s, 30,000 in 15.6 s and 100,000 in
    74 s; comparing every pair took 8.1 s for
    3,000. The first screen is the one step that sees every pair, at one
    product of 25 numbers and one comparison each; images that all look
    alike (a ``threshold`` far below 0.97, copies by the thousand) pass it
    more often and make the search slower, never less exact.

    Parameters
    ----------
    X : sequence of images
        Paths, PIL images or arrays, as :func:`skorchlite.images.check_images`
        accepts.
    y : array-like of shape (n_samples,), default=None
        Labels; pairs whose labels differ are reported as conflicts.
    threshold : float, default=0.97
        Similarity, in (0, 1], at and above which two images are near
        duplicates.
    extractor : scikit-learn transformer, default=None
        Optionally, a second detector: ``extractor`` (cloned, fitted) maps
        ``X`` to one vector per image, and images whose vectors have cosine
        similarity ``>= threshold`` are near duplicates too; where both
        detectors pair two images, the higher similarity is reported. With
        ``PretrainedFeatureExtractor(image_size=64)`` it adds no pair on
        BUSI that the pixel check misses (measured), and like the pixel
        check it misses mirrored or rotated copies (cosine 0.53 to 0.91 on
        ten BUSI images): it is for an embedding made for copy detection.
    verbose : int, default=0
        ``1`` shows progress bars (reading, comparing) on a terminal,
        ``2`` anywhere, ``0`` none.

    Returns
    -------
    Duplicates
        ``groups`` for group-aware splitting, the ``pairs`` found, the label
        ``conflicts``, and ``report()`` to print them.

    Raises
    ------
    ValueError
        For a threshold outside (0, 1], ``y`` of another length than ``X``,
        or an image that cannot be read.

    Examples
    --------
    >>> from PIL import Image
    >>> from sklearn.datasets import load_sample_images
    >>> china, flower = load_sample_images().images
    >>> smaller = np.asarray(Image.fromarray(china).resize((512, 342)))
    >>> cut = china[20:, 30:]
    >>> found = find_duplicates([china, flower, smaller, china, cut], y=["palace", "flower", "palace", "temple", "palace"])
    >>> found.groups
    array([0, 1, 0, 0, 0])
    >>> [(p.i, p.j, p.kind) for p in found.conflicts]
    [(0, 3, 'exact'), (2, 3, 'near'), (3, 4, 'near')]
    >>> found.summary()
    '1 duplicate group (0 exact, 1 near) holding 4 of 5 images at similarity >= 0.97; 3 label conflicts.'
    """
    check_params(
        {"threshold": threshold, "extractor": extractor, "verbose": verbose},
        {
            "threshold": [Interval(Real, 0, 1, closed="right")],
            "extractor": [HasMethods(["fit_transform"]), None],
            "verbose": ["verbose"],
        },
        "find_duplicates",
        notes={"threshold": "It is a similarity: images at or above it are near duplicates."},
    )
    samples = check_images(X)
    n = len(samples)
    labels = None if y is None else np.asarray(y).tolist()
    if labels is not None and len(labels) != n:
        raise ValueError(f"X has {n} images but y has {len(labels)} labels.")
    keys = [content_key(sample, i) for i, sample in enumerate(samples)]
    near = _pixel_pairs(samples, threshold, verbose)
    if extractor is not None:
        vectors = _unit(np.asarray(clone(extractor).fit_transform(X), dtype=np.float32))
        near = _merge(
            near,
            _near_pairs(
                aligned_pairs(vectors, lambda rows: vectors[rows, None], threshold, np.zeros(1, np.int64), verbose)
            ),
        )
    pairs = sorted(_exact_pairs(keys) + [p for p in near if keys[p.i] != keys[p.j]])
    edges = np.array([(p.i, p.j) for p in pairs], dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    # Components are numbered by their first sample, the order the report uses.
    _, groups = connected_components(graph, directed=False)
    conflicts = [p for p in pairs if labels is not None and labels[p.i] != labels[p.j]]
    names = [str(sample) if isinstance(sample, Path) else describe(sample, i) for i, sample in enumerate(samples)]
    return Duplicates(groups.astype(np.int64), pairs, conflicts, float(threshold), names, labels)


def _exact_pairs(keys: list[str]) -> list[Pair]:
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    return [Pair(a, b, 1.0, "exact") for same in by_key.values() for k, a in enumerate(same) for b in same[k + 1 :]]


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Each row at unit norm; a zero vector is similar to nothing, rather than a division by zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def _merge(*found: list[Pair]) -> list[Pair]:
    """The pairs found by any detector, each once, at its highest similarity."""
    best: dict[tuple[int, int], Pair] = {}
    for pair in (p for pairs in found for p in pairs):
        if (pair.i, pair.j) not in best or pair.similarity > best[pair.i, pair.j].similarity:
            best[pair.i, pair.j] = pair
    return list(best.values())


def _pixel_pairs(samples: list[Any], threshold: float, verbose: int) -> list[Pair]:
    """Pairs whose grey thumbnails correlate at ``threshold`` or more once
    one is cropped to line up with the other (a copy cut at the border)."""
    grey, large = _grey_squares(samples, verbose)
    # Images too small to compare are similar to nothing (zero rows).
    grey[~large] = 0.0
    return _grey_pairs(grey, threshold, verbose)


def _grey_pairs(grey: np.ndarray, threshold: float, verbose: int) -> list[Pair]:
    """:func:`_pixel_pairs` on the (n, side, side) grey squares."""
    whole = _unit_rows(_thumbnails(grey, [(0.0, 0.0)]))[:, 0]

    def crops_of(rows: slice) -> np.ndarray:
        return _unit_rows(_thumbnails(grey[rows], _CUTS))

    return _near_pairs(aligned_pairs(whole, crops_of, threshold, _CUT_GROUPS, verbose))


def _near_pairs(similarities: dict[tuple[int, int], float]) -> list[Pair]:
    return [Pair(i, j, min(similarity, 1.0), "near") for (i, j), similarity in similarities.items()]


def _grey_squares(samples: list[Any], verbose: int) -> tuple[np.ndarray, np.ndarray]:
    """Every sample decoded by the engine, squashed whole to a square, in grey
    (n, side, side), and whether each is at least ``MIN_NEAR_SIDE`` on its
    shorter side."""
    from .backbones import Preprocessing
    from .engine import decode_workers, prepared_batches

    squash = Preprocessing(
        crop_size=_PIXEL_SIZE, resize_size=_PIXEL_SIZE, interpolation="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3
    )
    batches = prepared_batches(
        samples, range(len(samples)), squash, batch_size=64, workers=decode_workers(None), squash=True
    )
    grey = np.empty((len(samples), _PIXEL_SIZE, _PIXEL_SIZE), dtype=np.float32)
    large = np.empty(len(samples), dtype=bool)
    with progress_bar(len(samples), verbose, "reading") as bar:
        for rows, items in batches:
            large[rows] = [min(item.size) >= MIN_NEAR_SIDE for item in items]
            # ITU-R 601 luma, as Pillow's convert("L"): an RGB copy of a grey image matches it.
            grey[rows] = np.stack([item.pixels for item in items]) @ np.array([0.299, 0.587, 0.114], np.float32)
            bar.update(len(items))
    return grey, large


def _thumbnails(grey: np.ndarray, cuts: list[tuple[float, float]]) -> np.ndarray:
    """Box-filtered thumbnails of each image's border crops (n, len(cuts) ** 2, side * side)."""
    n, side, thumb, count = len(grey), grey.shape[-1], _THUMB_SIDE, len(cuts)
    # Each crop box as a (thumb, side) matrix that area-averages its pixels,
    # all of them stacked: (count * thumb, side).
    weights = np.concatenate([_box_weights(side, thumb, side * low, side * (1 - high)) for low, high in cuts])
    # weights @ image @ weights.T for every (top/bottom, left/right) cut, as
    # two 2-D products over all images (numpy's batched matmul and einsum
    # are many times slower).
    rows = weights @ grey.transpose(1, 0, 2).reshape(side, n * side)  # (count * thumb, n * side)
    rows = rows.reshape(count * thumb, n, side).transpose(1, 0, 2).reshape(n * count * thumb, side)
    out = (rows @ weights.T).reshape(n, count, thumb, count, thumb).transpose(0, 1, 3, 2, 4)
    return out.reshape(n, count * count, thumb * thumb)


def _box_weights(side: int, thumb: int, low: float, high: float) -> np.ndarray:
    """(thumb, side) weights averaging pixels [low, high) of a line into ``thumb`` equal cells."""
    edges = low + (high - low) * np.arange(thumb + 1) / thumb
    pixel = np.arange(side)
    # Overlap of each cell [edges[k], edges[k+1]) with each pixel [p, p+1).
    overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def _unit_rows(thumbs: np.ndarray) -> np.ndarray:
    """``thumbs`` at zero mean and unit norm along the last axis, in place (the
    crops of 100,000 images are 23 GB: no second copy); a flat image stays
    zero, similar to nothing."""
    thumbs -= thumbs.mean(axis=-1, keepdims=True)
    norms = np.sqrt(np.einsum("...i,...i->...", thumbs, thumbs))[..., None]
    thumbs /= np.maximum(norms, 1e-6)
    return thumbs
