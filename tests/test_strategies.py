"""compare_strategies (nested, grouped), LayerVotingClassifier, and the extractor's mirror TTA."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.strategies import (
    BEST_INNER,
    ENSEMBLE,
    HEAD_C,
    Strategy,
    StrategyComparison,
    _frozen,
    _take,
    compare_strategies,
    default_strategies,
)

N = 36


def numbered_images(n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images whose first pixel spells their row; labels by brightness; groups of three."""
    rng = np.random.default_rng(0)
    y = np.array(["bright", "dark"] * (n // 2))
    X = rng.integers(0, 128, (n, 40, 40, 3), dtype=np.uint8)
    X[y == "bright"] += 100
    X[:, 0, 0, 0] = np.arange(n)
    return X, y, np.arange(n) // 3


class RowSpy(ClassifierMixin, BaseEstimator):
    """Learns each class's mean brightness; every instance logs the rows it
    was fitted on and the rows it was asked about."""

    log: list = []  # noqa: RUF012 - shared on purpose: clones log into the same list

    def __init__(self, shift: float = 0.0):
        self.shift = shift

    def fit(self, X, y):
        self.rows_ = set(X[:, 0, 0, 0].tolist())
        self.classes_ = np.unique(y)
        self.means_ = np.array([X[y == c].mean() for c in self.classes_]) + self.shift
        RowSpy.log.append((self.rows_, self))
        return self

    def predict(self, X):
        RowSpy.log.append((self.rows_, set(X[:, 0, 0, 0].tolist())))
        brightness = X.reshape(len(X), -1).mean(axis=1)
        return self.classes_[np.abs(brightness[:, None] - self.means_[None]).argmin(axis=1)]


def test_no_model_is_ever_scored_on_a_group_it_was_trained_on():
    X, y, groups = numbered_images()
    RowSpy.log.clear()
    result = compare_strategies(
        X, y, [Strategy("spy", RowSpy(), param_grid={"shift": [0.0, 5.0]})], groups=groups, cv=3
    )
    asked = [(trained, rows) for trained, rows in RowSpy.log if isinstance(rows, set)]
    # 3 outer folds x (2 settings x 5 inner folds, the default + the refit's test fold).
    assert len(asked) == 3 * (2 * 5 + 1)
    for trained, rows in asked:
        assert not set(groups[list(trained)]) & set(groups[list(rows)])
    # The outer test folds partition the images; each was asked about once by a refit model.
    refit_rows = [rows for trained, rows in asked if len(trained) + len(rows) == N]
    assert sorted(r for rows in refit_rows for r in rows) == list(range(N))
    assert result.balanced_accuracy.shape == (1, 3) and result.recommended == "spy"


def test_the_choice_is_the_best_inner_score_and_reports_its_outer_score():
    X, y, groups = numbered_images()
    # "blind" predicts one class everywhere: inner folds find it out.
    strategies = [Strategy("sees", RowSpy()), Strategy("blind", RowSpy(shift=1e6))]
    result = compare_strategies(X, y, strategies, groups=groups, cv=3)
    assert result.selected == ["sees"] * 3 and result.recommended == "sees"
    np.testing.assert_array_equal(result.selected_balanced_accuracy, result.balanced_accuracy[0])
    assert np.all(result.balanced_accuracy[1] == 0.5)
    # A choice among some of the strategies picks from those alone.
    assert result.chosen().tolist() == [0] * 3 and result.chosen(among=[1]).tolist() == [1] * 3
    text = str(result)
    assert text.index("sees") < text.index("blind") and text.splitlines()[-1] == "Use: sees"
    # Beside each outer score, the mean inner score the choice compared: the chosen row's are the choices'.
    blind = next(line for line in text.splitlines() if line.startswith("blind"))
    assert blind.split()[1:5] == ["0.500", "±", "0.000", "0.500"]
    chosen = next(line for line in text.splitlines() if line.startswith("chosen on inner folds"))
    assert float(chosen.split()[-4]) == pytest.approx(result.inner_score[0].mean())
    assert "chosen on inner folds" in text and "36 images share a group with others (12 groups)" in text


class ProbaSpy(RowSpy):
    """A RowSpy that also gives probabilities (nearer mean, likelier), logging the rows it was asked about."""

    def predict_proba(self, X):
        RowSpy.log.append((self.rows_, set(X[:, 0, 0, 0].tolist())))
        brightness = X.reshape(len(X), -1).mean(axis=1)
        closeness = -np.abs(brightness[:, None] - self.means_[None]) / 10
        proba = np.exp(closeness - closeness.max(axis=1, keepdims=True))
        return proba / proba.sum(axis=1, keepdims=True)


def test_strategies_are_averaged_with_weights_chosen_on_out_of_fold_probabilities():
    X, y, groups = numbered_images()
    RowSpy.log.clear()
    strategies = [
        Strategy("blind", ProbaSpy(shift=1e6)),
        Strategy("sees", ProbaSpy()),
        Strategy("own hold-out", ProbaSpy(), inner_folds=1),  # other images than the shared folds'
        Strategy("no probabilities", RowSpy()),
    ]
    lines = []
    result = compare_strategies(X, y, strategies, groups=groups, cv=3, log=lines.append)
    # Only the strategies on the shared inner folds, with probabilities, are weighed; blind adds nothing.
    np.testing.assert_array_equal(result.ensemble_weights, [[0] * 3, [1] * 3, [0] * 3, [0] * 3])
    np.testing.assert_array_equal(result.ensemble_balanced_accuracy, result.balanced_accuracy[1])
    np.testing.assert_array_equal(result.ensemble_accuracy, result.accuracy[1])
    np.testing.assert_array_equal(result.ensemble_inner_score, result.inner_score[1])
    # Every probability was asked of a model that never trained on those images' groups.
    asked = [(trained, rows) for trained, rows in RowSpy.log if isinstance(rows, set)]
    assert all(not set(groups[list(trained)]) & set(groups[list(rows)]) for trained, rows in asked)
    assert sum(f"{ENSEMBLE}: balanced acc. 1.000 (inner 1.000, sees 1.00)" in line for line in lines) == 3
    text = str(result)
    assert any(line.startswith(ENSEMBLE) for line in text.splitlines())
    assert ENSEMBLE not in str(compare_strategies(X, y, strategies[3:], groups=groups, cv=3))


def test_the_average_of_models_wrong_on_different_images_beats_each():
    """Three heads, each seeing one colour channel of a three-class task (its
    own class from the others, not those two apart): averaged, they see all."""
    rng = np.random.default_rng(1)
    n = 60
    y = np.repeat(["red", "green", "blue"], n // 3)
    X = rng.integers(0, 60, (n, 8, 8, 3), dtype=np.uint8)
    for c, name in enumerate(["red", "green", "blue"]):
        X[y == name, :, :, c] += 150

    def sees(channel: int) -> Pipeline:
        mean = FunctionTransformer(lambda images, c=channel: images[..., c].reshape(len(images), -1).mean(1)[:, None])
        return Pipeline([("mean", mean), ("clf", LogisticRegression())])

    strategies = [Strategy(f"sees channel {c}", sees(c)) for c in range(3)]
    result = compare_strategies(X, y, strategies, groups=None, cv=3, inner_cv=3)
    assert np.all(result.balanced_accuracy < 0.9)  # each alone mixes up the two classes it cannot see
    # In every outer fold the average beats each of them (solvers of other scikit-learn versions
    # leave an image or two wrong), and it needs more than one of them.
    assert np.all(result.ensemble_balanced_accuracy > result.balanced_accuracy.max(axis=0))
    assert np.all(result.ensemble_balanced_accuracy >= 0.9) and np.all((result.ensemble_weights > 0).sum(axis=0) > 1)


@pytest.mark.parametrize("spy", [RowSpy, ProbaSpy])
def test_the_search_is_grid_search_cv_s(spy):
    from sklearn.model_selection import GridSearchCV, GroupKFold

    from skorchlite.strategies import _search

    X, y, groups = numbered_images()
    splits = list(GroupKFold(3).split(X, y, groups))
    strategy = Strategy("spy", spy(), param_grid={"shift": [20.0, 0.0, -20.0, 1e6]})
    candidates = [{"shift": s} for s in strategy.param_grid["shift"]]
    classes = np.unique(y)
    search = _search(strategy, candidates, X, y, splits, classes)
    grid = GridSearchCV(spy(), strategy.param_grid, scoring="balanced_accuracy", cv=splits).fit(X, y)
    for k in range(3):
        np.testing.assert_array_equal(search.split_scores[:, k], grid.cv_results_[f"split{k}_test_score"])
    assert candidates[search.best] == grid.best_params_
    assert search.model.get_params() == grid.best_estimator_.get_params() and search.model.rows_ == set(range(N))
    if spy is RowSpy:
        assert search.inner_proba is None
        return
    # Each image's probabilities come from the best setting's model of the split that held it out.
    for fit_rows, score_rows in splits:
        held_out = spy(**grid.best_params_).fit(X[fit_rows], y[fit_rows])
        np.testing.assert_array_equal(search.inner_proba[score_rows], held_out.predict_proba(X[score_rows]))
    assert _search(strategy, candidates, X, y, splits, None).inner_proba is None  # none asked for


def test_probabilities_are_aligned_to_the_classes_of_the_task():
    from skorchlite.strategies import _proba

    X, y, _ = numbered_images()
    model = ProbaSpy().fit(X, y)
    own = model.predict_proba(X)
    reversed_classes = np.array(sorted(set(y), reverse=True))
    np.testing.assert_array_equal(_proba(model, X, reversed_classes), own[:, ::-1])
    np.testing.assert_array_equal(_proba(model, X, np.array(["bright", "dark", "grey"]))[:, :2], own)
    assert _proba(model, X, np.array(["bright", "grey"])) is None  # it knows a class the task lacks
    assert _proba(RowSpy().fit(X, y), X, np.unique(y)) is None  # no probabilities


def test_the_weights_are_chosen_on_the_training_part_alone(monkeypatch):
    import skorchlite.strategies as module
    from skorchlite.folds import nested_folds

    X, y, groups = numbered_images()
    calls = []
    original = module.select_ensemble

    def recording(probabilities, codes, **kwargs):
        calls.append((probabilities, codes))
        return original(probabilities, codes, **kwargs)

    monkeypatch.setattr(module, "select_ensemble", recording)
    strategies = [Strategy("sees", ProbaSpy()), Strategy("shifted", ProbaSpy(shift=30.0))]
    compare_strategies(X, y, strategies, groups=groups, cv=3)
    outer, _ = nested_folds(y, groups, [(5, ProbaSpy())], 3)
    assert len(calls) == 3
    for (probabilities, codes), (train, _) in zip(calls, outer, strict=True):
        np.testing.assert_array_equal(codes, np.searchsorted(np.unique(y), y[train]))
        assert all(len(p) == len(train) for p in probabilities)


def test_the_table_lines_up_names_in_any_script():
    """Columns, not characters: a Japanese name takes two columns a character; a control character is escaped."""
    from skorchlite.names import columns

    X, y, groups = numbered_images()
    strategies = [Strategy("見る", RowSpy()), Strategy("blind\x1b[2J", RowSpy(shift=1e6))]
    table = str(compare_strategies(X, y, strategies, groups=groups, cv=3)).splitlines()[:4]
    # Where the scores start, in columns, on every row.
    starts = {columns(line[: re.search(r"\d\.\d{3} ±", line).start()]) for line in table[1:]}
    assert len(starts) == 1, table
    assert "\x1b" not in "".join(table) and "blind\\x1b[2J" in table[2]


def test_every_candidate_setting_is_scored_on_the_inner_folds_and_logged():
    X, y, groups = numbered_images()
    lines = []
    # A list of grids: each dict one candidate, as GridSearchCV takes them.
    strategy = Strategy("spy", RowSpy(), param_grid=[{}, {"shift": [1e6]}])
    result = compare_strategies(X, y, [strategy], groups=groups, cv=3, log=lines.append)
    assert result.candidates == [[{}, {"shift": 1e6}]]
    scores = result.candidate_scores[0]
    assert scores.shape == (2, 3)
    np.testing.assert_array_equal(scores[1], 0.5)  # blind: one class everywhere
    np.testing.assert_array_equal(scores[0], result.inner_score[0])  # the best, chosen every time
    assert result.best_params == [[{}, {}, {}]]
    # Seeing on every inner fold, the best setting owes nothing to the choice: no optimism to take off.
    assert all(
        "; {} 1.000; {'shift': 1000000.0} 0.500; the best less the choice's optimism: 1.000)" in line for line in lines
    )
    assert result.candidate_split_scores[0].shape == (2, 3, 5)
    np.testing.assert_array_equal(result.candidate_split_scores[0].mean(axis=2), scores)


def comparison(*splits: list[list[float]]) -> StrategyComparison:
    """A comparison of one outer fold whose strategies scored ``splits`` (settings x inner folds) inside it."""
    n = len(splits)
    return StrategyComparison(
        names=[f"s{i}" for i in range(n)],
        balanced_accuracy=np.zeros((n, 1)),
        accuracy=np.zeros((n, 1)),
        seconds=np.zeros((n, 1)),
        candidates=[[{"C": c} for c in range(len(s))] for s in splits],
        candidate_split_scores=[np.array(s, dtype=float)[:, None, :] for s in splits],
        n_grouped=0,
        n_groups=0,
    )


def test_a_grid_s_best_is_not_preferred_for_luck_on_the_folds_that_chose_it():
    # Two settings, each best on one inner fold: their mean 0.8 owes 0.1 to choosing on those folds.
    lucky = [[0.9, 0.7], [0.7, 0.9]]
    steady = [[0.75, 0.75]]
    result = comparison(lucky, steady)
    np.testing.assert_allclose(result.inner_score[:, 0], [0.7, 0.75])
    assert result.candidate_scores[0].max() == pytest.approx(0.8)
    assert result.selected == ["s1"]
    # A setting best on every fold keeps its mean.
    np.testing.assert_allclose(comparison([[0.9, 0.8], [0.7, 0.6]]).inner_score, [[0.85]])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda n: st.lists(st.lists(st.floats(0, 1), min_size=n, max_size=n), min_size=1, max_size=5)
    )
)
def test_the_correction_only_takes_off_and_spares_what_no_luck_explains(splits):
    scores = np.array(splits)
    inner = comparison(splits).inner_score[0, 0]
    assert inner <= scores.mean(axis=1).max() + 1e-12
    # One setting, or a best setting no other beats on any fold: nothing was chosen by luck.
    assert comparison(splits[:1]).inner_score[0, 0] == pytest.approx(scores[0].mean())
    beaten = np.minimum(scores, scores.max(axis=0))
    assert comparison([scores.max(axis=0).tolist(), *beaten.tolist()]).inner_score[0, 0] == pytest.approx(
        scores.max(axis=0).mean()
    )


def test_the_derived_choice_is_grid_search_s_own_ties_included():
    X, y, groups = numbered_images()
    lines = []
    # shift=1e-3 sees as well as no shift: a tie, which GridSearchCV breaks by order.
    strategy = Strategy("spy", RowSpy(), param_grid=[{"shift": [1e-3]}, {}, {"shift": [1e6]}])
    result = compare_strategies(X, y, [strategy], groups=groups, cv=3, log=lines.append)
    assert result.best_params == [[{"shift": 1e-3}] * 3]
    for fold, line in enumerate(lines):  # the log line states GridSearchCV's best_score_ and best_params_
        assert f"(inner {result.inner_score[0, fold]:.3f}, {result.best_params[0][fold]};" in line, line


def test_duplicates_are_grouped_by_default_and_counted():
    X, y, _ = numbered_images(24)
    X[12:18] = X[0:6]  # six exact copies, also copying their labels
    y[12:18] = y[0:6]
    RowSpy.log.clear()
    result = compare_strategies(X, y, [Strategy("spy", RowSpy())], cv=3, inner_cv=2)
    assert (result.n_grouped, result.n_groups) == (12, 6)
    # A copy carries its original's row number: a model never meets one it was trained on.
    asked = [(trained, rows) for trained, rows in RowSpy.log if isinstance(rows, set)]
    assert asked and all(not trained & rows for trained, rows in asked)


def test_bad_arguments_are_clear():
    X, y, groups = numbered_images()
    with pytest.raises(ValueError, match="distinct names"):
        compare_strategies(X, y, [Strategy("a", RowSpy()), Strategy("a", RowSpy())], groups=groups)
    with pytest.raises(ValueError, match="groups has 3 entries for 36 images"):
        compare_strategies(X, y, [Strategy("a", RowSpy())], groups=[0, 1, 2])
    with pytest.raises(ValueError, match="X has 36 images and y 35 labels"):
        compare_strategies(X, y[:-1], [Strategy("a", RowSpy())])
    with pytest.raises(ValueError, match="baseline 'b' is not one of the strategies"):
        compare_strategies(X, y, [Strategy("a", RowSpy())], baseline="b")


def test_a_baseline_is_kept_unless_the_inner_winner_s_lead_is_more_than_noise():
    # Fold 2 of the BUSI table (docs/benchmarks.md): the frozen winner's lead over fine-tuning varies by fold.
    winner = [[0.813, 0.833, 0.805, 0.884, 0.836]]
    base = [[0.750, 0.821, 0.823, 0.817, 0.808]]
    result = replace(comparison(winner, base), baseline="s1")
    differences = np.subtract(winner, base)[0]
    # Nadeau & Bengio's variance, 1/5 + 1/4 of the differences', against the plain paired test's 1/5.
    plain = stats.ttest_1samp(differences, 0, alternative="greater")
    expected = stats.t.sf(plain.statistic * np.sqrt(0.2 / 0.45), 4)
    assert result.lead_p_value()[0] == pytest.approx(expected) and 0.05 < plain.pvalue < expected
    assert result.selected == ["s1"] and replace(result, baseline=None).selected == ["s0"]
    # The same lead on every inner fold is no luck: the winner is taken.
    steady = replace(comparison([[0.85] * 5], [[0.8] * 5]), baseline="s1")
    assert steady.lead_p_value()[0] == 0 and steady.selected == ["s0"]
    # A baseline with the best score is kept, with no test to run.
    assert np.isnan(replace(comparison(base, winner), baseline="s1").lead_p_value()).all()
    # Scored on other inner folds (or one hold-out), a winner is not paired with the baseline: it is kept.
    unpaired = replace(comparison([[0.9]], [[0.5, 0.6]]), baseline="s1")
    assert unpaired.lead_p_value().tolist() == [1.0] and unpaired.selected == ["s1"]
    # A choice among strategies without the baseline takes the best.
    assert result.chosen(among=[0]).tolist() == [0] and np.isnan(result.lead_p_value(among=[0])).all()
    # Significant to the plain paired t-test, not once the folds' overlapping training parts are counted.
    overlap = replace(comparison([[0.85, 0.81, 0.83, 0.86, 0.80]], [[0.8] * 5]), baseline="s1")
    plain = stats.ttest_1samp([0.05, 0.01, 0.03, 0.06, 0.0], 0, alternative="greater").pvalue
    assert plain < 0.05 < overlap.lead_p_value()[0] and overlap.selected == ["s1"]
    with pytest.raises(ValueError, match="baseline 'x' is not one of the strategies"):
        replace(result, baseline="x")


def test_a_baseline_s_grid_is_paired_fold_by_fold_less_its_luck():
    # The baseline's two settings are each best on one fold (0.5 once their luck is taken off); the
    # winner scores 0.6 but below the setting the baseline chose on every fold. Paired fold by fold
    # with the luck each fold owes the choice taken off (0.9, 0.1), its lead (-0.1, +0.3) is noise.
    result = replace(comparison([[0.8, 0.4]], [[0.9, 0.5], [0.5, 0.9]]), baseline="s1")
    np.testing.assert_allclose(result.inner_score[:, 0], [0.6, 0.5])
    assert result.lead_p_value()[0] > 0.3 and result.selected == ["s1"]


def test_the_recommendation_breaks_a_tie_of_choices_for_the_baseline():
    steady, noisy = [0.85] * 5, [0.95, 0.7, 0.9, 0.75, 0.9]
    result = StrategyComparison(
        names=["frozen", "tuned"],
        balanced_accuracy=np.zeros((2, 2)),
        accuracy=np.zeros((2, 2)),
        seconds=np.zeros((2, 2)),
        candidates=[[{}], [{}]],
        candidate_split_scores=[np.array([[steady, noisy]]), np.array([[[0.8] * 5, [0.8] * 5]])],
        n_grouped=0,
        n_groups=0,
        baseline="tuned",
    )
    # "frozen" leads in both outer folds, steadily in the first only.
    assert result.selected == ["frozen", "tuned"] and result.recommended == "tuned"
    assert replace(result, baseline=None).recommended == "frozen"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=3), min_size=2, max_size=4), st.integers(0, 3))
