"""The fine-tuner's targets and loss weights against scikit-learn's and by-hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_class_weight

from skorchlite.finetune.targets import encode_labels, loss_weights

labels = st.lists(st.sampled_from(["cat", "dog", "emu"]), min_size=2, max_size=30).filter(lambda y: len(set(y)) > 1)


@settings(max_examples=40, deadline=None)
@given(labels)
def test_labels_are_encoded_as_their_index_among_the_sorted_classes(y):
    classes, target = encode_labels(np.array(y), None, None, "FineTuneClassifier")
    assert classes.tolist() == sorted(set(y))
    assert [classes[t] for t in target] == y


def test_given_classes_and_a_continued_fit_keep_their_order():
    classes, target = encode_labels(np.array(["dog", "cat"]), ["emu", "cat", "dog"], None, "FineTuneClassifier")
    assert classes.tolist() == ["cat", "dog", "emu"] and target.tolist() == [1, 0]
    known = np.array(["ant", "cat", "dog"])
    classes, target = encode_labels(np.array(["dog", "ant"]), None, known, "FineTuneClassifier")
    assert classes is known and target.tolist() == [2, 0]
    classes, target = encode_labels(np.array(["dog"]), ["dog", "ant", "cat"], known, "FineTuneClassifier")
    assert classes is known and target.tolist() == [2]  # the same classes, given in any order
    with pytest.raises(ValueError, match=r"y has labels \['emu'\] not seen in the first fit"):
        encode_labels(np.array(["emu", "ant"]), None, known, "FineTuneClassifier")
    with pytest.raises(ValueError, match=r"classes=\['ant', 'cat'\] is not the same as in the first fit"):
        encode_labels(np.array(["ant"]), ["ant", "cat"], known, "FineTuneClassifier")
    with pytest.raises(ValueError, match=r"y has labels \['emu'\] that are not in classes"):
        encode_labels(np.array(["emu", "cat"]), ["cat", "dog"], None, "FineTuneClassifier")


class_weights = st.one_of(
    st.none(),
    st.just("balanced"),
    st.fixed_dictionaries({c: st.floats(0.1, 10) for c in ["cat", "dog", "emu"]}),
)


@settings(max_examples=60, deadline=None)
@given(labels, class_weights, st.data())
def test_single_label_weights_are_sample_times_class_weight_over_their_training_mean(y, class_weight, data):
    y = np.array(y)
    n = len(y)
    classes, target = encode_labels(y, None, None, "FineTuneClassifier")
    sample_weight = np.array(data.draw(st.lists(st.floats(0.5, 4), min_size=n, max_size=n)))
    split = data.draw(st.integers(1, n))
    train, valid = np.arange(split), np.arange(split, n)
    # "balanced" counts the training rows only, so every class must be among them.
    if class_weight == "balanced" and set(y[train]) != set(classes):
        return
    if isinstance(class_weight, dict):
        class_weight = {c: w for c, w in class_weight.items() if c in classes}
    weights, scale = loss_weights(sample_weight, target, classes, class_weight, train, valid)
    per_class = (
        np.ones(len(classes))
        if class_weight is None
        else compute_class_weight(class_weight, classes=classes, y=y[train])
    )
    raw = sample_weight * per_class[target]
    assert scale == pytest.approx(raw[train].mean())
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, raw / raw[train].mean(), rtol=1e-6)
    # A later chunk of a partial_fit series is divided by the first chunk's scale.
    again, same = loss_weights(sample_weight, target, classes, class_weight, train, valid, scale=2 * scale)
    assert same == 2 * scale
    np.testing.assert_allclose(again, raw / (2 * scale), rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(4, 20), st.integers(1, 4), st.booleans(), st.data())
def test_multilabel_weights_balance_each_columns_present_and_absent_training_rows(n, n_labels, balanced, data):
    rows = st.lists(st.integers(0, 1), min_size=n, max_size=n)
    target = np.array([data.draw(rows) for _ in range(n_labels)]).T
    train = np.arange(n - 1)  # the last row is validation: "balanced" must not count it
    seen = target[train]
    if balanced and ((seen.sum(0) == 0) | (seen.sum(0) == len(train))).any():
        return
    lists = [{0: data.draw(st.floats(0.1, 5)), 1: data.draw(st.floats(0.1, 5))} for _ in range(n_labels)]
    class_weight = "balanced" if balanced else lists
    sample_weight = np.array(data.draw(st.lists(st.floats(0.5, 2), min_size=n, max_size=n)))
    weights, scale = loss_weights(sample_weight, target, np.arange(n_labels), class_weight, train, np.array([n - 1]))
    expected = np.empty(target.shape)
    for j in range(n_labels):
        present = seen[:, j].sum()
        if balanced:  # n / (2 n_present) and n / (2 n_absent), over the training rows
            w = {1: len(train) / (2 * present), 0: len(train) / (2 * (len(train) - present))}
        else:
            w = lists[j]
        expected[:, j] = [w[v] for v in target[:, j]]
    raw = sample_weight[:, None] * expected
    assert weights.shape == target.shape
    assert scale == pytest.approx(raw[train].mean())
    np.testing.assert_allclose(weights, raw / raw[train].mean(), rtol=1e-6)


def test_multilabel_without_class_weight_weighs_every_entry_by_its_sample():
    target = np.array([[1, 0], [0, 1], [1, 1]])
    weights, scale = loss_weights(np.array([1.0, 2.0, 3.0]), target, np.arange(2), None, np.arange(3), np.arange(0))
    assert scale == 2.0
    np.testing.assert_allclose(weights, [[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]])


@pytest.mark.parametrize(
    ("class_weight", "message"),
    [
        (
            {0: 1.0, 1: 1.0},
            "class_weight is a dict {class: weight}, which is for one label per sample; for a multi-label y give "
            "'balanced' or a list of one dict {0: absent weight, 1: present weight} per label column.",
        ),
        ([{0: 1, 1: 2}], "class_weight lists 1 dicts, but y has 2 label columns."),
        ([{0: 1, 1: 2}, "x"], "class_weight[1] is 'x', not a dict {0: absent weight, 1: present weight}."),
        (
            [{0: 1, 1: 2}, {0: 1, 2: 1}],
            "class_weight[1] is {0: 1, 2: 1}, not a dict {0: absent weight, 1: present weight}.",
        ),
        (
            [{0: 1, 1: 2}, {0: 1, 1: -1.0}],
            "class_weight must give every class a finite weight >= 0; label 1's value 1 gets -1.0.",
        ),
        (
            [{0: 1, 1: 2}, {0: np.inf, 1: 1}],
            "class_weight must give every class a finite weight >= 0; label 1's value 0 gets inf.",
        ),
    ],
)
def test_multilabel_class_weights_that_do_not_fit_are_refused(class_weight, message):
    target = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    with pytest.raises(ValueError) as info:
        loss_weights(np.ones(4), target, np.arange(2), class_weight, np.arange(4), np.arange(0))
    assert str(info.value) == message


@pytest.mark.parametrize(("column", "word"), [([0, 0, 0, 1], "never"), ([1, 1, 1, 0], "always")])
def test_balanced_needs_each_label_present_and_absent_among_the_training_rows(column, word):
    target = np.array([[1, 0, 1, 0], column]).T
    message = f"label column 1 of y is {word} present in the 3 training rows"
    with pytest.raises(ValueError, match=message):
        loss_weights(np.ones(4), target, np.arange(2), "balanced", np.arange(3), np.array([3]))


def test_single_label_refusals():
    target, classes = np.array([0, 1, 1]), np.array(["a", "b"])
    with pytest.raises(ValueError) as info:
        loss_weights(np.ones(3), target, classes, [{0: 1}], np.arange(3), np.arange(0))
    assert str(info.value) == (
        "class_weight is a list (one dict per label column), which is for a multi-label y; for one "
        "label per sample give 'balanced' or a dict {class: weight}."
    )
    with pytest.raises(ValueError, match="finite weight >= 0; class 'b' gets -2.0"):
        loss_weights(np.ones(3), target, classes, {"a": 1.0, "b": -2.0}, np.arange(3), np.arange(0))


@pytest.mark.parametrize(
    ("sample_weight", "rows", "message"),
    [
        ([0.0, 0.0, 1.0], "training", "The 2 training rows have zero total weight .* more samples.$"),
        ([1.0, 1.0, 0.0], "validation", "The 1 validation rows have zero total weight .* validation_fraction=0.$"),
    ],
)
def test_rows_of_zero_total_weight_are_refused(sample_weight, rows, message):
    target, classes = np.array([0, 1, 1]), np.array(["a", "b"])
    with pytest.raises(ValueError, match=message):
        loss_weights(np.array(sample_weight), target, classes, None, np.arange(2), np.array([2]))


def test_a_class_may_weigh_zero():
    """Weight 0 leaves a class out of the loss; only a negative or non-finite weight is refused."""
    target, classes = np.array([0, 1, 1, 0]), np.array(["a", "b"])
    weights, scale = loss_weights(np.ones(4), target, classes, {"a": 0.0, "b": 3.0}, np.arange(4), np.arange(0))
    assert scale == 1.5
    np.testing.assert_allclose(weights, [0.0, 2.0, 2.0, 0.0])


def test_given_classes_are_checked_as_the_estimators_classes():
    with pytest.raises(TypeError, match=r"^classes mixes label types: number \(first at 0\), str \(first at 1\)"):
        encode_labels(np.array(["a", "b"]), [1, "a"], None, "FineTuneClassifier")
    # As a classifier's target: continuous values are no classes.
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        encode_labels(np.array([0.5, 1.5]), [0.5, 1.5], None, "FineTuneClassifier")


def test_one_class_is_not_enough():
    with pytest.raises(ValueError, match=r"^y has a single class \('cat'\); a classifier needs at least two.$"):
        encode_labels(np.array(["cat", "cat"]), None, None, "FineTuneClassifier")
