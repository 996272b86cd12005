"""Cross-validation folds checked before any work: duplicate-aware, and every training part holds enough of every class.

``skorchlite evaluate`` and :func:`skorchlite.strategies.compare_strategies`
take their groups from :func:`fold_groups` (the duplicates that must stay
in one fold, or none with ``--no-group-duplicates`` / ``groups=None``) and
their folds from :func:`stratified_folds`, so an impossible split (a
class with one image, duplicate groups that put all of a class in one
fold, a head whose own internal split needs more) fails in one line before
the first image is embedded, not in a solver after the cross-validation.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .duplicates import Duplicates

__all__ = [
    "CLI_WORDS",
    "PYTHON_WORDS",
    "FoldError",
    "Grouping",
    "class_minimum",
    "fold_groups",
    "nested_folds",
    "stratified_folds",
]

Split = tuple[np.ndarray, np.ndarray]

#: How :class:`FoldError` words each fix in Python: the parameters of
#: :func:`~skorchlite.strategies.compare_strategies`.
PYTHON_WORDS = {
    "cv": "fewer folds (cv={} now)",
    "inner_cv": "fewer inner folds (inner_cv={} now)",
    "ungroup": "groups=None (duplicates may then sit on both sides of a fold)",
}

#: The same fixes worded as the command line's options.
CLI_WORDS = {
    "cv": "fewer folds (--cv {} now)",
    "inner_cv": "fewer inner folds (--inner-cv {} now)",
    "ungroup": "--no-group-duplicates (duplicates may then sit on both sides of a fold)",
}


class FoldError(ValueError):
    """Folds that leave a training part without enough images of a class.

    ``str()`` words the fixes as Python parameters (:data:`PYTHON_WORDS`);
    :meth:`worded` words them for another interface, such as the command
    line's options (:data:`CLI_WORDS`).

    Parameters
    ----------
    problem : str
        What is wrong, naming the class, its count and the fold.
    fixes : list of (str, object)
        Keys of :data:`PYTHON_WORDS` with the value to show, or ``("text",
        sentence)`` for a fix worded the same everywhere.
    """

    def __init__(self, problem: str, fixes: list[tuple[str, Any]]):
        self.problem = problem
        self.fixes = fixes
        super().__init__(self.worded(PYTHON_WORDS))

    def worded(self, words: Mapping[str, str]) -> str:
        """The one-line message, its fixes worded by ``words``.

        Parameters
        ----------
        words : mapping of str to str
            A format string per fix key (:data:`PYTHON_WORDS`, :data:`CLI_WORDS`).

        Returns
        -------
        str
        """
        fixes = [value if key == "text" else words[key].format(value) for key, value in self.fixes]
        return f"{self.problem}; fix: {', or '.join(fixes)}."


@dataclass(frozen=True)
class Grouping:
    """The groups that duplicate-aware folds keep together, from :func:`fold_groups`.

    Attributes
    ----------
    groups : ndarray of shape (n_samples,) or None
        A group per image; ``None``: none (each image on its own).
    duplicates : Duplicates or None
        What :func:`skorchlite.duplicates.find_duplicates` found, when the
        groups are its.
    n_grouped : int
        Images that share their group with another.
    n_groups : int
        Groups of more than one image.
    """

    groups: np.ndarray | None
    duplicates: Duplicates | None = None

    @property
    def n_grouped(self) -> int:
        return sum(n for n in self._sizes() if n > 1)

    @property
    def n_groups(self) -> int:
        return sum(1 for n in self._sizes() if n > 1)

    def _sizes(self) -> list[int]:
        return [] if self.groups is None else list(Counter(self.groups.tolist()).values())


def fold_groups(X: Any, y: np.ndarray, groups: Any = "duplicates", *, verbose: int = 0) -> Grouping:
    """The groups of duplicate-aware folds: what no fold may split.

    Parameters
    ----------
    X : list of paths, or array of images
    y : ndarray of shape (n_samples,)
    groups : "duplicates", array-like or None, default="duplicates"
        ``"duplicates"``: the groups of
        :func:`skorchlite.duplicates.find_duplicates` (``skorchlite
        evaluate`` and ``compare``, unless ``--no-group-duplicates``); an
        array: a group per image (patient ids, say); ``None``: none.
    verbose : int, default=0
        For :func:`~skorchlite.duplicates.find_duplicates`.

    Returns
    -------
    Grouping

    Raises
    ------
    ValueError
        For an array of groups that is not one per image.

    Examples
    --------
    >>> grouping = fold_groups(None, np.array([0, 0, 1]), groups=["a", "a", "b"])
    >>> grouping.groups.tolist(), grouping.n_grouped, grouping.n_groups
    (['a', 'a', 'b'], 2, 1)
    >>> fold_groups(None, np.array([0, 1]), groups=None).groups is None
    True
    """
    if isinstance(groups, str) and groups == "duplicates":
        from .duplicates import find_duplicates

        found = find_duplicates(X, y, verbose=verbose)
        return Grouping(np.asarray(found.groups), found)
    if groups is None:
        return Grouping(None)
    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise ValueError(f"groups has {len(groups)} entries for {len(y)} images.")
    return Grouping(groups)


def class_minimum(estimator: Any) -> tuple[int, str | None]:
    """Images of each class that fitting ``estimator`` needs, from the splits it makes itself.

    A stratified validation hold-out (``validation_fraction`` of the
    fine-tuners) needs 2; ``CalibratedClassifierCV(cv=k)`` needs ``k``.
    Nested estimators (pipeline steps, wrapped estimators) count too.

    Parameters
    ----------
    estimator : estimator

    Returns
    -------
    count : int
        At least 1.
    reason : str or None
        What needs more than one, for a message.
    """
    from sklearn.calibration import CalibratedClassifierCV

    from .finetune import FineTuneClassifier

    parts = [estimator]
    if hasattr(estimator, "get_params"):
        parts += [value for value in estimator.get_params(deep=True).values() if hasattr(value, "get_params")]
    count, reason = 1, None
    for part in parts:
        if isinstance(part, FineTuneClassifier) and part.validation_fraction and count < 2:
            count, reason = 2, f"{type(part).__name__}'s stratified validation_fraction={part.validation_fraction}"
        if isinstance(part, CalibratedClassifierCV) and isinstance(part.cv, int) and part.cv > count:
            count, reason = part.cv, f"CalibratedClassifierCV's internal {part.cv}-fold cross-validation"
    return count, reason


def stratified_folds(
    y: Any,
    groups: Any,
    n_splits: int,
    *,
    random_state: int = 0,
    hold_out: bool = False,
    min_count: int = 1,
    needed_by: str | None = None,
    other_fix: str | None = None,
    option: str = "cv",
    where: str = "fold",
    within: str = "",
) -> list[Split]:
    """Stratified (grouped) folds whose every training part holds ``min_count`` images of each class.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    groups : array-like or None
        A group per image, each group kept in one fold
        (``StratifiedGroupKFold``); ``None``: ``StratifiedKFold``.
    n_splits : int
    random_state : int, default=0
        Shuffles the folds.
    hold_out : bool, default=False
        Only the first of the ``n_splits`` folds: one held-out share.
    min_count : int, default=1
        Images of each class every training part needs (see :func:`class_minimum`).
    needed_by : str or None, default=None
        What needs ``min_count`` when it is more than one, for the message.
    other_fix : str or None, default=None
        Another fix when that need is not met ("another --head").
    option : str, default="cv"
        The key of :data:`PYTHON_WORDS` that sets ``n_splits``, for the fix.
    where : str, default="fold"
        What a fold is called in the message ("outer fold", "inner fold").
    within : str, default=""
        Where ``y`` comes from, for the message (" in the training part of outer fold 2").

    Returns
    -------
    list of (train, test)
        Row indices.

    Raises
    ------
    FoldError
        When the folds cannot be made, or a training part holds fewer than
        ``min_count`` images of a class; the message names the class, its
        count, the fold and the fixes.

    Examples
    --------
    >>> y = np.array(["a"] * 4 + ["b"] * 4)
    >>> len(stratified_folds(y, None, 2))
    2
    >>> stratified_folds(np.array(["a"] * 4 + ["b"]), None, 2)
    Traceback (most recent call last):
    ...
    skorchlite.folds.FoldError: class 'b' has 1 image: the training part of fold 1 of 2 holds none of it, so its model cannot learn the class; fix: add images of 'b'.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    # A hold-out's share is fixed: fewer folds is no fix for it.
    folds_fix: list[tuple[str, Any]] = [] if hold_out else [(option, n_splits)]
    units = len(y) if groups is None else len(np.unique(groups))
    if n_splits > units:
        kind = "images" if groups is None else "groups (images kept together)"
        fixes = [*folds_fix, ("text", "add images")] + ([("ungroup", None)] if units < len(y) else [])
        raise FoldError(f"{n_splits} folds need at least {n_splits} {kind}; there are {units}{within}", fixes)
    classes, counts = np.unique(y, return_counts=True)
    if counts.max() < n_splits:
        # scikit-learn refuses this too, without naming a class.
        largest = classes[counts.argmax()].item()
        raise FoldError(
            f"every class has fewer than {n_splits} images{within} (the largest, {largest!r}, has {counts.max()}): "
            f"{n_splits} stratified folds need a class with an image for each fold",
            [*folds_fix, ("text", "add images")],
        )
    splitter = (StratifiedKFold if groups is None else StratifiedGroupKFold)(
        n_splits, shuffle=True, random_state=random_state
    )
    with warnings.catch_warnings():
        # "The least populated class has only n members": the check below says
        # which training part that empties, and what to do, or nothing when none.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        try:
            splits = list(splitter.split(np.zeros((len(y), 1)), y, groups))
        except ValueError as err:
            raise FoldError(
                f"cannot make {n_splits} folds{within} ({err})", [*folds_fix, ("text", "add images")]
            ) from err
    if hold_out:
        splits = splits[:1]
    for k, (train, _) in enumerate(splits, 1):
        name = where if hold_out else f"{where} {k} of {n_splits}"
        need = (min_count, needed_by, other_fix)
        _check_training_part(y, groups, train, (name, within), need, None if hold_out else option, n_splits)
    return splits


