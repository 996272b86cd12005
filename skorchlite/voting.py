"""LayerVotingClassifier: one classifier per layer of an embedding, their votes combined."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .private_api import fit_context
from .validation import HasMethods, check_estimator_params, check_unchanged
from .versioning import VersionedPickleMixin

__all__ = ["LayerVotingClassifier"]


def default_layer_head() -> BaseEstimator:
    """What each layer gets by default: standardised features and a
    strongly regularised, class-balanced logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.03, class_weight="balanced", max_iter=3000))


def _columns(widths: list[int]) -> list[slice]:
    """The columns of each block, from the blocks' widths."""
    ends = np.cumsum(widths)
    return [slice(end - width, end) for width, end in zip(widths, ends, strict=True)]


class LayerVotingClassifier(ClassifierMixin, VersionedPickleMixin, BaseEstimator):
    """Fit one classifier per layer of a multi-layer embedding; add their log-probabilities.

    Concatenating several layers' pooled features into one wide vector
    lets the widest layer dominate one shared regularisation. Here each
    layer (each block of columns) gets its own clone of ``estimator``,
    regularised on its own scale, and the prediction is the class with
    the largest sum of the clones' log-probabilities (a product of
    experts). On BUSI's ultrasound, with duplicate-aware folds, this beat
    every single layer and their concatenation (docs/medical.md).

    Parameters
    ----------
    blocks : sequence of int or None, default=None
        Width of each block, in column order: a fitted extractor's
        ``layer_widths_`` (``fit`` reads no image, so
        ``PretrainedFeatureExtractor(layer="stages").fit().layer_widths_``
        gives them up front; for several extractors in a ``FeatureUnion``,
        their widths one after the other). ``None``: all columns are one
        block, and the classifier is ``estimator``.
    estimator : classifier or None, default=None
        Cloned for each block; must have ``predict_proba``. ``None``:
        StandardScaler + LogisticRegression(C=0.03, class_weight="balanced").

    Attributes
    ----------
    classes_ : ndarray
    estimators_ : list
        The fitted clone for each block, in column order.
    block_widths_ : list of int
        The width of each block (one block of all columns for
        ``blocks=None``); ``predict`` refuses other ``blocks`` until fit again.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from skorchlite import LayerVotingClassifier, PretrainedFeatureExtractor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    >>> X[4:] //= 4  # darker images: the second class
    >>> y = np.repeat([0, 1], 4)
    >>> extractor = PretrainedFeatureExtractor(layer="stages", cache=False)
    >>> widths = extractor.fit().layer_widths_
    >>> widths
    [112, 192, 320, 1280]
    >>> model = make_pipeline(extractor, LayerVotingClassifier(widths)).fit(X, y)
    >>> len(model[-1].estimators_), model.predict(X[:2])
    (4, array([0, 0]))
    """

    _parameter_constraints: dict = {
        "blocks": ["array-like", None],
        "estimator": [HasMethods(["fit", "predict_proba"]), None],
    }

    _fitted_state = ("estimators_", "classes_", "n_features_in_")

    def __init__(self, blocks: Sequence[int] | None = None, *, estimator: Any = None):
        self.blocks = blocks
        self.estimator = estimator

    # Not skipped inside: the clones' own parameters are the user's, unchecked here.
    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any) -> LayerVotingClassifier:
        """Fit a clone of ``estimator`` on each block of columns.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : LayerVotingClassifier
        """
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        template = default_layer_head() if self.estimator is None else self.estimator
        self.block_widths_ = self._widths(X.shape[1])
        self.estimators_ = [clone(template).fit(X[:, columns], y) for columns in _columns(self.block_widths_)]
        self.classes_ = self.estimators_[0].classes_
        return self

    def _widths(self, n_features: int) -> list[int]:
        """The width of each block ``blocks`` gives for ``n_features`` columns."""
        if self.blocks is None:
            return [n_features]
        widths = [int(w) for w in self.blocks]
        if any(w < 1 for w in widths) or sum(widths) != n_features:
            raise ValueError(
                f"blocks must be positive widths adding up to the {n_features} columns of X, got {list(self.blocks)!r}."
            )
        return widths

    def _log_votes(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        # As fit checks them: blocks set after fit meet the same errors,
        # and blocks other than the fitted ones are refused.
        check_estimator_params(self)
        X = validate_data(self, X, reset=False)
        widths = self._widths(X.shape[1])
        # A model pickled before block_widths_ was kept predicts as it did.
        fitted = getattr(self, "block_widths_", widths)
        check_unchanged(
            {"widths": fitted}, {"widths": widths}, what="blocks", remedy="call fit again, or set them back"
        )
        tiny = np.finfo(np.float64).tiny  # a probability of exactly 0 stays finite
        return sum(
            np.log(np.maximum(est.predict_proba(X[:, columns]), tiny))
            for est, columns in zip(self.estimators_, _columns(widths), strict=True)
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Normalised product of the blocks' probabilities.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        votes = self._log_votes(X)
        votes = np.exp(votes - votes.max(axis=1, keepdims=True))
        return votes / votes.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The class with the largest summed log-probability.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        votes = self._log_votes(X)  # first: it checks that the model is fitted
        return self.classes_[np.argmax(votes, axis=1)]
