"""Files and pickles of other skorchlite versions (issue 24, class 7): older
ones load with the defaults of what was added since, or fail in one line
naming the version that wrote them; newer ones fail naming both versions."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_files import payload_of, write_payload, write_torch_payload
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from torch import nn

import skorchlite
from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor, versioning
from skorchlite.backbones import identity
from skorchlite.finetune.augmentation import DefaultAugmentation
from skorchlite.persistence import _FORMAT_VERSION
from skorchlite.versioning import VERSION_KEY, InconsistentVersionWarning

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.integers(0, 80, (6, 32, 32, 3)), RNG.integers(170, 256, (6, 32, 32, 3))]).astype(np.uint8)
Y = np.array(["dark"] * 6 + ["bright"] * 6)
OLD_PICKLE = Path(__file__).parent / "data" / "finetune_0.2.0.pkl"
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ESTIMATORS = [FineTuneClassifier, PretrainedFeatureExtractor, LayerVotingClassifier]


@pytest.fixture(scope="module")
def fitted():
    clf = FineTuneClassifier(unfreeze=0, augment=None, epochs=1, image_size=64, validation_fraction=0, cache=False)
    return clf.fit(X, Y)


def _one_line(err: BaseException, *needles: str) -> str:
    message = str(err)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def _pickled_by(estimator, version: str, monkeypatch) -> bytes:
    """``estimator`` pickled as skorchlite ``version`` would have pickled it."""
    with monkeypatch.context() as patch:
        patch.setattr(versioning, "__version__", version)
        return pickle.dumps(estimator)


# -- the package version ------------------------------------------------------------


def test_the_package_version_moved_on_from_the_unversioned_releases():
    assert skorchlite.__version__ != "0.1.0"
    assert tuple(int(part) for part in skorchlite.__version__.split(".")) > (0, 1, 0)


# -- data-only model files -----------------------------------------------------------


def test_a_model_file_records_its_format_and_the_version_that_wrote_it(fitted, tmp_path):
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    assert payload["version"] == 5 == _FORMAT_VERSION and payload["skorchlite"] == skorchlite.__version__
    assert "weight_scale_" in payload["fitted"] and "multilabel_" in payload["fitted"]


def test_a_format_2_file_of_torch_save_still_loads_and_predicts_the_same(fitted, tmp_path):
    """save_weights wrote torch.save archives up to format 2; they are read with weights_only=True."""
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    payload["version"] = 2
    loaded = FineTuneClassifier.load_weights(write_torch_payload(payload, tmp_path / "v2.pt"))
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert loaded.get_params() == fitted.get_params() and loaded.best_epoch_ == fitted.best_epoch_


def test_a_format_1_file_without_weight_scale_loads_predicts_and_trains_on(fitted, tmp_path):
    """As skorchlite wrote it before weight_scale_ was saved (the KeyError of issue 24)."""
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    del payload["fitted"]["weight_scale_"], payload["skorchlite"]
    payload["version"] = 1
    write_torch_payload(payload, tmp_path / "v1.pt")
    loaded = FineTuneClassifier.load_weights(tmp_path / "v1.pt")
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    # As that version did: the next partial_fit scales its own rows, then keeps the scale.
    assert loaded.weight_scale_ is None
    weights = np.linspace(1, 3, len(X))
    loaded.partial_fit(X, Y, sample_weight=weights)
    assert loaded.weight_scale_ == pytest.approx(weights.mean())
    # And it saves again, in the current format.
    assert payload_of(loaded.save_weights(tmp_path / "v3.pt"))["version"] == _FORMAT_VERSION


def test_a_format_3_file_without_layer_loads_with_the_penultimate_features(fitted, tmp_path):
    """Format 3 (skorchlite 0.4.0) had no layer parameter: its transform gave the head's input."""
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    del payload["params"]["layer"]
    payload.update(version=3, skorchlite="0.4.0")
    loaded = FineTuneClassifier.load_weights(write_payload(payload, tmp_path / "v3.pt"))
    assert loaded.layer is None and loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))
    # From format 4 on the parameter is part of the file: one missing is damage.
    payload["version"] = _FORMAT_VERSION
    with pytest.raises(ValueError) as info:
        FineTuneClassifier.load_weights(write_payload(payload, tmp_path / "v4.pt"))
    _one_line(info.value, "v4.pt", "damaged", "parameter layer")


