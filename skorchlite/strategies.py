"""Transfer-learning strategies compared honestly: grouped outer folds, every choice on inner folds."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import FeatureUnion, Pipeline

from .backbones import get_backbone, offline_backbones
from .extractor import PretrainedFeatureExtractor
from .finetune import FineTuneClassifier
from .folds import fold_groups, nested_folds
from .names import columns, pad, visible
from .validation import Interval, StrOptions, check_params
from .voting import LayerVotingClassifier, default_layer_head, select_ensemble

__all__ = [
    "BEST_INNER",
    "ENSEMBLE",
    "HEAD_C",
    "LEAD_ALPHA",
    "RESOLUTION_STEP",
    "Strategy",
    "StrategyComparison",
    "compare_strategies",
    "default_strategies",
]

#: The regularisation strengths every frozen recipe's head chooses from, on inner folds.
HEAD_C = (0.003, 0.01, 0.03, 0.1)

#: How much larger (pixels) the second resolution of the multi-scale recipe is.
RESOLUTION_STEP = 64

#: A baseline gives way to the inner folds' winner only when a lead at
#: least as large as the winner's would be this unlikely were the two equal
#: (one-sided; one test per outer fold, of the winner alone).
LEAD_ALPHA = 0.05

#: The table's name for the choice of the best inner score, beside a baseline's.
BEST_INNER = "best inner score taken, per outer fold"

#: The table's name for the strategies averaged with weights chosen on inner folds.
ENSEMBLE = "strategies averaged, weights chosen on inner folds"


@dataclass(frozen=True)
class Strategy:
    """A named recipe: an estimator on images and what inner folds may tune.

    Parameters
    ----------
    name : str
    estimator : estimator
        Takes the images ``compare_strategies`` gets (paths, arrays).
    param_grid : dict or list of dict, default={}
        Searched as ``GridSearchCV`` searches on the inner folds of each outer
        training fold; a list of dicts, as there, tries the settings of
        each dict in turn (one setting changed at a time, say); empty:
        nothing is tuned, the inner folds only score the recipe for the
        selection.
    inner_folds : int or None, default=None
        Inner grouped folds for this strategy; ``None``: the ``inner_cv``
        of :func:`compare_strategies`; ``1``: one grouped hold-out fifth
        (for fine-tuning, whose fits take minutes).
    """

    name: str
    estimator: BaseEstimator
    _: KW_ONLY  # Strategy(name, model, {...}, 1) would not say what the 1 is
    param_grid: dict[str, list[Any]] | list[dict[str, list[Any]]] = field(default_factory=dict)
    inner_folds: int | None = None


def _frozen(features: Any, head: Any) -> Pipeline:
    # The head's step is "clf" in every recipe, so one grid key serves them all.
    return Pipeline([("features", features), ("clf", clone(head))])


def _features(extractors: list[PretrainedFeatureExtractor]) -> Any:
    if len(extractors) == 1:
        return extractors[0]
    # Named so that one backbone at two resolutions gives two distinct steps.
    return FeatureUnion(
        [(f"{e.backbone}" + ("" if e.image_size is None else f"_{e.image_size}px"), e) for e in extractors]
    )


def default_strategies(
    backbones: Sequence[str] | None = None,
    *,
    finetune: bool = True,
    image_size: int | None = None,
    cache: Any = True,
    random_state: int = 0,
) -> list[Strategy]:
    """The recipes a transfer-learning course teaches, for the given backbones.

    Frozen features with a logistic head: each backbone's penultimate
    features; the first backbone's ``"stages"`` (several layers) with one
    head on all their columns; every backbone's penultimate features
    concatenated. Frozen ``"blocks"`` features (every residual block from
    the mid stage on) with one head per layer voting
    (:class:`~skorchlite.LayerVotingClassifier`): the first backbone's at
    its own resolution, and at that and :data:`RESOLUTION_STEP` pixels
    more; with several backbones, all of them, without and with mirror
    test-time augmentation. With ``finetune``, the first backbone
    fine-tuned with :class:`~skorchlite.FineTuneClassifier`'s defaults
    (every layer group, then a head per ``"blocks"`` layer of the
    fine-tuned backbone voting, the head's ``C`` kept: a grid would
    fine-tune again for each value). Each
    frozen head chooses its ``C`` from :data:`HEAD_C` on inner folds;
    fine-tuning is scored on the same inner folds, so that the choice
    between recipes compares them on the same images.

    Parameters
    ----------
    backbones : sequence of str or None, default=None
        Registry names; ``None``: every backbone whose weights are here
        (:func:`skorchlite.backbones.offline_backbones`).
    finetune : bool, default=True
        Include fine-tuning (minutes per fold on a CPU; the frozen recipes
        take seconds once the embeddings are cached).
    image_size : int or None, default=None
        For every extractor and for fine-tuning; ``None``: each backbone's own.
    cache : bool, str or path-like, default=True
        The extractors' embedding cache.
    random_state : int, default=0
        Fine-tuning's seed.

    Returns
    -------
    list of Strategy
        The frozen recipes, then, with ``finetune``, fine-tuning last (the
        baseline ``skorchlite compare`` names).

    Examples
    --------
    >>> for strategy in default_strategies(["efficientnet_lite0"], finetune=False):
    ...     print(strategy.name)
    efficientnet_lite0 penultimate + logistic
    efficientnet_lite0 "stages" + logistic
    efficientnet_lite0 "blocks", a head per layer voting
    efficientnet_lite0 "blocks" at 224 and 288 px, a head per layer voting
    """
    check_params(
        {
            "backbones": backbones,
            "finetune": finetune,
            "image_size": image_size,
            "cache": cache,
            "random_state": random_state,
        },
        {
            "backbones": ["array-like", None],
            "finetune": ["boolean"],
            "image_size": [Interval(Integral, 1, None, closed="left"), None],
            "cache": [bool, str, os.PathLike, None],
            "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
        },
        "default_strategies",
    )
    backbones = list(offline_backbones() if backbones is None else backbones)
    if not backbones:
        raise ValueError("default_strategies needs at least one backbone.")
    options: dict[str, Any] = dict(image_size=image_size, cache=cache)
    head = default_layer_head()
    one_head = {"clf__logisticregression__C": list(HEAD_C)}
    first, named = backbones[0], " + ".join(backbones)

    strategies = [
        Strategy(
            f"{name} penultimate + logistic",
            _frozen(PretrainedFeatureExtractor(backbone=name, **options), head),
            param_grid=one_head,
        )
        for name in backbones
    ]
    stages = PretrainedFeatureExtractor(backbone=first, layer="stages", **options)
    strategies.append(Strategy(f'{first} "stages" + logistic', _frozen(stages, head), param_grid=one_head))
    if len(backbones) > 1:
        union = _features([PretrainedFeatureExtractor(backbone=name, **options) for name in backbones])
        strategies.append(
            Strategy(f"{named} penultimate, concatenated + logistic", _frozen(union, head), param_grid=one_head)
        )

    def voting(label: str, extractors: list[PretrainedFeatureExtractor], widths: list[int]) -> Strategy:
        return Strategy(
            f"{label}, a head per layer voting",
            _frozen(_features(extractors), LayerVotingClassifier(widths, estimator=clone(head))),
            param_grid={"clf__estimator__logisticregression__C": list(HEAD_C)},
        )

    # fit() reads no image: it resolves the backbone and runs one blank image
    # for each layer's width, which neither resolution nor mirror TTA changes.
    def widths_of(extractors: list[PretrainedFeatureExtractor]) -> list[int]:
        return [w for extractor in extractors for w in clone(extractor).fit().layer_widths_]

    blocks = PretrainedFeatureExtractor(backbone=first, layer="blocks", **options)
    own_size = image_size or get_backbone(first).preprocessing.crop_size
    larger = clone(blocks).set_params(image_size=own_size + RESOLUTION_STEP)
    block_widths = widths_of([blocks])
    strategies += [
        voting(f'{first} "blocks"', [blocks], block_widths),
        voting(f'{first} "blocks" at {own_size} and {larger.image_size} px', [blocks, larger], block_widths * 2),
    ]
    if len(backbones) > 1:
        every = [clone(blocks).set_params(backbone=name) for name in backbones]
        widths = widths_of(every)
        strategies.append(voting(f'{named} "blocks"', every, widths))
        mirrored = [clone(extractor).set_params(tta=True) for extractor in every]
        strategies.append(voting(f'{named} "blocks", mirror TTA', mirrored, widths))
    if finetune:
        # The same inner folds as the frozen recipes: a single hold-out
        # over-rated fine-tuning (0.823 mean inner against 0.782 outer on
        # BUSI, docs/benchmarks.md), and a choice between two recipes is
        # only fair on the same folds.
        model = FineTuneClassifier(backbone=first, image_size=image_size, random_state=random_state)
        strategies.append(Strategy(f"{first} fine-tuned, all layers, a head per layer voting", model))
    return strategies


@dataclass
class StrategyComparison:
    """What :func:`compare_strategies` measured; ``str()`` is the ranked table.

    Attributes
    ----------
    names : list of str
        The strategies, in the order given.
    balanced_accuracy, accuracy : ndarray of shape (n_strategies, n_folds)
        Each strategy's score on each outer test fold.
    seconds : ndarray of shape (n_strategies, n_folds)
        Inner search, refit and prediction time.
    candidates : list of list of dict
        The settings each strategy's inner search tried, in
        ``GridSearchCV``'s order.
    candidate_split_scores : list of ndarray of shape (n_candidates, n_folds, n_inner_folds)
        Each of those settings' balanced accuracy on each inner fold of
        each outer fold.
    candidate_scores : list of ndarray of shape (n_candidates, n_folds)
        Their means over the inner folds, as ``GridSearchCV`` ranks them.
    n_grouped, n_groups : int
        Images that share a duplicate group with another, and those groups.
    inner_score : ndarray of shape (n_strategies, n_folds)
        Each strategy's best mean inner balanced accuracy less the optimism
        of having chosen that setting on the same inner folds (Tibshirani &
        Tibshirani, 2009: the mean, over inner folds, of each fold's best
        score minus the chosen setting's score there), from the outer
        training fold alone: what the selection compares. A strategy with
        one setting is not corrected; without the correction, the best of a
        grid would be over-rated against it by the grid's size and noise.
        One inner fold (a single hold-out) leaves nothing to estimate the
        optimism with: its best is taken as it is.
    best_params : list of list of dict
        What each strategy's inner search chose, per outer fold (the first
        of equal best scores, as ``GridSearchCV`` chooses).
    baseline : str or None
        The strategy kept in an outer fold unless the one with the best
        inner score there leads it significantly (:meth:`lead_p_value`
        below :data:`LEAD_ALPHA`); ``None``: the best inner score is taken
        however small its lead.
    selected : list of str
        Per outer fold, the strategy chosen on the inner folds
        (:meth:`chosen`).
    selected_balanced_accuracy, selected_accuracy : ndarray of shape (n_folds,)
        The outer scores of those choices: the honest estimate of
        "compare on inner folds, then use the winner".
    recommended : str
        The strategy chosen in most outer folds (ties: best mean inner score).
    ensemble_weights : ndarray of shape (n_strategies, n_folds) or None
        Per outer fold, each strategy's weight in the average of their
        probabilities that :func:`~skorchlite.voting.select_ensemble`
        chose on the inner folds' out-of-fold probabilities (each strategy at
        its best setting there); 0 for a strategy the selection left out,
        one without ``predict_proba``, or one scored on inner folds of its
        own (``Strategy.inner_folds``) instead of the shared ones.
        ``None``: not measured.
    ensemble_balanced_accuracy, ensemble_accuracy : ndarray of shape (n_folds,) or None
        That average's scores on the outer test folds, the strategies
        refitted as for their own rows (NaN where fewer than two strategies
        could be averaged): the honest estimate of "average the strategies
        as the inner folds weigh them".
    ensemble_inner_score : ndarray of shape (n_folds,) or None
        The average's mean balanced accuracy over the inner folds, on the
        out-of-fold probabilities that chose its weights: over-rated by that
        choice, more than a grid's best (no correction is taken off).
    ensemble_measured : bool
        Whether the average was scored in some outer fold.
    """

    names: list[str]
    balanced_accuracy: np.ndarray
    accuracy: np.ndarray
    seconds: np.ndarray
    candidates: list[list[dict[str, Any]]]
    candidate_split_scores: list[np.ndarray]
    n_grouped: int
    n_groups: int
    ensemble_weights: np.ndarray | None = None
    ensemble_balanced_accuracy: np.ndarray | None = None
    ensemble_inner_score: np.ndarray | None = None
    ensemble_accuracy: np.ndarray | None = None
    baseline: str | None = None

    def __post_init__(self) -> None:
        _check_baseline(self.baseline, self.names)

    @property
    def candidate_scores(self) -> list[np.ndarray]:
        return [splits.mean(axis=2) for splits in self.candidate_split_scores]

    @property
    def inner_score(self) -> np.ndarray:
        return np.array([_corrected_best(splits) for splits in self.candidate_split_scores])

    @property
    def best_params(self) -> list[list[dict[str, Any]]]:
        return [
            [settings[k] for k in scores.argmax(axis=0)]
            for settings, scores in zip(self.candidates, self.candidate_scores, strict=True)
        ]

    def chosen(self, among: Sequence[int] | None = None) -> np.ndarray:
        """Per outer fold, the index of the strategy chosen on the inner folds.

        The one with the best inner score, except where :attr:`baseline` is
        among the candidates and that one's lead over it is not significant
        (:meth:`lead_p_value` of :data:`LEAD_ALPHA` or more, NaN included):
        there the baseline.

        Parameters
        ----------
        among : sequence of int or None, default=None
            The candidate strategies' indices; ``None``: all of them.

        Returns
        -------
        ndarray of int, shape (n_folds,)
        """
        best = self._inner_winners(among)
        base = self._baseline_among(among)
        return best if base is None else np.where(self.lead_p_value(among) < LEAD_ALPHA, best, base)

    def _inner_winners(self, among: Sequence[int] | None) -> np.ndarray:
        """Per outer fold, the index of the candidate with the best inner score."""
        candidates = np.arange(len(self.names)) if among is None else np.asarray(among)
        return candidates[self.inner_score[candidates].argmax(axis=0)]

    def _baseline_among(self, among: Sequence[int] | None) -> int | None:
        """The baseline's index, if it is among the candidates."""
        if self.baseline is None:
            return None
        base = self.names.index(self.baseline)
        return base if among is None or base in np.asarray(among) else None

    def lead_p_value(self, among: Sequence[int] | None = None) -> np.ndarray:
        """Per outer fold, the p-value of the inner winner's lead over :attr:`baseline`.

        How likely a lead at least that large would be if the two were
        equally good: the one-sided corrected resampled t-test (Nadeau &
        Bengio, 2003) on the two strategies' paired inner-fold scores. Each
        fold's score is its best setting's less that fold's share of the
        choice's optimism (the best score there minus the best setting's),
        so that the mean lead is the difference of :attr:`inner_score`; its
        variance is the per-fold differences' times ``1/k + 1/(k - 1)`` for
        ``k`` inner folds, not ``1/k``, because the folds' training parts
        overlap. The winner is the best of the other strategies: its lead is
        tested alone, at :data:`LEAD_ALPHA` per outer fold, with no
        correction for the others it was chosen among.

        Parameters
        ----------
        among : sequence of int or None, default=None
            As for :meth:`chosen`.

        Returns
        -------
        ndarray of float, shape (n_folds,)
            NaN where there is no baseline among the candidates or it has
            the best inner score itself; 1 where the winner was not scored
            on the same inner folds as the baseline, or on a single one.
        """
        p = np.full(self.balanced_accuracy.shape[1], np.nan)
        base = self._baseline_among(among)
        if base is None:
            return p
        base_splits = _corrected_splits(self.candidate_split_scores[base])
        for fold, winner in enumerate(self._inner_winners(among)):
            if winner == base:
                continue
            winner_splits = _corrected_splits(self.candidate_split_scores[winner])
            if winner_splits.shape[1] != base_splits.shape[1]:
                p[fold] = 1.0  # not scored on the same inner folds: nothing to pair
                continue
            p[fold] = _lead_p_value(winner_splits[fold] - base_splits[fold])
        return p

    @property
    def selected(self) -> list[str]:
        return [self.names[i] for i in self.chosen()]

    def _of_choices(self, per_strategy: np.ndarray) -> np.ndarray:
        """Per outer fold, the value of the strategy chosen there."""
        return per_strategy[self.chosen(), np.arange(per_strategy.shape[1])]

    @property
    def selected_balanced_accuracy(self) -> np.ndarray:
        return self._of_choices(self.balanced_accuracy)

    @property
    def selected_accuracy(self) -> np.ndarray:
        return self._of_choices(self.accuracy)

    @property
    def recommended(self) -> str:
        wins = Counter(self.chosen().tolist())
        base = self._baseline_among(None)
        return self.names[max(wins, key=lambda i: (wins[i], i == base, self.inner_score[i].mean()))]

    @property
    def ensemble_measured(self) -> bool:
        """Whether the averaged strategies were scored in some outer fold (two or more could be averaged)."""
        return self.ensemble_balanced_accuracy is not None and not np.isnan(self.ensemble_balanced_accuracy).all()

    def ranking(self) -> list[int]:
        """Strategy indices by mean outer balanced accuracy, best first."""
        return sorted(range(len(self.names)), key=lambda i: -self.balanced_accuracy[i].mean())

    def __str__(self) -> str:
        averaged = self.ensemble_measured
        labels = [
            *self.names,
            "chosen on inner folds, per outer fold",
            *([BEST_INNER] if self.baseline is not None else []),
            *([ENSEMBLE] if averaged else []),
        ]
        width = max(columns(visible(name)) for name in labels)
        lines = [
            f"{pad('strategy', width, '<')}  {'balanced acc.':>15}  {'inner':>5}  {'accuracy':>15}  {'seconds':>8}",
        ]

        def row(name: str, balanced: np.ndarray, inner: np.ndarray, accuracy: np.ndarray, seconds: str) -> str:
            return (
                f"{pad(visible(name), width, '<')}  {balanced.mean():.3f} ± {balanced.std():.3f}    {inner.mean():.3f}  "
                f"{accuracy.mean():.3f} ± {accuracy.std():.3f}  {seconds:>8}"
            )

        inner = self.inner_score
        for i in self.ranking():
            seconds = f"{self.seconds[i].sum():.0f}"
            lines.append(row(self.names[i], self.balanced_accuracy[i], inner[i], self.accuracy[i], seconds))
        lines.append(
            row(
                "chosen on inner folds, per outer fold",
                self.selected_balanced_accuracy,
                self._of_choices(inner),
                self.selected_accuracy,
                "",
            )
        )
        how = "the strategy with the best inner-fold score was taken"
        if self.baseline is not None:
            best = replace(self, baseline=None)
            lines.append(
                row(BEST_INNER, best.selected_balanced_accuracy, best._of_choices(inner), best.selected_accuracy, "")
            )
            how = (
                f"{visible(self.baseline)} was kept unless the strategy with the best inner-fold score led it "
                f"significantly (one-sided corrected resampled t-test on their paired inner-fold scores, p < "
                f"{LEAD_ALPHA}; the '{BEST_INNER}' row took the best however small its lead)"
            )
        explained = ""
        if averaged:
            balanced, inner_scores, accuracy = (
                np.asarray(s)
                for s in (self.ensemble_balanced_accuracy, self.ensemble_inner_score, self.ensemble_accuracy)
            )
            lines.append(row(ENSEMBLE, balanced, inner_scores, accuracy, ""))
            explained = (
                f" '{ENSEMBLE}': in each outer fold, the strategies' probabilities averaged with weights chosen on "
                "their inner out-of-fold probabilities (ensemble selection), its inner score over-rated by that "
                "choice."
            )
        picks = Counter(self.selected)
        lines += [
            "",
            f"{len(self.names)} strategies, {self.balanced_accuracy.shape[1]} grouped outer folds: "
            f"{self.n_grouped} images share a group with others ({self.n_groups} groups), never split across folds.",
            "Each row's score is its own outer test folds'; picking the top row by them would be a choice made on "
            "the test folds. The honest figure for choosing is the 'chosen on inner folds' row: in each outer fold "
            f"{how} ("
            + ", ".join(f"{visible(name)}: {count}x" for name, count in picks.most_common())
            + "). 'inner': the mean of the inner scores the choice compared (a grid's best less the optimism of "
            "choosing it on the same inner folds); a row whose inner score is above its outer one was over-rated by "
            "them, and the chosen row's gap is the choice's optimism." + explained,
            f"Use: {visible(self.recommended)}",
        ]
        return "\n".join(lines)


