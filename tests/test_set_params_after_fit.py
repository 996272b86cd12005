"""Issue 24, class 9: a parameter changed by ``set_params`` after fit meets,
at every method that reads it, the checks ``fit`` makes of it; and one that
changes the output is refused there or takes effect correctly, never stale
vectors. The parameters come from ``get_params``, the invalid values from
each estimator's ``_parameter_constraints``: a new parameter is covered, or
fails the test that lists the values to try."""

from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError, generate_invalid_param_val, make_constraint
from torch import nn

from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor, engine
from skorchlite.inspect.explainable import resolve_model

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.integers(0, 90, (3, 40, 40, 3)), RNG.integers(160, 256, (3, 40, 40, 3))]).astype(np.uint8)
Y = np.array(["dark"] * 3 + ["bright"] * 3)
TINY = {"size": 16, "resize_size": 16, "mean": (0.5,) * 3, "std": (0.25,) * 3}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


def _param_id(value) -> str:
    """A test id that is the same in every process, so that ``pytest <node id>`` finds it (mutmut
    reruns tests by id): no memory address, no set order; pytest numbers the ids that repeat."""
    if isinstance(value, dict):
        return "+".join(sorted(value))
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(value))[:40]


def invalid_values(estimator) -> list[tuple[str, object]]:
    """For each parameter, values that satisfy none of its constraints (as
    scikit-learn's own check_param_validation makes them)."""
    found = []
    for name, constraints in estimator._parameter_constraints.items():
        candidates = [object()]
        for constraint in map(make_constraint, constraints):
            try:
                candidates.append(generate_invalid_param_val(constraint))
            except NotImplementedError:
                pass
        for value in candidates:
            if not any(make_constraint(c).is_satisfied_by(value) for c in constraints):
                found.append((name, value))
    assert {name for name, _ in found} == set(estimator.get_params())
    return found


@contextlib.contextmanager
def changed(estimator, change: dict):
    """``estimator`` with ``change`` set, as ``set_params`` after fit; set back after."""
    before = {name: estimator.get_params(deep=False)[name] for name in change}
    try:
        yield estimator.set_params(**change)
    finally:
        estimator.set_params(**before)


def outcome(call, *args):
    try:
        return call(*args)
    except Exception as err:  # noqa: BLE001 - the outcome compared is the exception
        return err


def assert_same_error(actual, expected: Exception, where: str = "") -> None:
    assert isinstance(actual, Exception), f"{where}: no error, where fit raises {expected!r}"
    assert (type(actual), str(actual)) == (type(expected), str(expected)), where


def assert_refused_or_equal(actual, expected, *, refusal: str = "changed since") -> None:
    """``expected`` an error: ``actual`` is the same error (fit's check).
    Else ``actual`` equals it, or is a refusal naming the change."""
    if isinstance(expected, Exception):
        assert_same_error(actual, expected)
    elif isinstance(actual, Exception):
        assert isinstance(actual, ValueError) and refusal in str(actual), repr(actual)
    else:
        np.testing.assert_allclose(actual, expected, atol=1e-5)


# Hardware and cross-parameter checks that no constraint states.
@pytest.fixture
def no_native_bfloat16(monkeypatch):
    monkeypatch.setattr(engine, "native_bfloat16", lambda device: False)


CHECKED_BY_FIT = {
    "image size below the backbone's minimum": {"image_size": 16},
    "bfloat16 without hardware support": {"precision": "bfloat16"},
    "a CUDA device this machine lacks": {"device": "cuda:7"},
    "an empty cache path": {"cache": ""},
    "an unknown layer": {"layer": "no_such_layer"},
    "an invalid preprocessing": {"preprocessing": {"size": 16, "std": (0.0, 1.0, 1.0)}},
    "a missing weights file": {"weights": "missing.pth"},
    "an unknown backbone": {"backbone": "no_such_net"},
    "groups of unknown modules": {"layer_groups": [["no_such_module"]]},
    "early stopping without a validation split": {"n_iter_no_change": 2, "validation_fraction": 0.0},
}


def fit_checks(estimator) -> list[tuple[str, dict]]:
    params = estimator.get_params()
    return [(what, change) for what, change in CHECKED_BY_FIT.items() if set(change) <= set(params)]


