"""One way to validate parameters (issue 17, points 1 and 2): scikit-learn's
constraints on the estimators, check_params on the functions, keyword-only
constructors and the Literal aliases of the string options."""

from __future__ import annotations

import ast
import inspect
from numbers import Integral, Real
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
import pytest
import sklearn
from sklearn.utils._param_validation import InvalidParameterError

import skorchlite
from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.engine import POOLINGS, PRECISIONS, Pooling, Precision
from skorchlite.finetune.steps import BATCHNORM_MODES, OPTIMIZERS, SCHEDULES, BatchNormMode, OptimizerName, Schedule
from skorchlite.inspect.adversarial import ATTACK_METHODS, AttackMethod
from skorchlite.validation import Interval, StrOptions, check_params

POSITIVE = {"k": [Interval(Integral, 1, None, closed="left")]}


def test_check_params_raises_scikit_learns_message_naming_parameter_and_caller():
    check_params({"k": 3}, POSITIVE, "feature_maps")
    check_params({"k": np.int64(3)}, POSITIVE, "feature_maps")
    with pytest.raises(InvalidParameterError) as info:
        check_params({"k": 0}, POSITIVE, "feature_maps")
    assert str(info.value) == "The 'k' parameter of feature_maps must be an int in the range [1, inf). Got 0 instead."
    # As scikit-learn's: callers catching either kind of error keep working.
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize("value", [True, False, np.True_])
def test_intervals_refuse_booleans(value):
    for constraint in (Interval(Integral, 0, None, closed="left"), Interval(Real, 0, 1, closed="both")):
        with pytest.raises(InvalidParameterError, match="The 'x' parameter of f must be an? (int|float) in the range"):
            check_params({"x": value}, {"x": [constraint]}, "f")


def test_str_options_are_listed_in_the_order_given():
    with pytest.raises(InvalidParameterError) as info:
        check_params({"schedule": "linear"}, {"schedule": [StrOptions(["onecycle", "cosine"]), None]}, "f")
    assert "must be a str among {'onecycle', 'cosine'} or None. Got 'linear' instead." in str(info.value)


def test_notes_add_a_sentence_to_their_parameters_message_only():
    constraints = {"eps": [Interval(Real, 0, 1, closed="both")], **POSITIVE}
    notes = {"eps": "Pixels are in [0, 1] units."}
    with pytest.raises(InvalidParameterError, match=r"Got 2 instead\. Pixels are in \[0, 1\] units\.$"):
        check_params({"eps": 2, "k": 1}, constraints, "f", notes=notes)
    with pytest.raises(InvalidParameterError, match=r"Got 0 instead\.$"):
        check_params({"eps": 0.5, "k": 0}, constraints, "f", notes=notes)


def test_a_name_without_constraints_is_a_mistake_of_the_caller_not_skipped():
    with pytest.raises(KeyError, match=r"f has no constraints for \['batch'\]"):
        check_params({"batch": 0}, POSITIVE, "f")


def test_skip_parameter_validation_skips_functions_and_estimators_alike():
    with sklearn.config_context(skip_parameter_validation=True):
        check_params({"k": 0}, POSITIVE, "feature_maps")
        # fit skips the constraints too, and fails later: on cloning the string.
        with pytest.raises(TypeError, match="Cannot clone") as info:
            LayerVotingClassifier(estimator="not an estimator").fit(np.zeros((4, 2)), [0, 1, 0, 1])
        assert not isinstance(info.value, InvalidParameterError)