def _check_baseline(baseline: str | None, names: list[str]) -> None:
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of the strategies: {names}.")


def _best_splits(splits: np.ndarray) -> np.ndarray:
    """Per outer fold, the inner-fold scores of the setting with the best mean, as ``GridSearchCV`` picks it.

    ``splits``: scores of shape (n_candidates, n_folds, n_inner_folds).
    """
    return splits[splits.mean(axis=2).argmax(axis=0), np.arange(splits.shape[1])]


def _corrected_splits(splits: np.ndarray) -> np.ndarray:
    """Per outer and inner fold, the best setting's score less that fold's share of its
    selection optimism (Tibshirani & Tibshirani 2009).

    ``splits``: scores of shape (n_candidates, n_folds, n_inner_folds).
    """
    best = _best_splits(splits)
    return best - (splits.max(axis=0) - best)


def _corrected_best(splits: np.ndarray) -> np.ndarray:
    """Per outer fold, the best setting's mean inner score less its selection optimism:
    the mean of :func:`_corrected_splits`, so that the selection and the
    significance test read one figure."""
    return _corrected_splits(splits).mean(axis=1)


def _lead_p_value(differences: np.ndarray) -> float:
    """One-sided p-value of the mean of k-fold paired score ``differences``
    (Nadeau & Bengio's corrected resampled t-test)."""
    k = len(differences)
    if k < 2:
        return 1.0
    lead = differences.mean()
    scale = np.sqrt((1 / k + 1 / (k - 1)) * differences.var(ddof=1))
    if scale == 0:
        return 0.0 if lead > 0 else 1.0
    return float(stats.t.sf(lead / scale, k - 1))