def test_with_a_baseline_the_choice_is_the_baseline_or_the_best_inner_score(splits, base):
    base = min(base, len(splits) - 1)
    plain = comparison(*[[row] for row in splits])
    result = replace(plain, baseline=f"s{base}")
    p = result.lead_p_value()[0]
    assert result.chosen()[0] in (base, plain.chosen()[0])
    if plain.chosen()[0] == base:
        assert np.isnan(p) and result.chosen()[0] == base
    else:
        assert 0 <= p <= 1 and (result.chosen()[0] == base) == (p >= 0.05)


def test_compare_strategies_keeps_the_baseline_only_against_noise():
    X, y, groups = numbered_images()
    # Two strategies that predict alike tie on every inner fold: the baseline, second, is kept.
    twins = [Strategy("sees", RowSpy()), Strategy("twin", RowSpy(shift=1e-9))]
    kept = compare_strategies(X, y, twins, groups=groups, cv=3, baseline="twin")
    assert kept.selected == ["twin"] * 3 and replace(kept, baseline=None).selected == ["sees"] * 3
    best_row = next(line for line in str(kept).splitlines() if line.startswith(BEST_INNER))
    assert float(best_row.split()[-4]) == pytest.approx(kept.inner_score[0].mean(), abs=5e-4)
    # "sees" beats "blind" on every inner fold by far: no noise keeps "blind".
    strategies = [Strategy("sees", RowSpy()), Strategy("blind", RowSpy(shift=1e6))]
    result = compare_strategies(X, y, strategies, groups=groups, cv=3, baseline="blind")
    assert result.baseline == "blind" and result.selected == ["sees"] * 3
    assert (result.lead_p_value() < 0.05).all()
    text = str(result)
    assert BEST_INNER in text and "blind was kept unless" in text and text.splitlines()[-1] == "Use: sees"