# ------------------------------------------------------------------ extractor
@pytest.fixture(scope="module")
def extractor():
    return PretrainedFeatureExtractor(image_size=64, cache=False).fit()


@pytest.fixture(scope="module")
def pipeline():
    return make_pipeline(PretrainedFeatureExtractor(image_size=64, cache=False), LogisticRegression()).fit(X, Y)


EXTRACTOR_ENTRIES = {
    "transform": lambda est: est.transform(X),
    "transform_samples": lambda est: est.transform_samples(list(X)),
}


def _extractor_checks():
    return [(name, {name: value}) for name, value in invalid_values(PretrainedFeatureExtractor())] + fit_checks(
        PretrainedFeatureExtractor()
    )


@pytest.mark.parametrize("what, change", _extractor_checks(), ids=_param_id)
def test_extractor_entry_points_make_the_checks_fit_makes(extractor, pipeline, no_native_bfloat16, what, change):
    expected = outcome(lambda: clone(extractor).set_params(**change).fit())
    assert isinstance(expected, Exception), f"fit accepts {change}"
    for entry, call in EXTRACTOR_ENTRIES.items():
        assert_same_error(outcome(call, copy.deepcopy(extractor).set_params(**change)), expected, entry)
    explained = copy.deepcopy(pipeline)
    explained[0].set_params(**change)
    assert_same_error(outcome(lambda: resolve_model(explained, device="cpu")), expected, "explanation")


def extractor_alternatives(tmp: Path) -> dict:
    return {
        "backbone": Tiny(),
        "weights": None,
        "preprocessing": {"size": 64, "mean": (0.5,) * 3, "std": (0.5,) * 3},
        "layer": "mid",
        "pooling": "max",
        "tta": True,
        "image_size": 96,
        "batch_size": 1,
        "device": "cpu",
        "precision": "bfloat16",
        "num_workers": 1,
        "cache": tmp / "another-cache",
        "verbose": 1,
    }


# The same vectors, up to float32 rounding: a batch size changes the kernels'
# summation order, which moved single values by 1.1e-5 on an AMD EPYC; the
# settings that change the vectors move them by far more.
FLOAT_ROUNDING = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture
def emulated_bfloat16(monkeypatch):
    """bfloat16 allowed on any CPU: emulated it is slow, but its vectors differ as they do natively."""
    monkeypatch.setattr(engine, "native_bfloat16", lambda device: True)


@pytest.fixture(scope="module")
def warm_extractor(tmp_path_factory):
    """A fitted extractor whose cache holds its vectors of X, and those vectors."""
    fitted = PretrainedFeatureExtractor(image_size=64, cache=tmp_path_factory.mktemp("warm")).fit()
    return fitted, fitted.transform(X)


@pytest.mark.parametrize("name", sorted(PretrainedFeatureExtractor().get_params()))
def test_extractor_change_of_the_vectors_after_fit_is_refused_with_or_without_a_cache(
    warm_extractor, tmp_path, emulated_bfloat16, name
):
    """Every parameter, from ``get_params``: one whose value changes the
    vectors (computed afresh, without a cache) changes the fingerprint and
    is refused after fit, cache or not, since the steps after the extractor
    learned from the fitted vectors; one that does not changes neither and
    embeds as fitted. Fitted again, the new vectors are computed, never read
    under the old key, and the fitted settings still find theirs."""
    fitted, before = warm_extractor
    alternatives = extractor_alternatives(tmp_path)
    assert set(alternatives) == set(fitted.get_params())  # a new parameter: add its value
    change = {name: alternatives[name]}
    fresh = clone(fitted).set_params(**{"cache": False, **change}).fit()
    vectors = fresh.transform(X)
    changes_vectors = vectors.shape != before.shape or not np.allclose(vectors, before, **FLOAT_ROUNDING)
    assert changes_vectors == (fresh.fingerprint_ != fitted.fingerprint_), "the fingerprint keys exactly the vectors"
    for cache in (False, fitted.cache):
        after_fit = copy.deepcopy(fitted).set_params(**{"cache": cache, **change})
        if changes_vectors:
            with pytest.raises(ValueError, match="changed since fit"):
                after_fit.transform(X)
        else:
            np.testing.assert_allclose(after_fit.transform(X), before, **FLOAT_ROUNDING)
    refitted = copy.deepcopy(fitted).set_params(**change).fit()
    np.testing.assert_allclose(refitted.transform(X), vectors, **FLOAT_ROUNDING)
    np.testing.assert_array_equal(clone(fitted).fit().transform(X), before)