def _take(X: Any, rows: np.ndarray) -> Any:
    return X[rows] if isinstance(X, np.ndarray) else [X[i] for i in rows]


def _proba(model: Any, X: Any, classes: np.ndarray) -> np.ndarray | None:
    """``model``'s probabilities with a column per class of ``classes`` (0 for
    one its training part lacked); ``None`` if it gives none, or its classes
    are not among ``classes`` (a model that relabels its targets)."""
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        return None
    where = {label: k for k, label in enumerate(classes.tolist())}
    columns = [where.get(label, -1) for label in np.asarray(model.classes_).tolist()]
    if -1 in columns:
        return None
    proba = np.zeros((len(X), len(classes)))
    proba[:, columns] = model.predict_proba(X)
    return proba


class _Search(NamedTuple):
    split_scores: np.ndarray  # (n_candidates, n_inner_folds)
    best: int
    inner_proba: np.ndarray | None  # the best setting's, out of fold, a row per training image
    model: Any  # the best setting refitted on the whole training part


def _search(
    strategy: Strategy,
    candidates: list[dict[str, Any]],
    X: Any,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    classes: np.ndarray | None,
) -> _Search:
    """``GridSearchCV``'s search (each setting fitted on each inner training
    part, scored by balanced accuracy of its predictions, the first best
    refitted on everything), keeping each setting's out-of-fold
    probabilities with a column per class of ``classes`` (``None``: none kept),
    which the ensemble averages."""
    scores = np.zeros((len(candidates), len(splits)))
    proba: list[np.ndarray | None] = []
    for c, settings in enumerate(candidates):
        parts = []
        for k, (fit_rows, score_rows) in enumerate(splits):
            # Cloned as GridSearchCV clones them: an estimator in the grid is never fitted in place.
            model = clone(strategy.estimator).set_params(**clone(settings, safe=False))
            model.fit(_take(X, fit_rows), y[fit_rows])
            X_score = _take(X, score_rows)
            scores[c, k] = balanced_accuracy_score(y[score_rows], model.predict(X_score))
            parts.append(None if classes is None else _proba(model, X_score, classes))
        oof = None
        if classes is not None and all(part is not None for part in parts):
            # The splits' test parts cover the training part once (callers pass shared k-fold splits).
            oof = np.empty((len(y), len(classes)))
            for (_, score_rows), part in zip(splits, parts, strict=True):
                oof[score_rows] = part
        proba.append(oof)
    best = int(scores.mean(axis=1).argmax())
    model = clone(strategy.estimator).set_params(**clone(candidates[best], safe=False)).fit(X, y)
    return _Search(scores, best, proba[best], model)