def test_default_strategies_cover_the_course_and_their_grids_are_parameters():
    strategies = default_strategies(["efficientnet_lite0"], cache=False)
    names = [s.name for s in strategies]
    assert names[0] == "efficientnet_lite0 penultimate + logistic" and names[-1].endswith(
        "fine-tuned, all layers, a head per layer voting"
    )
    for strategy in strategies:
        params = strategy.estimator.get_params()
        assert set(strategy.param_grid) <= set(params), strategy.name
    voting = strategies[2].estimator[-1]
    blocks = [112, 112, 192, 192, 192, 1280]  # "blocks": the residual blocks from "mid" on
    assert voting.blocks == blocks and list(strategies[2].param_grid.values())[0] == list(HEAD_C)
    # The multi-scale recipe: the same layers at 224 and 288 px, a head for each.
    features = strategies[3].estimator[0]
    assert [(e.layer, e.image_size) for _, e in features.transformer_list] == [("blocks", None), ("blocks", 288)]
    assert strategies[3].estimator[-1].blocks == blocks * 2
    # Fine-tuning is scored on the inner folds every recipe gets, not on a hold-out of its own;
    # with the defaults, its voting heads' C kept (a grid would fine-tune again).
    assert strategies[-1].inner_folds is None and strategies[-1].param_grid == {}
    assert strategies[-1].estimator.get_params() == FineTuneClassifier(random_state=0).get_params()


