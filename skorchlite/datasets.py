"""Image datasets as (paths, labels), ready for scikit-learn: loading, class
counts, and a stratified (optionally grouped) train/validation/test split."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from .labels import check_labels
from .names import columns, pad, shorten_all, visible
from .private_api import num_samples, safe_indexing
from .validation import check_params

__all__ = ["IMAGE_EXTENSIONS", "ClassCounts", "load_image_folder", "summarize", "train_val_test_split"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# A data set's own documentation, beside or inside its class folders (BUSI
# has a README.md): skipped without a warning. A name with an image's
# extension is never documentation, so no image is dropped quietly.
_DOCUMENTATION_SUFFIXES = frozenset({".md", ".txt", ".rst"})
_DOCUMENTATION_STEMS = frozenset({"readme", "license", "licence", "copying", "notice", "citation", "authors"})
# How many skipped files the warning names; the count covers all of them.
_NAMED_SKIPPED = 5
# Longest class name in a ClassCounts table, in characters; longer ones are
# shortened there and given in full under it.
_TABLE_NAME_WIDTH = 40


def load_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read a folder with one sub-folder of images per class.

    Image files are recognised by extension (``IMAGE_EXTENSIONS``, any case).
    Hidden files and folders (names starting with '.') and the data set's
    documentation (``README``, ``LICENSE``, ``CITATION``... and ``.md``,
    ``.txt``, ``.rst`` files) are skipped silently; other entries that
    cannot be used (other files, folders inside a class folder, anything
    directly in ``root`` but the class folders) are skipped with a warning.

    Parameters
    ----------
    root : str or path-like
        The folder; each sub-folder's name is the label of its images.

    Returns
    -------
    paths : list of str
        ``str(Path(root) / class_name / file_name)`` for each image, sorted
        by class name, then file name.
    labels : list of str
        The class name of each image.

    Raises
    ------
    ValueError
        When ``root`` does not exist or is not a directory, has no class
        folders, or a class folder has no images.

    Warns
    -----
    UserWarning
        When files were skipped, with their count and the first few names.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> tmp = tempfile.TemporaryDirectory()
    >>> for name in ("cat/1.png", "cat/2.png", "dog/1.jpg"):
    ...     (Path(tmp.name) / name).parent.mkdir(exist_ok=True)
    ...     Image.new("RGB", (8, 8)).save(Path(tmp.name) / name)
    >>> paths, labels = load_image_folder(tmp.name)
    >>> labels
    ['cat', 'cat', 'dog']
    >>> [Path(p).name for p in paths]
    ['1.png', '2.png', '1.jpg']
    >>> tmp.cleanup()
    """
    root = Path(root)
    if not root.exists():
        raise ValueError(f"Image folder {str(root)!r} does not exist.")
    if not root.is_dir():
        raise ValueError(f"Image folder {str(root)!r} is not a directory.")
    class_dirs: list[Path] = []
    skipped: list[Path] = []  # files directly in root have no class
    for entry in _visible(root):
        (class_dirs if entry.is_dir() else skipped).append(entry)
    if not class_dirs:
        raise ValueError(
            f"Image folder {str(root)!r} has no class folders; expected one sub-folder of images "
            f"per class, e.g. {str(root / 'cat' / '1.png')!r}."
        )
    paths: list[str] = []
    labels: list[str] = []
    for class_dir in class_dirs:
        images: list[Path] = []
        for entry in _visible(class_dir):
            (images if _is_image(entry) else skipped).append(entry)
        if not images:
            raise ValueError(
                f"Class folder {str(class_dir)!r} has no images (recognised extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
        paths += [str(image) for image in images]
        labels += [class_dir.name] * len(images)
    if skipped:
        named = ", ".join(repr(str(entry.relative_to(root))) for entry in skipped[:_NAMED_SKIPPED])
        warnings.warn(
            f"Image folder {str(root)!r}: skipped {len(skipped)} of its entries, which are not image "
            f"files inside a class folder: {named}{', ...' if len(skipped) > _NAMED_SKIPPED else ''}",
            UserWarning,
            stacklevel=2,
        )
    return paths, labels


def _visible(folder: Path) -> list[Path]:
    """Entries neither hidden nor documentation, sorted by name so that results do not depend on the filesystem."""
    entries = (entry for entry in folder.iterdir() if not entry.name.startswith(".") and not _is_documentation(entry))
    return sorted(entries, key=lambda entry: entry.name)


def _is_documentation(entry: Path) -> bool:
    """A file named as a data set's documentation, unless its extension is an image's (readme.png is loaded)."""
    name, suffix = entry.name.lower(), entry.suffix.lower()
    documented = suffix in _DOCUMENTATION_SUFFIXES or name.split(".", 1)[0] in _DOCUMENTATION_STEMS
    return documented and suffix not in IMAGE_EXTENSIONS and entry.is_file()


def _is_image(entry: Path) -> bool:
    return entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file()


class ClassCounts(dict):
    """Samples per class in one or more parts of a dataset, printed as a table.

    A dict of class -> tuple of counts, one per part, classes in sorted
    order; ``str()`` gives an aligned table with each count's share of its
    part and a total row. Class names are shown in their visible form
    (:func:`skorchlite.names.visible`); one longer than 40 characters is
    shortened in the table and given in full under it.

    Parameters
    ----------
    counts : mapping
        Class -> sequence of counts, one per part.
    parts : sequence of str
        The parts' names, the table's column headers.

    Attributes
    ----------
    parts : tuple of str

    Examples
    --------
    >>> counts = ClassCounts({"cat": (6, 1), "dog": (2, 1)}, parts=("train", "test"))
    >>> counts["cat"], counts.totals
    ((6, 1), (8, 2))
    >>> print(counts)
    class  train   share  test   share
    cat        6   75.0%     1   50.0%
    dog        2   25.0%     1   50.0%
    total      8  100.0%     2  100.0%
    """

    def __init__(self, counts: Mapping[Any, Sequence[int]], parts: Sequence[str]):
        super().__init__((label, tuple(int(n) for n in row)) for label, row in counts.items())
        self.parts = tuple(parts)

    @property
    def totals(self) -> tuple[int, ...]:
        """The number of samples in each part."""
        return tuple(sum(row[k] for row in self.values()) for k in range(len(self.parts)))

    def __str__(self) -> str:
        header = ["class"] + [cell for part in self.parts for cell in (part, "share")]
        names = shorten_all(self, _TABLE_NAME_WIDTH)
        rows = [[name, *_count_cells(row, self.totals)] for name, row in zip(names, self.values(), strict=True)]
        rows.append(["total", *_count_cells(self.totals, self.totals)])
        widths = [max(columns(row[c]) for row in [header, *rows]) for c in range(len(header))]
        lines = [
            "  ".join(
                [
                    pad(row[0], widths[0], "<"),
                    *(pad(cell, width) for cell, width in zip(row[1:], widths[1:], strict=True)),
                ]
            )
            for row in [header, *rows]
        ]
        shortened = [(name, visible(label)) for name, label in zip(names, self, strict=True) if name != visible(label)]
        if shortened:
            lines += ["In full:", *(f"  {name} = {full}" for name, full in shortened)]
        return "\n".join(lines)


def _count_cells(counts: Sequence[int], totals: Sequence[int]) -> list[str]:
    """Count and share-of-part cells; a share of an empty part is '-'."""
    return [
        cell for n, total in zip(counts, totals, strict=True) for cell in (str(n), f"{n / total:.1%}" if total else "-")
    ]


def summarize(labels: Any) -> ClassCounts:
    """Count the samples of each class.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        One label per sample, e.g. from :func:`load_image_folder`.

    Returns
    -------
    ClassCounts
        Class -> ``(count,)``, classes sorted; ``print()`` it for a table of
        counts and shares with a total row.

    Raises
    ------
    ValueError
        When ``labels`` is empty or not one-dimensional.

    Examples
    --------
    >>> counts = summarize(["benign", "normal", "benign", "malignant", "benign"])
    >>> counts["benign"]
    (3,)
    >>> print(counts)
    class      count   share
    benign         3   60.0%
    malignant      1   20.0%
    normal         1   20.0%
    total          5  100.0%
    """
    labels = _check_labels(labels)
    classes, counts = np.unique(labels, return_counts=True)
    return ClassCounts(dict(zip(classes.tolist(), ([n] for n in counts), strict=True)), parts=("count",))


def train_val_test_split(
    X: Any,
    y: Any,
    sizes: Sequence[float] = (0.70, 0.15, 0.15),
    stratify: bool = True,
    random_state: int | np.random.RandomState | None = None,
    groups: Any = None,
) -> tuple[Any, Any, Any, Any, Any, Any, ClassCounts]:
    """Split samples into train, validation and test parts in one call.

    Rounding: each class (all samples when ``stratify=False``) of ``n``
    samples is divided by largest remainders. Part ``k`` first gets
    ``floor(n * sizes[k])`` samples; the (at most two) samples left over go
    to the parts with the largest fractional remainders, ties to the later part
    (test before validation before train). Each part is therefore within one
    sample of its exact share and no sample is lost. On BUSI the defaults
    give benign 306/65/66, malignant 147/31/32, normal 93/20/20.

    With ``groups``, whole groups go to one part: they are dealt largest
    first, in random order among equal sizes, each to the part furthest
    below its target, so the counts match the rule above when all groups
    are single samples and come close otherwise. A group is stratified by
    its most frequent class (the first in sorted order on a tie).

    Parameters
    ----------
    X : list, array or pandas object of shape (n_samples, ...)
        The samples, e.g. image paths; sliced with
        ``sklearn.utils._safe_indexing``.
    y : array-like of shape (n_samples,)
        Class labels.
    sizes : sequence of three floats, default=(0.70, 0.15, 0.15)
        The train, validation and test fractions: non-negative, summing to
        1. A size of 0 leaves that part empty.
    stratify : bool, default=True
        Keep each class's share the same in every part.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle; pass an int for the same split on every call.
    groups : array-like of shape (n_samples,), default=None
        Group labels such as patient ids or
        :attr:`skorchlite.duplicates.Duplicates.groups`; samples of one
        group never end up in two parts.

    Returns
    -------
    X_train, X_val, X_test : same kind as X
        The parts, each in shuffled order.
    y_train, y_val, y_test : same kind as y
    counts : ClassCounts
        Class -> ``(train, val, test)`` counts; ``print()`` it for a table.

    Raises
    ------
    ValueError
        When ``sizes`` are not three non-negative numbers summing to 1,
        ``X``, ``y`` and ``groups`` differ in length, ``y`` is empty or not
        one-dimensional, or a class (with ``stratify=False``: the data) is
        too small to give each part with a positive size at least one
        sample.

    See Also
    --------
    skorchlite.duplicates.find_duplicates : Groups of duplicate images, for ``groups``.

    Examples
    --------
    >>> X = [f"img{i}.png" for i in range(20)]
    >>> y = ["cat"] * 10 + ["dog"] * 10
    >>> X_train, X_val, X_test, y_train, y_val, y_test, counts = train_val_test_split(
    ...     X, y, sizes=(0.6, 0.2, 0.2), random_state=0)
    >>> len(X_train), len(X_val), len(X_test)
    (12, 4, 4)
    >>> print(counts)
    class  train   share  val   share  test   share
    cat        6   50.0%    2   50.0%     2   50.0%
    dog        6   50.0%    2   50.0%     2   50.0%
    total     12  100.0%    4  100.0%     4  100.0%
    """
    check_params(
        {"stratify": stratify, "random_state": random_state},
        {"stratify": ["boolean"], "random_state": ["random_state"]},
        "train_val_test_split",
    )
    # What no constraint can say: three fractions that sum to 1.
    fractions = _check_sizes(sizes)
    labels = _check_labels(y)
    n_samples = num_samples(X)
    if n_samples != len(labels):
        raise ValueError(f"X has {n_samples} samples but y has {len(labels)} labels.")
    classes, class_of = np.unique(labels, return_inverse=True)
    if groups is None:
        group_of = np.arange(n_samples)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n_samples,):
            raise ValueError(f"groups has shape {groups.shape}; expected one group per sample, ({n_samples},).")
        group_of = np.unique(groups, return_inverse=True)[1]
    # classes_in_group[g, c]: how many samples of class c group g holds.
    classes_in_group = np.zeros((group_of.max() + 1, len(classes)), dtype=np.int64)
    np.add.at(classes_in_group, (group_of, class_of), 1)
    rng = check_random_state(random_state)
    strata = classes_in_group.argmax(axis=1) if stratify else np.zeros(len(classes_in_group), dtype=np.int64)
    part_of_group = np.empty(len(classes_in_group), dtype=np.int64)
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        group_sizes = classes_in_group[members].sum(axis=1)
        order = np.argsort(-group_sizes, kind="stable")
        part_of_group[members[order]] = _deal(group_sizes[order], fractions)
        filled = np.bincount(part_of_group[members], weights=group_sizes, minlength=3).astype(int)
        if np.any((fractions > 0) & (filled == 0)):
            who = f"class {classes[stratum].item()!r}" if stratify else "the data"
            in_groups = f" in {len(members)} groups" if groups is not None else ""
            remedy = "Merge or drop rare classes, pass stratify=False, or give" if stratify else "Give"
            given = tuple(np.asarray(sizes, dtype=float).tolist())
            raise ValueError(
                f"{who} has {group_sizes.sum()} samples{in_groups}, which sizes={given} split as "
                f"train {filled[0]}, val {filled[1]}, test {filled[2]}; every part with a positive size "
                f"needs at least one. {remedy} a part size 0."
            )
    part_of = part_of_group[group_of]
    # One shuffle of all samples orders every part, as sklearn's splitters do.
    shuffled = rng.permutation(n_samples)
    parts = [shuffled[part_of[shuffled] == k] for k in range(3)]
    counts = ClassCounts(
        dict(
            zip(
                classes.tolist(),
                zip(*(np.bincount(class_of[p], minlength=len(classes)) for p in parts), strict=True),
                strict=True,
            )
        ),
        parts=("train", "val", "test"),
    )
    X_parts = [safe_indexing(X, p) for p in parts]
    y_parts = [safe_indexing(y, p) for p in parts]
    return (*X_parts, *y_parts, counts)


