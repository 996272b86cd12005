"""Upgrades (issue 27, point 1): an extractor's fingerprint holds the
embedding format, not the package version, so a model and its cache
survive an upgrade that computes the same vectors; a genuine change is
refused, naming what changed."""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skorchlite import PretrainedFeatureExtractor, versioning
from skorchlite.cache import EmbeddingCache
from skorchlite.versioning import InconsistentVersionWarning

X = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
VERSIONS = st.from_regex(r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True)


def _bump(monkeypatch, version: str) -> None:
    """Make this process the skorchlite ``version``: every module of the
    package that holds the version (a copy included) holds ``version``."""
    current = versioning.__version__
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "skorchlite" and getattr(module, "__version__", None) == current:
            monkeypatch.setattr(module, "__version__", version)


def _transform(extractor) -> tuple[np.ndarray, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        vectors = extractor.transform(X)
    return vectors, out.getvalue()


@pytest.fixture
def fitted(tmp_path):
    extractor = PretrainedFeatureExtractor(image_size=40, cache=tmp_path / "cache", verbose=1).fit()
    vectors, _ = _transform(extractor)
    return extractor, vectors


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=VERSIONS)
def test_a_version_bump_keeps_a_pickled_model_transforming_from_its_cache(fitted, monkeypatch, version):
    extractor, vectors = fitted
    data = pickle.dumps(extractor)
    cache = EmbeddingCache(extractor.cache)
    entries = cache.size()
    recorded = extractor.__getstate__()[versioning.VERSION_KEY]
    with monkeypatch.context() as patch:
        _bump(patch, version)
        if version != recorded:
            with pytest.warns(InconsistentVersionWarning, match=f"is loaded by skorchlite {version}"):
                restored = pickle.loads(data)
        else:
            restored = pickle.loads(data)
        again, printed = _transform(restored)
        refit = PretrainedFeatureExtractor(**extractor.get_params()).fit()
    np.testing.assert_array_equal(again, vectors)
    assert "0 computed, 3 from cache" in printed, printed
    assert cache.size() == entries  # the same entries, no new namespace
    assert refit.fingerprint_ == extractor.fingerprint_


def test_a_new_embedding_format_is_refused_by_name_and_keys_new_entries(fitted, monkeypatch):
    extractor, _ = fitted
    monkeypatch.setattr(versioning, "EMBEDDING_FORMAT", versioning.EMBEDDING_FORMAT + 1)
    with pytest.raises(ValueError) as info:
        extractor.transform(X)
    assert str(info.value) == (
        f"This extractor was fitted with embedding format 1; skorchlite {versioning.__version__} computes embedding "
        "format 2, whose vectors differ: fit it again before transform, and refit the steps after it, which learned "
        "from the old vectors."
    )
    refit = PretrainedFeatureExtractor(**extractor.get_params()).fit()
    _, printed = _transform(refit)
    assert "3 computed, 0 from cache" in printed, printed


@pytest.mark.parametrize(
    ("change", "named", "not_named"),
    [
        ({"pooling": "max"}, "The extractor's parameters changed since fit (pooling 'avg' -> 'max')", "weights"),
        ({"weights": None}, "The extractor's weights changed since fit (weights 'efficientnet_lite0.", "parameters"),
    ],
)
def test_a_change_since_fit_names_what_changed(fitted, change, named, not_named):
    extractor, _ = fitted
    extractor.set_params(**change)
    with pytest.raises(ValueError) as info:
        extractor.transform(X)
    assert str(info.value).startswith(named) and not_named not in str(info.value), str(info.value)


def test_a_change_of_parameters_and_weights_together_names_both_and_the_remedy(fitted):
    extractor, _ = fitted
    extractor.set_params(pooling="max", weights=None)
    with pytest.raises(ValueError) as info:
        extractor.transform(X)
    assert str(info.value).startswith("The extractor's parameters and weights changed since fit (pooling 'avg' -> ")
    assert str(info.value).endswith("; call fit again before transform."), str(info.value)


def test_a_setting_the_fitted_fingerprint_lacks_is_named_as_changed(fitted):
    """As after an upgrade that added a setting to the fingerprint without
    a value for the models fitted before it."""
    extractor, _ = fitted
    extractor.fingerprint_ = {k: v for k, v in extractor.fingerprint_.items() if k != "pooling"}
    with pytest.raises(ValueError) as info:
        extractor.transform(X)
    assert str(info.value) == (
        "The extractor's parameters changed since fit (pooling None -> 'avg'); call fit again before transform."
    )


def _as_pickled_by(extractor, version: str) -> PretrainedFeatureExtractor:
    """``extractor`` as a version that put itself in the fingerprint pickled it."""
    state = extractor.__getstate__()
    fingerprint = dict(state["fingerprint_"])
    del fingerprint[versioning.EMBEDDING_FORMAT_KEY]
    state["fingerprint_"] = {**fingerprint, "skorchlite": version}
    state[versioning.VERSION_KEY] = version
    restored = PretrainedFeatureExtractor.__new__(PretrainedFeatureExtractor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InconsistentVersionWarning)
        restored.__setstate__(state)
    return restored


def test_a_model_of_0_2_0_which_recorded_its_version_transforms_as_format_1(fitted):
    extractor, vectors = fitted
    restored = _as_pickled_by(extractor, "0.2.0")
    assert restored.fingerprint_ == extractor.fingerprint_
    again, printed = _transform(restored)
    np.testing.assert_array_equal(again, vectors)
    assert "0 computed" in printed


@pytest.mark.parametrize("version", ["0.1.0", "0.1.9", "0.3.0"])
def test_a_model_of_a_version_of_unknown_vectors_is_refused_naming_it(fitted, version):
    restored = _as_pickled_by(fitted[0], version)
    with pytest.raises(ValueError, match=rf"fitted with the vectors of skorchlite {version}; .* embedding format 1"):
        restored.transform(X)