def nested_folds(
    y: np.ndarray, groups: np.ndarray | None, plans: Sequence[tuple[int, Any]], cv: int, *, random_state: int = 0
) -> tuple[list[Split], dict[tuple[int, int], list[Split]]]:
    """Outer grouped folds and, in each outer training part, each plan's inner folds, all checked at once.

    As :func:`skorchlite.strategies.compare_strategies` takes them: every
    check runs before any estimator fits.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
    groups : ndarray of shape (n_samples,) or None
        A group per image; ``None``: each image its own (nothing grouped).
    plans : sequence of (int, estimator)
        Each estimator's inner folds (1: the first fifth held out, as a
        5-fold split would) and the estimator, whose :func:`class_minimum`
        every training part, outer and inner, must meet.
    cv : int
        Outer folds.
    random_state : int, default=0
        Seeds the outer and inner folds.

    Returns
    -------
    outer : list of (train, test)
    inner : dict
        ``inner[k, folds]``: the ``folds`` inner folds of outer fold ``k``
        (from 0), as rows of its training part.

    Raises
    ------
    FoldError
        As :func:`stratified_folds`.
    """
    # Each image its own group, not StratifiedKFold: the folds compare_strategies always made.
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    needs = [class_minimum(estimator) for _, estimator in plans]
    need, reason = max(needs, key=lambda n: n[0])
    outer = stratified_folds(
        y, groups, cv, random_state=random_state, min_count=need, needed_by=reason, where="outer fold"
    )
    inner = {}
    for k, (train, _) in enumerate(outer):
        for (folds, _), (need, reason) in zip(plans, needs, strict=True):
            inner[k, folds] = stratified_folds(
                y[train],
                groups[train],
                5 if folds == 1 else folds,
                random_state=random_state,
                hold_out=folds == 1,
                min_count=need,
                needed_by=reason,
                option="inner_cv",
                where="the inner hold-out" if folds == 1 else "inner fold",
                within=f" in the training part of outer fold {k + 1}",
            )
    return outer, inner