def test_every_strategy_without_folds_of_its_own_is_scored_on_the_same_inner_folds():
    """A choice between recipes is fair only on the same images: a one-fifth
    hold-out of fine-tuning's own over-rated it on BUSI."""
    X, y, groups = numbered_images()
    RowSpy.log.clear()
    strategies = [Strategy("frozen", RowSpy()), Strategy("fine-tuned", RowSpy(shift=1.0))]
    compare_strategies(X, y, strategies, groups=groups, cv=3)
    fitted = [trained for trained, model in RowSpy.log if isinstance(model, RowSpy)]
    # Per outer fold: 5 inner fits (the default) and a refit of the first strategy, then the same of the second.
    per_strategy = [fitted[k : k + 6] for k in range(0, len(fitted), 6)]
    assert len(per_strategy) == 6
    for outer in range(3):
        assert per_strategy[2 * outer] == per_strategy[2 * outer + 1]


def test_frozen_strategies_on_real_embeddings_run_end_to_end(tmp_path):
    X, y, groups = numbered_images(24)
    strategies = default_strategies(["efficientnet_lite0"], finetune=False, image_size=40, cache=tmp_path)
    result = compare_strategies(X, y, strategies[:1] + strategies[-1:], groups=groups, cv=2, inner_cv=2)
    assert result.balanced_accuracy.min() > 0.9  # brightness is easy
    assert set(result.selected) <= set(result.names)


