"""LayerVotingClassifier's numbers against the same votes computed by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skorchlite import LayerVotingClassifier


def _blocks_data(seed=0):
    """Three classes, 3 + 2 + 4 columns: each block tells the classes apart differently."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b", "c"], [9, 7, 6])
    X = rng.normal(size=(len(y), 9))
    X[:, 0] += (y == "b") * 2.0
    X[:, 3] += (y == "c") * 1.5
    X[:, 6] -= (y == "a") * 1.0
    return X, y


def test_probabilities_are_the_normalised_product_of_each_blocks_own_model():
    X, y = _blocks_data()
    head = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000))
    model = LayerVotingClassifier([3, 2, 4], estimator=head).fit(X, y)
    # By hand: one clone per block of columns, fitted on that block alone.
    blocks = [slice(0, 3), slice(3, 5), slice(5, 9)]
    probas = [clone(head).fit(X[:, cols], y).predict_proba(X[:, cols]) for cols in blocks]
    product = np.prod(probas, axis=0)
    expected = product / product.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model.predict(X), np.array(["a", "b", "c"])[expected.argmax(axis=1)])
    assert model.block_widths_ == [3, 2, 4]
    np.testing.assert_array_equal(model.classes_, ["a", "b", "c"])
    for est, cols in zip(model.estimators_, blocks, strict=True):
        assert est[-1].coef_.shape == (3, cols.stop - cols.start)


def test_a_zero_probability_is_a_finite_vote():
    """A block certain that a class is impossible (probability 0) outvotes, it does not poison."""

    class Certain:
        def __init__(self, proba=None):
            self.proba = proba

        def get_params(self, deep=True):
            return {"proba": self.proba}

        def set_params(self, **params):
            self.proba = params["proba"]
            return self

        def fit(self, X, y):
            self.classes_ = np.unique(y)
            return self

        def predict_proba(self, X):
            return np.tile(self.proba, (len(X), 1))

    X, y = _blocks_data()
    model = LayerVotingClassifier([4, 5], estimator=Certain(np.array([0.0, 0.7, 0.3]))).fit(X, y)
    proba = model.predict_proba(X[:2])
    assert np.isfinite(proba).all()
    # 0.7**2 and 0.3**2, normalised; the impossible class stays at (almost) 0.
    np.testing.assert_allclose(proba[0], [0.0, 0.49 / 0.58, 0.09 / 0.58], atol=1e-12)
    # log(0) would be -inf everywhere in column 0: the tiny floor keeps the sum comparable.
    assert np.isfinite(model._log_votes(X[:1])).all()


def test_without_blocks_one_model_sees_every_column():
    X, y = _blocks_data()
    model = LayerVotingClassifier().fit(X, y)
    assert model.block_widths_ == [9] and len(model.estimators_) == 1
    expected = clone(model.estimators_[0]).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-9)


@pytest.mark.parametrize("blocks", [[3, 2, 3], [3, 2, 5], [0, 9], [-1, 10]])
def test_blocks_that_do_not_tile_the_columns_are_refused(blocks):
    X, y = _blocks_data()
    with pytest.raises(ValueError, match="blocks must be positive widths adding up to the 9 columns"):
        LayerVotingClassifier(blocks).fit(X, y)


class _ColumnsAreProbabilities:
    """A head whose probabilities are its input columns, unnormalised: votes set by hand."""

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=float)


def test_probabilities_are_normalised_per_row_however_small_the_votes():
    """Row by row: one row's votes near 1e-400 (their logs near -920), another's near 1."""
    tiny, plain = np.array([1e-200, 2e-200, 3e-200]), np.array([0.2, 0.3, 0.5])
    X = np.array([[*tiny, *tiny], [*plain, *plain]])
    model = LayerVotingClassifier([3, 3], estimator=_ColumnsAreProbabilities()).fit(X, [0, 1])
    model.classes_ = np.array([0, 1, 2])  # three columns of votes
    squares = np.array([tiny / tiny.sum(), plain]) ** 2  # per row, scaled freely before normalising
    np.testing.assert_allclose(model.predict_proba(X), squares / squares.sum(axis=1, keepdims=True), rtol=1e-9)


def test_blocks_changed_after_fit_are_refused_until_set_back():
    X, y = _blocks_data()
    model = LayerVotingClassifier([3, 2, 4]).fit(X, y)
    expected = model.predict_proba(X)
    model.set_params(blocks=[4, 5])
    with pytest.raises(ValueError) as info:
        model.predict(X)
    message = str(info.value)
    assert re.match(r"blocks changed since fit\b", message) and "[3, 2, 4] -> [4, 5]" in message
    assert re.search(r"\bcall fit again, or set them back\.$", message)
    model.set_params(blocks=[3, 2, 4])
    np.testing.assert_array_equal(model.predict_proba(X), expected)


def test_a_model_pickled_before_block_widths_were_kept_predicts_as_it_did():
    X, y = _blocks_data()
    model = LayerVotingClassifier([3, 2, 4]).fit(X, y)
    expected = model.predict_proba(X)
    del model.block_widths_  # as such a pickle loads
    np.testing.assert_array_equal(model.predict_proba(X), expected)


def test_a_block_may_be_one_column_wide():
    X, y = _blocks_data()
    model = LayerVotingClassifier([1, 8]).fit(X, y)
    assert model.block_widths_ == [1, 8] and model.estimators_[0][-1].coef_.shape[1] == 1