def _check_training_part(
    y: np.ndarray,
    groups: Any,
    train: np.ndarray,
    fold: tuple[str, str],
    need: tuple[int, str | None, str | None],
    option: str | None,
    n_splits: int,
) -> None:
    min_count, needed_by, other_fix = need
    classes, totals = np.unique(y, return_counts=True)
    held = dict(zip(*np.unique(y[train], return_counts=True), strict=True))
    for label, total in zip(classes.tolist(), totals.tolist(), strict=True):
        count = int(held.get(label, 0))
        if count >= min_count:
            continue
        n_groups = total if groups is None else len(np.unique(np.asarray(groups)[y == label]))
        grouped = f" in {n_groups} duplicate group{'s' * (n_groups != 1)}" if n_groups < total else ""
        if count == 0:
            why = "holds none of it, so its model cannot learn the class"
        else:
            why = f"holds {count}, and {needed_by or 'the estimator'} needs {min_count}"
        fixes: list[tuple[str, Any]] = [("text", f"add images of {label!r}")]
        # Fewer folds help when 2 would leave enough: never for a class in one group.
        if option is not None and n_splits > 2 and n_groups > 1 and total - math.ceil(total / 2) >= min_count:
            fixes.append((option, n_splits))
        if n_groups < total:
            fixes.append(("ungroup", None))
        if count and other_fix:
            fixes.append(("text", other_fix))
        raise FoldError(
            f"class {label!r} has {total} image{'s' * (total != 1)}{grouped}{fold[1]}: the training part of {fold[0]} {why}",
            fixes,
        )
