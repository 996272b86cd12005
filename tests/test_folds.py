"""skorchlite.folds: folds checked before any work, shared by evaluate and compare_strategies (issue 24, class 5)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

import skorchlite
from skorchlite import FineTuneClassifier
from skorchlite.folds import CLI_WORDS, FoldError, Grouping, class_minimum, fold_groups, stratified_folds
from skorchlite.strategies import Strategy, compare_strategies


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    group_size=st.integers(1, 4),
    n_splits=st.integers(2, 6),
    min_count=st.integers(1, 3),
    grouped=st.booleans(),
)
def test_folds_either_hold_every_class_or_say_which_cannot(counts, group_size, n_splits, min_count, grouped):
    y = np.repeat([f"c{i}" for i in range(len(counts))], counts)
    # Consecutive images of a class share a group: duplicates never cross classes here.
    groups = np.concatenate([[f"{i}-{j // group_size}" for j in range(n)] for i, n in enumerate(counts)])
    try:
        splits = stratified_folds(y, groups if grouped else None, n_splits, min_count=min_count, needed_by="a head")
    except FoldError as err:
        message = str(err)
        assert "\n" not in message and "; fix: " in message
        # Every refusal names what it is about: a class and its count, or the groups there are.
        if message.startswith("class "):
            label = message.split("'")[1]
            assert f"has {counts[int(label[1:])]} image" in message
        elif "(the largest, " in message:
            label = message.split("'")[1]
            assert counts[int(label[1:])] == max(counts) < n_splits and f"has {max(counts)})" in message
        else:
            assert f"{n_splits} folds need at least {n_splits}" in message
        if "duplicate group" in message:
            assert "groups=None" in message and "--no-group-duplicates" in err.worded(CLI_WORDS)
        return
    assert len(splits) == n_splits
    for train, test in splits:
        for label in np.unique(y):
            assert (y[train] == label).sum() >= min_count
        if grouped:
            assert not set(groups[train]) & set(groups[test])


def test_a_single_image_class_names_itself_and_the_fold():
    y = np.array(["a"] * 5 + ["b"] * 5 + ["rare"])
    with pytest.raises(FoldError, match=r"class 'rare' has 1 image: the training part of fold \d of 3 holds none"):
        stratified_folds(y, None, 3)


def test_classes_all_smaller_than_the_inner_folds_name_the_largest_and_the_outer_fold():
    y = np.array(["a"] * 3 + ["b"] * 4)
    with pytest.raises(FoldError) as caught:
        stratified_folds(y, None, 5, option="inner_cv", within=" in the training part of outer fold 2")
    message = caught.value.worded(CLI_WORDS)
    assert message.startswith("every class has fewer than 5 images in the training part of outer fold 2")
    assert "(the largest, 'b', has 4)" in message and "--inner-cv" in message


def test_a_class_in_one_duplicate_group_points_at_the_grouping():
    y = np.array(["a"] * 6 + ["copies"] * 3)
    groups = np.array([0, 1, 2, 3, 4, 5, 9, 9, 9])
    with pytest.raises(FoldError) as caught:
        stratified_folds(y, groups, 3)
    assert "class 'copies' has 3 images in 1 duplicate group" in str(caught.value)
    worded = caught.value.worded(CLI_WORDS)
    # One group sits in one test fold, whatever the number of folds: fewer folds is no fix.
    assert "--no-group-duplicates" in worded and "--cv" not in worded
    assert len(stratified_folds(y, None, 3)) == 3


def test_class_minimum_reads_internal_splits_of_nested_estimators():
    assert class_minimum(LogisticRegression()) == (1, None)
    assert class_minimum(make_pipeline(CalibratedClassifierCV(SVC(), cv=4)))[0] == 4
    assert class_minimum(FineTuneClassifier(validation_fraction=0.2))[0] == 2
    assert class_minimum(FineTuneClassifier(validation_fraction=0))[0] == 1


class _Fits(LogisticRegression):
    """Counts its fits: a check that runs first leaves it at zero."""

    fits = 0

    def fit(self, X, y, sample_weight=None):
        type(self).fits += 1
        return super().fit(X.reshape(len(X), -1), y)

    def predict(self, X):
        return super().predict(X.reshape(len(X), -1))


def test_compare_strategies_checks_every_inner_fold_before_fitting_anything(recwarn):
    """A rare class: 51 warning lines and a solver error, after hours of
    work, before; one line now, before the first fit."""
    rng = np.random.default_rng(0)
    y = np.array(["a"] * 20 + ["b"] * 20 + ["rare"] * 2)  # enough of the others for 5 inner folds
    X = rng.random((len(y), 4, 4))
    _Fits.fits = 0
    with pytest.raises(FoldError, match=r"class 'rare' has 1 image in the training part of outer fold \d") as caught:
        compare_strategies(X, y, [Strategy("s", _Fits())], groups=None, cv=2)
    assert _Fits.fits == 0 and len(recwarn) == 0
    assert "the training part of inner fold" in str(caught.value)


def test_compare_strategies_asks_the_outer_folds_for_a_fine_tuners_validation_split():
    y = np.array(["a"] * 9 + ["b"] * 9 + ["rare"] * 2)
    X = np.zeros((len(y), 8, 8, 3), np.uint8)
    strategy = Strategy("ft", FineTuneClassifier(validation_fraction=0.1), inner_folds=1)
    with pytest.raises(FoldError, match="validation_fraction=0.1"):
        compare_strategies(X, y, [strategy], groups=None, cv=3)


# -- duplicate-aware groups, one function for the CLI and compare_strategies (issue 25, point 5)
@settings(max_examples=100, deadline=None)
@given(labels=st.lists(st.integers(0, 6), min_size=1, max_size=20))
def test_fold_groups_counts_the_images_that_share_a_group(labels):
    y = np.zeros(len(labels))
    grouping = fold_groups(None, y, groups=labels)
    sizes = [labels.count(g) for g in set(labels)]
    assert grouping.groups.tolist() == labels and grouping.duplicates is None
    assert grouping.n_grouped == sum(n for n in sizes if n > 1)
    assert grouping.n_groups == sum(1 for n in sizes if n > 1)
    with pytest.raises(ValueError, match=f"groups has {len(labels)} entries for {len(labels) + 1} images"):
        fold_groups(None, np.zeros(len(labels) + 1), groups=labels)


def test_fold_groups_of_duplicates_and_of_none():
    X = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    X[3] = X[0]
    y = np.array([0, 0, 0, 1, 1, 1])
    found = fold_groups(X, y, "duplicates")
    assert found.duplicates is not None
    assert found.groups[0] == found.groups[3] and (found.n_grouped, found.n_groups) == (2, 1)
    assert fold_groups(X, y, None) == Grouping(None) and Grouping(None).n_grouped == 0


def test_the_cli_and_compare_strategies_find_duplicate_groups_in_one_place():
    """find_duplicates for folds is called by skorchlite.folds.fold_groups alone."""
    package = Path(skorchlite.__file__).parent
    callers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "duplicates.py"
        and any(
            isinstance(node, ast.Name) and node.id == "find_duplicates"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert callers == ["folds.py"]
