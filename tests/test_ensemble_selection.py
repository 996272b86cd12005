"""select_ensemble: forward selection with replacement of models' out-of-fold probabilities."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import balanced_accuracy_score

from skorchlite.voting import select_ensemble


def reference_score(y: np.ndarray, proba: np.ndarray) -> float:
    """Scikit-learn's balanced accuracy, quiet about classes only one side holds (the samples here are drawn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return balanced_accuracy_score(y, proba.argmax(axis=1))


def probabilities(n_samples: int, n_classes: int) -> st.SearchStrategy:
    """Rows of class probabilities, each summing to 1."""
    rows = arrays(np.float64, (n_samples, n_classes), elements=st.floats(0.01, 1.0))
    return rows.map(lambda p: p / p.sum(axis=1, keepdims=True))


def confident(predicted: np.ndarray, n_classes: int, certainty: float = 0.8) -> np.ndarray:
    """Probabilities putting ``certainty`` on each sample's predicted class, the rest spread evenly."""
    proba = np.full((len(predicted), n_classes), (1 - certainty) / (n_classes - 1))
    proba[np.arange(len(predicted)), predicted] = certainty
    return proba


def test_models_wrong_on_different_images_are_averaged_into_one_that_is_right():
    y = np.repeat([0, 1, 2], 6)
    # Each model is confidently wrong on its own third of the images, right elsewhere.
    models = []
    for third in range(3):
        predicted = y.copy()
        wrong = slice(6 * third, 6 * third + 6)
        predicted[wrong] = (y[wrong] + 1) % 3
        models.append(confident(predicted, 3, certainty=0.6))
    singles = [reference_score(y, p) for p in models]
    weights = select_ensemble(models, y)
    averaged = sum(w * p for w, p in zip(weights, models, strict=True))
    assert max(singles) < 0.7 and balanced_accuracy_score(y, averaged.argmax(axis=1)) == 1.0
    assert np.all(weights > 0)


def test_one_round_takes_the_best_single_model_the_first_of_equals():
    y = np.array([0, 0, 1, 1])
    half = confident(np.array([0, 1, 1, 1]), 2)
    right = confident(y, 2)
    assert select_ensemble([half, right, right], y, rounds=1).tolist() == [0.0, 1.0, 0.0]


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 4).flatmap(
        lambda n_classes: st.tuples(
            st.lists(probabilities(12, n_classes), min_size=1, max_size=4),
            arrays(np.int64, 12, elements=st.integers(0, n_classes - 1)),
        )
    ),
    st.integers(1, 20),
)
def test_weights_are_shares_of_the_rounds(models_and_y, rounds):
    models, y = models_and_y
    weights = select_ensemble(models, y, rounds=rounds)
    assert weights.shape == (len(models),) and np.all(weights >= 0)
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights * rounds, np.round(weights * rounds), atol=1e-9)
    # The first round's model is one of the best alone: the ensemble holds it.
    singles = np.array([reference_score(y, p) for p in models])
    assert singles[weights > 0].max() == singles.max()


def test_bad_arguments_are_clear():
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="at least one model"):
        select_ensemble([], y)
    with pytest.raises(ValueError, match="'rounds' parameter of select_ensemble"):
        select_ensemble([np.eye(2)], y, rounds=0)
    with pytest.raises(ValueError, match=r"one row of probabilities per sample \(2\)"):
        select_ensemble([np.eye(2), np.ones((3, 2))], y)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(probabilities(15, 3), min_size=2, max_size=5),
    arrays(np.int64, 15, elements=st.integers(0, 2)),
)
def test_one_round_takes_a_best_by_scikit_learn_s_balanced_accuracy(models, y):
    expected = np.array([reference_score(y, p) for p in models])
    chosen = select_ensemble(models, y, rounds=1)
    assert sorted(chosen.tolist()) == [0.0] * (len(models) - 1) + [1.0]
    assert expected[chosen == 1.0][0] == expected.max()


def test_of_equal_accuracies_the_addition_surer_of_the_true_classes_wins():
    y = np.array([0, 0, 1, 1])
    hesitant = confident(y, 2, certainty=0.6)
    sure = confident(y, 2, certainty=0.9)
    assert select_ensemble([hesitant, sure], y, rounds=1).tolist() == [0.0, 1.0]
    # A model that changes no prediction but lowers the true classes' probability is not added.
    assert select_ensemble([sure, hesitant], y, rounds=5).tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("y", "rounds", "message"),
    [
        (np.array([0.0, 1.0]), 3, "integers in \\[0, 2\\)"),
        (np.array([0, 2]), 3, "integers in \\[0, 2\\)"),
        (np.array([-1, 1]), 3, "integers in \\[0, 2\\)"),
        (np.array([0, 1]), True, "rounds"),
        (np.array([0, 1]), 2.5, "rounds"),
    ],
)
def test_labels_must_be_columns_and_rounds_a_count(y, rounds, message):
    with pytest.raises(ValueError, match=message):
        select_ensemble([np.eye(2)], y, rounds=rounds)