def test_a_current_file_keeps_layer(fitted, tmp_path):
    path = clone(fitted).set_params(layer="blocks").fit(X, Y).save_weights(tmp_path / "m.pt")
    assert FineTuneClassifier.load_weights(path).layer == "blocks"


def test_a_current_file_without_a_field_of_its_format_is_damaged(fitted, tmp_path):
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    del payload["fitted"]["weight_scale_"]
    write_payload(payload, tmp_path / "m.pt")
    with pytest.raises(ValueError) as info:
        FineTuneClassifier.load_weights(tmp_path / "m.pt")
    _one_line(info.value, "m.pt", "damaged", "weight_scale_")


def test_a_file_of_a_newer_format_fails_naming_both_versions(fitted, tmp_path):
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    payload.update(version=99, skorchlite="9.9")
    write_payload(payload, tmp_path / "new.pt")
    with pytest.raises(ValueError) as info:
        FineTuneClassifier.load_weights(tmp_path / "new.pt")
    _one_line(info.value, "new.pt", "99", "skorchlite 9.9", f"skorchlite {skorchlite.__version__}", "upgrade")


@PROPERTY
@given(
    version=st.one_of(st.integers(), st.text(max_size=20), st.none(), st.floats(), st.lists(st.integers(), max_size=3)),
    writer=st.one_of(st.text(max_size=80), st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=30)),
)
def test_any_unreadable_format_version_is_one_line_naming_the_file(fitted, tmp_path, version, writer):
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    if type(version) is int and 1 <= version <= _FORMAT_VERSION:  # a format it reads
        version = _FORMAT_VERSION + 1
    payload.update(version=version, skorchlite=writer)
    write_payload(payload, tmp_path / "other.pt")
    with pytest.raises(ValueError) as info:
        FineTuneClassifier.load_weights(tmp_path / "other.pt")
    message = _one_line(info.value, "other.pt", "format version")
    assert len(message) < 400


# -- pickles ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_pickle_records_the_version_and_unpickles_silently_in_the_same_one(cls):
    estimator = cls()
    assert estimator.__getstate__()[VERSION_KEY] == skorchlite.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = pickle.loads(pickle.dumps(estimator))
    assert restored.get_params() == estimator.get_params() and VERSION_KEY not in vars(restored)


@PROPERTY
@given(data=st.data(), version=st.text(min_size=1, max_size=12).filter(lambda v: v != skorchlite.__version__))
def test_a_pickle_of_an_older_version_gets_the_defaults_of_parameters_added_since(monkeypatch, data, version):
    cls = data.draw(st.sampled_from(ESTIMATORS))
    names = cls._get_param_names()
    added = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    estimator = cls()
    for name in added:  # as a version before them pickled it
        delattr(estimator, name)
    with pytest.warns(InconsistentVersionWarning) as record:
        restored = pickle.loads(_pickled_by(estimator, version, monkeypatch))
    # The defaults, or where a default would change what a refit does, the earlier versions' value.
    assert (
        restored.get_params()
        == cls().set_params(**{k: v for k, v in cls._params_before.items() if k in added}).get_params()
    )
    message = str(record[0].message)
    assert "\n" not in message and cls.__name__ in message and f"skorchlite {skorchlite.__version__}" in message
    assert versioning.describe_version(version) in message
    assert all(f"{name}=" in message for name in added)


def test_an_old_fitted_pickle_without_compile_predicts_as_before(fitted, monkeypatch):
    """The AttributeError ... 'compile' of issue 24: a parameter added since."""
    old = pickle.loads(pickle.dumps(fitted))
    del old.compile, old.weight_scale_
    with pytest.warns(InconsistentVersionWarning, match=r"skorchlite 0\.1\.0.*compile=False.*weight_scale_=None"):
        restored = pickle.loads(_pickled_by(old, "0.1.0", monkeypatch))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