def test_explaining_a_pipeline_whose_extractor_changed_since_fit_is_refused(pipeline):
    """The same pooled width, other vectors: the head would be explained on
    features it never saw."""
    explained = copy.deepcopy(pipeline)
    explained[0].set_params(pooling="max")
    with pytest.raises(ValueError, match="changed since fit"):
        resolve_model(explained, device="cpu")


# -------------------------------------------------------------- fine-tuning
def fine_tuner(cache) -> FineTuneClassifier:
    return FineTuneClassifier(
        unfreeze=0,
        augment=None,
        epochs=1,
        image_size=64,
        batch_size=4,
        validation_fraction=0,
        random_state=0,
        cache=cache,
    )


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    return fine_tuner(tmp_path_factory.mktemp("warm")).fit(X, Y)


FINETUNE_ENTRIES = {
    "predict": lambda est, path: est.predict(X),
    "predict_proba": lambda est, path: est.predict_proba(X),
    "transform": lambda est, path: est.transform(X),
    "score": lambda est, path: est.score(X, Y),
    "partial_fit": lambda est, path: est.partial_fit(X, Y),
    "save_weights": lambda est, path: est.save_weights(path),
    "explanation": lambda est, path: resolve_model(est, device="cpu"),
}


def _finetune_checks():
    return [(name, {name: value}) for name, value in invalid_values(FineTuneClassifier())] + fit_checks(
        FineTuneClassifier()
    )


@pytest.mark.parametrize("what, change", _finetune_checks(), ids=_param_id)
def test_finetune_entry_points_make_the_checks_fit_makes(tuned, tmp_path, no_native_bfloat16, what, change):
    expected = outcome(lambda: clone(tuned).set_params(**change).fit(X, Y))
    assert isinstance(expected, Exception), f"fit accepts {change}"
    for entry, call in FINETUNE_ENTRIES.items():
        with changed(tuned, change):
            actual = outcome(call, tuned, tmp_path / "model.pt")
        assert_same_error(actual, expected, entry)
    assert not (tmp_path / "model.pt").exists()


@pytest.fixture(scope="module")
def tuned_tiny(tmp_path_factory):
    """Head-only on a small module, so that each change below runs in milliseconds."""
    return fine_tuner(tmp_path_factory.mktemp("warm")).set_params(backbone=Tiny(), image_size=16).fit(X, Y)


def finetune_alternatives(tmp: Path) -> dict:
    return {
        "backbone": "efficientnet_lite0",
        "weights": None,
        "preprocessing": {"size": 16, "mean": (0.5,) * 3, "std": (0.5,) * 3},
        "layer_groups": [["conv"]],
        "unfreeze": 1,
        "epochs": 2,
        "freeze_epochs": 0,
        "batchnorm": "train",
        "lr": 0.01,
        "lr_decay": 0.9,
        "optimizer": "sgd",
        "weight_decay": 0.0,
        "momentum": 0.5,
        "schedule": None,
        "warmup": 0.1,
        "label_smoothing": 0.1,
        "class_weight": "balanced",
        "augment": "default",
        "head": "linear",
        "tta": True,
        "layer": ["x", None],  # the input, pooled, beside the penultimate features
        "image_size": 24,
        "batch_size": 1,
        "validation_fraction": 0.5,
        "n_iter_no_change": 2,
        "device": "cpu",
        "precision": "bfloat16",
        "num_workers": 1,
        "compile": True,
        "cache": tmp / "another-cache",
        "random_state": 1,
        "warm_start": True,
        "verbose": 1,
    }