# ------------------------------------------------------------ LayerVotingClassifier
@parametrize_with_checks([LayerVotingClassifier()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_layer_voting_checks_its_parameters_as_scikit_learn_does():
    # Not among the checks above: scikit-learn runs it on its own estimators only.
    check_param_validation("LayerVotingClassifier", LayerVotingClassifier())


def test_layer_voting_is_the_normalised_product_of_the_blocks_probabilities():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 7))
    y = (X[:, 0] + X[:, 5] > 0).astype(int)
    model = LayerVotingClassifier([2, 5]).fit(X, y)
    a = make_pipeline(StandardScaler(), LogisticRegression(C=0.03, class_weight="balanced", max_iter=3000))
    b = make_pipeline(StandardScaler(), LogisticRegression(C=0.03, class_weight="balanced", max_iter=3000))
    product = a.fit(X[:, :2], y).predict_proba(X[:, :2]) * b.fit(X[:, 2:], y).predict_proba(X[:, 2:])
    np.testing.assert_allclose(model.predict_proba(X), product / product.sum(1, keepdims=True), rtol=1e-10)
    assert len(model.estimators_) == 2 and model.estimators_[0].n_features_in_ == 2


def test_layer_voting_refuses_widths_that_do_not_add_up():
    X, y = np.zeros((4, 5)), np.array([0, 1, 0, 1])
    for blocks in ([2, 2], [5, 0], [6, -1]):
        with pytest.raises(ValueError, match="adding up to the 5 columns"):
            LayerVotingClassifier(blocks).fit(X, y)