@pytest.mark.parametrize(
    "estimator, params, message",
    [
        (FineTuneClassifier(), {"epochs": 0}, r"The 'epochs' parameter of FineTuneClassifier must be an int"),
        (FineTuneClassifier(), {"lr": np.nan}, r"The 'lr' parameter of FineTuneClassifier must be a float"),
        (FineTuneClassifier(), {"unfreeze": True}, r"The 'unfreeze' parameter of FineTuneClassifier .* or a str"),
        (FineTuneClassifier(), {"schedule": "linear"}, r"'schedule' .* \{'onecycle', 'cosine'\} or None"),
        (PretrainedFeatureExtractor(), {"pooling": "median"}, r"\{'avg', 'max', 'avg\+max'\}. Got 'median'"),
        (LayerVotingClassifier(), {"estimator": object()}, r"'estimator' .* an object implementing 'fit'"),
    ],
)
def test_estimators_check_their_constraints_before_reading_any_data(estimator, params, message):
    # X is not images at all: the constraints fail first.
    with pytest.raises(InvalidParameterError, match=message):
        estimator.set_params(**params).fit(np.zeros((4, 3)), [0, 1, 0, 1])


def test_parameters_set_after_fit_are_checked_where_they_are_read():
    X = np.zeros((2, 32, 32, 3), np.uint8)
    extractor = PretrainedFeatureExtractor(image_size=64, cache=False).fit()
    with pytest.raises(InvalidParameterError, match="The 'batch_size' parameter of PretrainedFeatureExtractor"):
        extractor.set_params(batch_size=0).transform(X)


@pytest.mark.parametrize(
    "alias, values",
    [
        (Pooling, POOLINGS),
        (Precision, PRECISIONS),
        (BatchNormMode, BATCHNORM_MODES),
        (OptimizerName, OPTIMIZERS),
        (Schedule, SCHEDULES),
        (AttackMethod, ATTACK_METHODS),
    ],
)
def test_each_string_option_is_written_once_in_its_literal(alias, values):
    assert values == get_args(alias) and len(values) >= 2
    # Nowhere spelled out again as a tuple of the options (the old _OPTIMIZERS = ("adamw", "sgd")).
    spelled = "(" + ", ".join('"' + v + '"' if isinstance(v, str) else repr(v) for v in values) + ")"
    found = [
        path.name
        for path in Path(skorchlite.__file__).parent.rglob("*.py")
        if spelled in path.read_text(encoding="utf-8")
    ]
    assert not found, (spelled, found)


@pytest.mark.parametrize(
    "cls, name, alias",
    [
        (PretrainedFeatureExtractor, "pooling", Pooling),
        (PretrainedFeatureExtractor, "precision", Precision),
        (FineTuneClassifier, "batchnorm", BatchNormMode),
        (FineTuneClassifier, "optimizer", OptimizerName),
        (FineTuneClassifier, "schedule", Schedule),
        (FineTuneClassifier, "precision", Precision),
    ],
)
def test_constructor_parameters_are_annotated_with_their_alias(cls, name, alias):
    assert get_type_hints(cls.__init__)[name] == alias


def _public_constructors():
    for path in sorted(Path(skorchlite.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                for init in node.body:
                    if isinstance(init, ast.FunctionDef) and init.name == "__init__":
                        yield pytest.param(init, id=f"{path.stem}.{node.name}")


@pytest.mark.parametrize("init", list(_public_constructors()))
def test_public_constructors_take_at_most_two_parameters_by_position(init):
    """SLEP009: the one or two parameters an object is about may be
    positional (NetworkInputs(samples, preprocessing, ...)); the others are
    keyword-only."""
    assert len(init.args.args) - 1 <= 2, [a.arg for a in init.args.args[1:]]


def test_the_estimators_take_only_the_backbone_or_blocks_by_position():
    for cls, first in [
        (PretrainedFeatureExtractor, "backbone"),
        (FineTuneClassifier, "backbone"),
        (LayerVotingClassifier, "blocks"),
    ]:
        kinds = {p.name: p.kind for p in inspect.signature(cls).parameters.values()}
        assert kinds.pop(first) is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert set(kinds.values()) == {inspect.Parameter.KEYWORD_ONLY}, cls
    with pytest.raises(TypeError, match="positional"):
        FineTuneClassifier("efficientnet_lite0", "DEFAULT")