def _check_sizes(sizes: Sequence[float]) -> np.ndarray:
    try:
        fractions = np.asarray(sizes, dtype=float)
    except (TypeError, ValueError):
        fractions = None
    if (
        fractions is None
        or fractions.shape != (3,)
        or not np.all(np.isfinite(fractions))
        or np.any(fractions < 0)
        or not math.isclose(fractions.sum(), 1, abs_tol=1e-6)
    ):
        raise ValueError(f"sizes must be three non-negative fractions (train, val, test) summing to 1, got {sizes!r}.")
    return fractions / fractions.sum()


def _check_labels(y: Any) -> np.ndarray:
    labels = check_labels(y, "labels")
    if len(labels) == 0:
        raise ValueError("labels are empty: there are no samples.")
    return labels


def _apportion(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` by largest remainders, ties to the later part.

    >>> _apportion(210, np.array([0.7, 0.15, 0.15])).tolist()
    [147, 31, 32]
    """
    # Rounded to 9 decimals so that float noise (0.7 * 90 is 62.99999999999999)
    # neither floors a whole quota down nor breaks a tie.
    quotas = np.round(n * fractions, 9)
    counts = np.floor(quotas).astype(np.int64)
    remainders = quotas - counts
    by_remainder = np.lexsort((-np.arange(len(fractions)), -remainders))
    counts[by_remainder[: n - counts.sum()]] += 1
    return counts


def _deal(sizes: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """The part of each group (``sizes`` in dealing order): each goes to the
    part furthest below its :func:`_apportion` target."""
    deficit = _apportion(int(sizes.sum()), fractions).astype(float)
    # A part of size 0 must stay empty even when every other part is full.
    deficit[fractions == 0] = -np.inf
    parts = np.empty(len(sizes), dtype=np.int64)
    for i, size in enumerate(sizes):
        parts[i] = deficit.argmax()
        deficit[parts[i]] -= size
    return parts