def test_layer_voting_without_blocks_is_its_estimator():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    single = LogisticRegression().fit(X, y)
    np.testing.assert_allclose(
        LayerVotingClassifier(estimator=LogisticRegression()).fit(X, y).predict_proba(X),
        single.predict_proba(X),
        rtol=1e-10,
    )


# ------------------------------------------------------------ mirror TTA
def test_mirror_tta_is_the_mean_of_the_image_and_its_mirror(tmp_path):
    X, _, _ = numbered_images(6)
    plain = PretrainedFeatureExtractor(image_size=40, cache=False).fit()
    tta = PretrainedFeatureExtractor(image_size=40, tta=True, cache=tmp_path).fit()
    expected = (plain.transform(X) + plain.transform(X[:, :, ::-1].copy())) / 2
    np.testing.assert_allclose(tta.transform(X), expected, rtol=1e-4, atol=1e-4)
    assert tta.fingerprint_["tta"] == "mirror" and plain.fingerprint_["tta"] is None
    # Cached apart: a plain extractor on the same cache computes its own vectors.
    np.testing.assert_allclose(
        PretrainedFeatureExtractor(image_size=40, cache=tmp_path).fit().transform(X), plain.transform(X), rtol=1e-5
    )
    with pytest.raises(
        ValueError, match="The 'tta' parameter of PretrainedFeatureExtractor must be an instance of 'bool'"
    ):
        PretrainedFeatureExtractor(tta="yes").fit()