# What the module backbone's digest of OLD_PICKLE began with: skorchlite
# 0.3.0 and earlier put the versions of the packages that wrote it there.
OLD_PICKLE_HEADER = (
    "module identity 1",
    "python 3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
    "torch 2.14.1+cu130",
    "torchvision 0.29.1+cu130",
    "numpy 2.4.6",
)


def test_a_pickle_written_before_fine_tuning_became_a_package_loads_and_predicts_as_then(monkeypatch):
    """Issue 25: ``tests/data/finetune_0.2.0.pkl`` was written by commit 120d2f6
    (``tests/data/write_old_pickle.py``); it names the modules
    ``skorchlite.finetune`` and ``skorchlite.augmentation`` of that layout.
    Its module backbone's digest held the versions of the packages that wrote
    it, which the upgrade recognises (here whatever releases run the test)."""
    monkeypatch.setattr(identity, "_HEADER_1", OLD_PICKLE_HEADER)
    # 0.3.0 added multilabel_; a model of 0.2.0 had one label per sample.
    with pytest.warns(InconsistentVersionWarning, match=r"skorchlite 0\.2\.0 .*multilabel_=False"):
        fixture = pickle.loads(OLD_PICKLE.read_bytes())
    clf, images = fixture["estimator"], fixture["X"]
    assert isinstance(clf, FineTuneClassifier) and clf.augment == DefaultAugmentation(size=18)
    assert clf._network_key_["weights_sha256"] == identity.module_identity(clf.backbone).digest
    # Other releases of torch may round the last bits differently.
    np.testing.assert_allclose(clf.predict_proba(images), fixture["proba"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.transform(images), fixture["transform"], rtol=1e-5, atol=1e-6)
    assert clf.head == "linear"  # as 0.2.0 predicted, after a refit too
    clf.set_params(warm_start=True, epochs=1).fit(images, clf.predict(images))  # and trains on
    assert len(clf.history_) == 3


def test_an_old_digest_that_other_releases_wrote_is_refused_as_a_changed_backbone(monkeypatch):
    """Where the old digest cannot be recognised (written under releases
    other than the ones it is checked against), the model is refused, never
    trusted blindly."""
    monkeypatch.setattr(identity, "_HEADER_1", (*OLD_PICKLE_HEADER[:-1], "numpy 0.0.1"))
    with pytest.warns(InconsistentVersionWarning):
        fixture = pickle.loads(OLD_PICKLE.read_bytes())
    with pytest.raises(ValueError, match="backbone or weights"):
        fixture["estimator"].predict_proba(fixture["X"])


UPGRADED = """
import pickle, sys, warnings
import numpy, torch, torchvision
# Later releases, as SciPy (which checks numpy's at import) still accepts them.
for package in (numpy, torch, torchvision):
    package.__version__ += ".post99"
warnings.simplefilter("error")  # no version warning: skorchlite's version is the same
clf, extractor, X = pickle.loads(sys.stdin.buffer.read())
sys.stdout.buffer.write(pickle.dumps((clf.predict_proba(X), extractor.transform(X))))
"""


def test_models_with_a_module_backbone_survive_an_upgrade_of_torch_and_numpy(tmp_path):
    """A module backbone's digest names torch's, torchvision's and numpy's
    classes but not their versions: under other releases the fitted models
    keep predicting (they refused before), and their cache entries are found."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    y = np.array(["dark"] * 6 + ["bright"] * 6)
    options = dict(preprocessing={"size": 16}, cache=tmp_path)
    clf = FineTuneClassifier(body, unfreeze=1, epochs=1, validation_fraction=0, random_state=0, **options).fit(X, y)
    extractor = PretrainedFeatureExtractor(body, **options).fit(X)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", UPGRADED], input=pickle.dumps((clf, extractor, X)), capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    proba, features = pickle.loads(done.stdout)
    np.testing.assert_array_equal(proba, clf.predict_proba(X))
    np.testing.assert_array_equal(features, extractor.transform(X))


def test_only_a_pickle_of_another_version_has_its_module_digest_upgraded(tmp_path, monkeypatch):
    """The upgrade digests the module's weights: a pickle of this version,
    which holds the digest as it is computed now, is loaded without it."""
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    options = dict(preprocessing={"size": 16}, cache=tmp_path)
    y = ["dark"] * 6 + ["bright"] * 6
    fitted = [
        FineTuneClassifier(body, unfreeze=1, epochs=1, validation_fraction=0, random_state=0, **options).fit(X, y),
        PretrainedFeatureExtractor(body, **options).fit(X),
    ]
    digested = []
    real = identity.module_identity
    monkeypatch.setattr(identity, "module_identity", lambda module: digested.append(module) or real(module))
    for estimator in fitted:
        digested.clear()
        pickle.loads(pickle.dumps(estimator))
        assert digested == []
        with pytest.warns(InconsistentVersionWarning):
            pickle.loads(_pickled_by(estimator, "0.3.0", monkeypatch))
        assert len(digested) == 1


def test_a_pickle_naming_the_old_home_of_efficientnet_lite_loads(fitted, monkeypatch):
    """Up to 0.2.0 the architecture was ``skorchlite.efficientnet_lite``, and
    fitted pickles name its classes there (issue 25: it moved into backbones/)."""
    from skorchlite.backbones import efficientnet_lite as architecture

    classes = [v for v in vars(architecture).values() if getattr(v, "__module__", None) == architecture.__name__]
    with monkeypatch.context() as patch:
        for cls in classes:  # as 0.2.0 named them
            patch.setattr(cls, "__module__", "skorchlite.efficientnet_lite")
        data = pickle.dumps(fitted)
    named = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            named.add((module, name))
            return super().find_class(module, name)

    restored = Recording(io.BytesIO(data)).load()
    assert {("skorchlite.efficientnet_lite", "EfficientNetLite"), ("skorchlite.efficientnet_lite", "_MBConv")} <= named
    assert not any(module == architecture.__name__ for module, _ in named)
    assert type(restored.model_[0]) is architecture.EfficientNetLite
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


def test_a_pickle_without_any_recorded_version_is_named_as_such(monkeypatch):
    state = PretrainedFeatureExtractor().__getstate__()
    del state[VERSION_KEY], state["tta"]
    restored = PretrainedFeatureExtractor.__new__(PretrainedFeatureExtractor)
    with pytest.warns(InconsistentVersionWarning, match="skorchlite 0.1.0 or earlier.*tta=False"):
        restored.__setstate__(state)
    assert restored.tta is False


def test_a_fitted_pickle_missing_state_that_cannot_be_inferred_fails_in_one_line(fitted, monkeypatch):
    old = pickle.loads(pickle.dumps(fitted))
    del old._network_key_
    with pytest.raises(ValueError) as info:
        pickle.loads(_pickled_by(old, "0.1.3", monkeypatch))
    _one_line(info.value, "FineTuneClassifier", "skorchlite 0.1.3", "_network_key_", "fit it again")


def test_a_pickle_of_a_newer_version_warns_naming_both(monkeypatch):
    with pytest.warns(InconsistentVersionWarning, match=f"skorchlite 9.9 .*skorchlite {skorchlite.__version__}"):
        pickle.loads(_pickled_by(LayerVotingClassifier(), "9.9", monkeypatch))


def test_scikit_learn_keeps_its_own_version_check_beside_ours():
    pipe = make_pipeline(PretrainedFeatureExtractor(), LogisticRegression())
    state = pipe.steps[1][1].__getstate__()
    assert "_sklearn_version" in state and VERSION_KEY not in state
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = pickle.loads(pickle.dumps(pipe))
    assert clone(restored).get_params(deep=False).keys() == pipe.get_params(deep=False).keys()


# -- other formats ------------------------------------------------------------------------


def test_a_dask_manifest_of_another_version_names_the_version_that_wrote_it(tmp_path):
    pytest.importorskip("dask")
    from skorchlite.dask import read_shards

    (tmp_path / "manifest.json").write_text(
        json.dumps({"format": "skorchlite-embeddings", "version": 2, "skorchlite": "9.9", "shards": []})
    )
    with pytest.raises(ValueError) as info:
        read_shards(tmp_path)
    _one_line(info.value, "manifest.json", "skorchlite 9.9", f"skorchlite {skorchlite.__version__}")
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a skorchlite-embeddings manifest"):
        read_shards(Path(tmp_path))