def compare_strategies(
    X: Any,
    y: Any,
    strategies: Sequence[Strategy] | None = None,
    *,
    groups: Any = "duplicates",
    cv: int = 5,
    inner_cv: int = 5,
    random_state: int = 0,
    baseline: str | None = None,
    log: Callable[[str], None] | None = None,
) -> StrategyComparison:
    """Score each strategy on the same duplicate-aware folds, every choice nested.

    The outer folds are ``StratifiedGroupKFold(cv, shuffle=True,
    random_state)`` on ``groups``, so no copy of a test image is trained
    on. Within each outer training fold, each strategy's ``param_grid`` is
    searched on inner grouped folds and the best setting refitted on the
    whole training fold, then scored on the test fold. The strategy with
    the best inner score (a grid's best less the optimism of choosing it on
    those folds, :attr:`StrategyComparison.inner_score`) is the fold's
    choice, or the ``baseline`` unless that best leads it significantly;
    the outer scores of those choices estimate what comparing and
    then using the winner gives on new patients. Beside it, the strategies'
    probabilities averaged with weights chosen on their inner out-of-fold
    probabilities (:func:`~skorchlite.voting.select_ensemble`), scored on
    the same test folds: what averaging instead of choosing gives. No
    choice ever sees a test fold.

    Parameters
    ----------
    X : list of paths, or array of images
    y : array-like of shape (n_samples,)
        One class per image; a multi-label indicator matrix is refused (the
        scores are balanced accuracies of one class per image).
    strategies : sequence of Strategy or None, default=None
        ``None``: :func:`default_strategies` (fine-tuning included).
    groups : "duplicates", array-like or None, default="duplicates"
        ``"duplicates"``: the groups of :func:`skorchlite.duplicates.find_duplicates`;
        an array: a group per image (e.g. patient ids); ``None``: none.
    cv : int, default=5
        Outer folds.
    inner_cv : int, default=5
        Inner folds, unless a strategy sets its own. Each inner fit trains
        on ``(inner_cv - 1) / inner_cv`` of the outer training fold, the
        closer to the refit it stands for the more folds (fine-tuning's
        cost grows with them); on BUSI, 5 instead of 3 gave a nested
        figure of 0.825 instead of 0.814, within the folds' noise
        (docs/benchmarks.md).
    random_state : int, default=0
        Seeds the outer and inner folds.
    baseline : str or None, default=None
        The name of the strategy to keep in an outer fold unless the one
        with the best inner score leads it there significantly: a one-sided
        corrected resampled t-test (Nadeau & Bengio, 2003) on their paired
        inner-fold scores, p below :data:`LEAD_ALPHA`
        (:meth:`StrategyComparison.lead_p_value`). The recipe one would use
        without a comparison: the best of many noisy inner scores is
        over-rated (the winner's curse), and this spares it a switch on a
        lead the folds cannot tell from luck. ``None``: the best inner
        score is taken however small its lead.
    log : callable or None, default=None
        Called with a line after each strategy in each fold (e.g. ``print``).

    Returns
    -------
    StrategyComparison

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.strategies import Strategy, compare_strategies
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skorchlite import PretrainedFeatureExtractor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (24, 48, 48, 3), dtype=np.uint8)
    >>> X[12:] //= 4
    >>> y = np.repeat(["bright", "dark"], 12)
    >>> frozen = make_pipeline(PretrainedFeatureExtractor(cache=False), LogisticRegression())
    >>> grid = {"logisticregression__C": [0.1, 1]}
    >>> result = compare_strategies(X, y, [Strategy("frozen", frozen, param_grid=grid)], cv=3)
    >>> result.recommended, result.balanced_accuracy.shape
    ('frozen', (1, 3))
    """
    check_params(
        {
            "strategies": strategies,
            "groups": groups,
            "cv": cv,
            "inner_cv": inner_cv,
            "random_state": random_state,
            "baseline": baseline,
            "log": log,
        },
        {
            "strategies": ["array-like", None],
            "groups": [StrOptions(["duplicates"]), "array-like", None],
            "cv": [Interval(Integral, 2, None, closed="left")],
            "inner_cv": [Interval(Integral, 1, None, closed="left")],
            # An int, not a RandomState: every strategy must get the same inner folds.
            "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
            "baseline": [str, None],
            "log": [callable, None],
        },
        "compare_strategies",
    )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        raise ValueError(
            f"y has shape {y.shape}, a multi-label indicator matrix: compare_strategies scores one class per "
            "image; compare multi-label models with sklearn.model_selection.cross_validate and a group splitter."
        )
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} images and y {len(y)} labels.")
    strategies = list(default_strategies() if strategies is None else strategies)
    names = [s.name for s in strategies]
    if not strategies or len(set(names)) != len(names):
        raise ValueError(f"strategies must be one or more, with distinct names; got {names}.")
    _check_baseline(baseline, names)
    grouping = fold_groups(X, y, groups)
    n_inner = [s.inner_folds or inner_cv for s in strategies]
    outer, inner = nested_folds(
        y,
        grouping.groups,
        [(folds, s.estimator) for folds, s in zip(n_inner, strategies, strict=True)],
        cv,
        random_state=random_state,
    )
    shape = (len(strategies), len(outer))
    balanced, accuracy, seconds = (np.zeros(shape) for _ in range(3))
    candidates = [list(ParameterGrid(s.param_grid)) for s in strategies]
    split_scores = [
        np.zeros((len(settings), len(outer), folds)) for settings, folds in zip(candidates, n_inner, strict=True)
    ]
    classes = np.unique(y)
    # Strategies on the shared inner folds, which cover every training image
    # once: their out-of-fold probabilities can be averaged image by image.
    shared = [i for i, folds in enumerate(n_inner) if folds == inner_cv > 1]
    weights = np.zeros(shape)
    ensemble_scores = np.full((3, len(outer)), np.nan)
    for fold, (train, test) in enumerate(outer):
        X_train, y_train, X_test, y_test = _take(X, train), y[train], _take(X, test), y[test]
        inner_proba: dict[int, np.ndarray] = {}
        test_proba: dict[int, np.ndarray] = {}
        for i, strategy in enumerate(strategies):
            start = time.perf_counter()
            folds = n_inner[i]
            averaged = i in shared and len(shared) > 1
            search = _search(
                strategy, candidates[i], X_train, y_train, inner[fold, folds], classes if averaged else None
            )
            predicted = search.model.predict(X_test)
            seconds[i, fold] = time.perf_counter() - start
            balanced[i, fold] = balanced_accuracy_score(y_test, predicted)
            accuracy[i, fold] = accuracy_score(y_test, predicted)
            split_scores[i][:, fold] = search.split_scores
            if search.inner_proba is not None and (proba := _proba(search.model, X_test, classes)) is not None:
                inner_proba[i], test_proba[i] = search.inner_proba, proba
            if log is not None:
                means = split_scores[i][:, fold].mean(axis=1)
                tried = ""
                if len(candidates[i]) > 1:
                    corrected = _corrected_best(split_scores[i][:, fold : fold + 1])[0]
                    tried = "".join(
                        f"; {settings} {score:.3f}" for settings, score in zip(candidates[i], means, strict=True)
                    )
                    tried += f"; the best less the choice's optimism: {corrected:.3f}"
                log(
                    f"fold {fold + 1}/{len(outer)}  {strategy.name}: balanced acc. {balanced[i, fold]:.3f} "
                    f"(inner {means.max():.3f}, {candidates[i][search.best]}{tried}), {seconds[i, fold]:.0f} s"
                )
        members = [i for i in shared if i in inner_proba]
        if len(members) > 1:
            codes = np.searchsorted(classes, y_train)
            weights[members, fold] = select_ensemble([inner_proba[i] for i in members], codes)
            inner_predicted = sum(weights[i, fold] * inner_proba[i] for i in members).argmax(axis=1)
            tested = classes[sum(weights[i, fold] * test_proba[i] for i in members).argmax(axis=1)]
            ensemble_scores[:, fold] = (
                balanced_accuracy_score(y_test, tested),
                # As every row's inner score: the mean over the inner folds.
                np.mean([balanced_accuracy_score(codes[b], inner_predicted[b]) for _, b in inner[fold, inner_cv]]),
                accuracy_score(y_test, tested),
            )
            if log is not None:
                mix = ", ".join(f"{names[i]} {weights[i, fold]:.2f}" for i in members if weights[i, fold])
                log(
                    f"fold {fold + 1}/{len(outer)}  {ENSEMBLE}: balanced acc. {ensemble_scores[0, fold]:.3f} "
                    f"(inner {ensemble_scores[1, fold]:.3f}, {mix})"
                )
    return StrategyComparison(
        names=names,
        balanced_accuracy=balanced,
        accuracy=accuracy,
        seconds=seconds,
        candidates=candidates,
        candidate_split_scores=split_scores,
        n_grouped=grouping.n_grouped,
        n_groups=grouping.n_groups,
        ensemble_weights=weights,
        ensemble_balanced_accuracy=ensemble_scores[0],
        ensemble_inner_score=ensemble_scores[1],
        ensemble_accuracy=ensemble_scores[2],
        baseline=baseline,
    )
