"""Votes combined: one classifier per layer of an embedding (LayerVotingClassifier),
or several models' probabilities averaged with weights chosen on out-of-fold ones (select_ensemble)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .private_api import fit_context
from .validation import HasMethods, Interval, check_estimator_params, check_params, check_unchanged
from .versioning import VersionedPickleMixin

__all__ = ["ENSEMBLE_ROUNDS", "LayerVotingClassifier", "select_ensemble"]


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


#: Forward-selection rounds: each adds one model (again, if it is the best
#: addition), so the weights are multiples of one fiftieth (auto-sklearn's
#: default ensemble size).
ENSEMBLE_ROUNDS = 50


def select_ensemble(probabilities: Sequence[np.ndarray], y: np.ndarray, *, rounds: int = ENSEMBLE_ROUNDS) -> np.ndarray:
    """Weights of the models whose averaged probabilities best predict ``y``.

    Forward selection with replacement (Caruana et al., ICML 2004; auto-sklearn
    builds its ensembles so): each round adds the model whose addition gives
    the average with the highest balanced accuracy on these samples; a model
    chosen in ``k`` of the rounds weighs ``k / rounds``. Accuracy moves in
    steps, so additions often tie: of those, the one whose average gives the
    true classes the highest mean log-probability (each class weighing the
    same) wins, then the first listed (auto-sklearn draws one at random).
    Averaging models that err on different images is what wins over taking
    the single best when the candidates' scores differ by less than their
    noise; the probabilities must be out-of-fold (each sample's from a model
    that never trained on it), or the weights favour the models that
    memorised their training images.

    Parameters
    ----------
    probabilities : sequence of ndarray of shape (n_samples, n_classes)
        One per model, columns in the same class order, rows summing to 1.
    y : array-like of int, shape (n_samples,)
        Each sample's class, as a column index of the probabilities.
    rounds : int, default=ENSEMBLE_ROUNDS
        Selection rounds; the weights are multiples of ``1 / rounds``.

    Returns
    -------
    ndarray of shape (n_models,)
        Non-negative weights summing to 1.

    Raises
    ------
    ValueError
        No models, probabilities of different shapes or not a row per
        label, or labels that are not column indices.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.voting import select_ensemble
    >>> y = np.array([0, 0, 1, 1])
    >>> right = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
    >>> wrong = right[:, ::-1]
    >>> select_ensemble([wrong, right], y, rounds=4).tolist()
    [0.0, 1.0]
    """
    check_params({"rounds": rounds}, {"rounds": [Interval(Integral, 1, None, closed="left")]}, "select_ensemble")
    if not len(probabilities):
        raise ValueError("select_ensemble needs at least one model's probabilities.")
    shapes = {np.shape(p) for p in probabilities}
    shape = next(iter(shapes))
    if len(shapes) != 1 or len(shape) != 2 or shape[0] != len(y):
        raise ValueError(f"each model needs one row of probabilities per sample ({len(y)}); got shapes {shapes}.")
    n_classes = shape[1]
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or (len(y) and not 0 <= y.min() <= y.max() < n_classes):
        raise ValueError(
            f"y must hold column indices of the probabilities, integers in [0, {n_classes}); got {y[:5]}..."
        )
    stacked = np.asarray(probabilities, dtype=float)
    support = np.bincount(y, minlength=stacked.shape[2])
    present = support > 0

    def balanced_accuracy(predicted: np.ndarray) -> float:
        # Scikit-learn's balanced accuracy (the mean recall of the classes in y), without its
        # warning about predicted classes y lacks, thousands of times cheaper to call.
        hits = np.bincount(y[predicted == y], minlength=len(support))
        return float((hits[present] / support[present]).mean())

    def balanced_log_likelihood(proba: np.ndarray) -> float:
        # Of the true class, each class weighing the same, as in balanced accuracy.
        sums = np.bincount(y, np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)), len(support))
        return float((sums[present] / support[present]).mean())

    total = np.zeros(stacked.shape[1:])
    counts = np.zeros(len(stacked), dtype=int)
    for r in range(rounds):
        averages = (total + stacked) / (r + 1)
        accuracies = np.array([balanced_accuracy(a.argmax(axis=1)) for a in averages])
        # Accuracy moves in steps, so many additions tie; among those, the one
        # that puts the most probability on the true classes (not merely the
        # first listed, which would add a model that changes no prediction).
        tied = np.flatnonzero(accuracies == accuracies.max())
        best = int(tied[np.argmax([balanced_log_likelihood(averages[t]) for t in tied])])
        total += stacked[best]
        counts[best] += 1
    return counts / rounds