@pytest.mark.parametrize("name", sorted(FineTuneClassifier().get_params()))
def test_finetune_output_changed_after_fit_is_refused_or_right_never_stale(tuned_tiny, tmp_path, name):
    """The head reads embeddings from the cache that fit filled: a change
    that the cache key missed would serve the fitted settings' vectors. The
    same network with an empty cache is the reference."""
    alternatives = finetune_alternatives(tmp_path)
    assert set(alternatives) == set(FineTuneClassifier().get_params())  # a new parameter: add its value
    change = {name: alternatives[name]}
    fresh = {"cache": tmp_path / "cold"} if name != "cache" else {}
    for call in (lambda est: est.predict_proba(X), lambda est: est.transform(X)):
        with changed(tuned_tiny, {**change, **fresh}):
            expected = outcome(call, tuned_tiny)
        with changed(tuned_tiny, change):
            actual = outcome(call, tuned_tiny)
        assert_refused_or_equal(actual, expected, refusal="backbone or weights changed since fit")


def test_finetune_tta_set_after_fit_averages_each_image_with_its_mirror(tuned_tiny):
    """In embedding mode the head reads cached embeddings of the plain
    images: tta set after fit must reach the mirror images, not the cache."""
    assert tuned_tiny._embedding_mode_
    expected = (tuned_tiny.predict_proba(X) + tuned_tiny.predict_proba(X[:, :, ::-1])) / 2
    with changed(tuned_tiny, {"tta": True}):
        tta = tuned_tiny.predict_proba(X)
    assert not np.allclose(expected, tuned_tiny.predict_proba(X), atol=1e-4)  # the mirror matters here
    np.testing.assert_allclose(tta, expected, atol=1e-5)


# ------------------------------------------------------------------- voting
FEATURES = RNG.standard_normal((12, 5))
LABELS = np.repeat([0, 1], 6)


@pytest.fixture(scope="module")
def voter():
    return LayerVotingClassifier([2, 3]).fit(FEATURES, LABELS)


VOTING_ENTRIES = {
    "predict": lambda est: est.predict(FEATURES),
    "predict_proba": lambda est: est.predict_proba(FEATURES),
    "score": lambda est: est.score(FEATURES, LABELS),
}
VOTING_CHECKS = [
    *((name, {name: value}) for name, value in invalid_values(LayerVotingClassifier())),
    ("a block of no column", {"blocks": [0, 5]}),
    ("widths that miss columns", {"blocks": [2, 2]}),
]


@pytest.mark.parametrize("what, change", VOTING_CHECKS, ids=_param_id)
def test_voting_entry_points_make_the_checks_fit_makes(voter, what, change):
    expected = outcome(lambda: clone(voter).set_params(**change).fit(FEATURES, LABELS))
    assert isinstance(expected, Exception), f"fit accepts {change}"
    for entry, call in VOTING_ENTRIES.items():
        assert_same_error(outcome(call, copy.deepcopy(voter).set_params(**change)), expected, entry)


VOTING_ALTERNATIVES = {"blocks": [3, 2], "estimator": LogisticRegression(C=100.0)}


@pytest.mark.parametrize("name", sorted(LayerVotingClassifier().get_params()))
def test_voting_changed_after_fit_is_refused_or_the_fitted_model(voter, name):
    """Blocks say which columns each fitted clone reads, so other blocks are
    refused; the estimator is only read by fit, so the fitted clones answer."""
    assert set(VOTING_ALTERNATIVES) == set(LayerVotingClassifier().get_params())
    before = voter.predict_proba(FEATURES)
    actual = outcome(
        lambda: copy.deepcopy(voter).set_params(**{name: VOTING_ALTERNATIVES[name]}).predict_proba(FEATURES)
    )
    assert_refused_or_equal(actual, before)


def test_dask_extract_checks_a_fitted_extractor_before_any_worker_gets_it(tmp_path):
    skdask = pytest.importorskip("skorchlite.dask")
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "a.png"
    Image.fromarray(X[0]).save(path)
    fitted = PretrainedFeatureExtractor(image_size=64, cache=False).fit()
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        fitted.set_params(pooling="max")
        with pytest.raises(ValueError, match="changed since fit"):
            skdask.extract([path], fitted, client=client)
        fitted.set_params(pooling="avg", batch_size=0)
        with pytest.raises(InvalidParameterError, match="'batch_size' parameter of PretrainedFeatureExtractor"):
            skdask.extract([path], fitted, client=client)