# ------------------------------------------------------------ the CLI verb
def test_cli_compare_ranks_the_strategies_of_a_folder(tmp_path, capsys):
    from PIL import Image

    from skorchlite.cli import main

    X, y, _ = numbered_images(24)
    folder = tmp_path / "images"  # not tmp_path, which holds the embedding cache (tests/conftest.py)
    for i, (image, label) in enumerate(zip(X, y, strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / label / f"{i}.png")
    argv = ["compare", str(folder), "--backbone", "efficientnet_lite0", "--no-finetune", "--cv", "2"]
    assert main([*argv, "--inner-cv", "2", "--image-size", "40", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "fold 1/2" not in out  # --verbose 0: the table only
    table = out[out.index("strategy ") :].splitlines()
    scores = [float(line.split()[-8]) for line in table[1:5]]  # balanced acc. ± std, inner, acc. ± std, s
    assert scores == sorted(scores, reverse=True) and "chosen on inner folds" in table[5]
    assert table[-1].startswith("Use: efficientnet_lite0")
    one = tmp_path / "one-class"
    (one / "bright").mkdir(parents=True)
    for path in list((folder / "bright").iterdir())[:3]:
        (one / "bright" / path.name).write_bytes(path.read_bytes())
    assert main(["compare", str(one)]) == 1
    assert "need at least two classes to compare strategies, found 1" in capsys.readouterr().err


def test_cli_compare_keeps_the_fine_tuner_unless_beaten(tmp_path, monkeypatch):
    from PIL import Image

    import skorchlite.strategies
    from skorchlite.cli import main

    asked = {}

    def spy(X, y, strategies, **kwargs):
        asked[tuple(s.name for s in strategies)] = kwargs["baseline"]
        return replace(comparison(*[[[0.5, 0.5]]] * len(strategies)), names=[s.name for s in strategies])

    monkeypatch.setattr(skorchlite.strategies, "compare_strategies", spy)
    folder = tmp_path / "images"
    X, y, _ = numbered_images(8)
    for i, (image, label) in enumerate(zip(X, y, strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / label / f"{i}.png")
    for finetune in ["--finetune", "--no-finetune"]:
        assert main(["compare", str(folder), "--backbone", "efficientnet_lite0", finetune]) == 0
    (tuned, baseline), (frozen, none) = asked.items()
    assert baseline == tuned[-1] and "fine-tuned" in baseline and none is None


def test_a_frozen_recipe_takes_the_documented_parameter_names():
    """docs/backbones.md's grids name the extractor's parameters "features__..." and the head's "clf__..."."""
    params = _frozen(PretrainedFeatureExtractor(), LogisticRegression()).get_params()
    assert {"features__backbone", "features__layer", "clf__C"} <= set(params)


def test_rows_of_a_list_of_paths_stay_a_list():
    paths = [f"image {i}.png" for i in range(5)]
    assert _take(paths, np.array([3, 0])) == ["image 3.png", "image 0.png"]
    np.testing.assert_array_equal(_take(np.arange(5) * 10, np.array([3, 0])), [30, 0])
