"""Issue 27, point 2: skorchlite.save and skorchlite.load share a fitted model without pickle.

Every kind of model predicts identically in a fresh process; a file that
would build a type nobody trusted is refused before anything is built; a
damaged or truncated file is one line naming it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
import torch
from cli_helpers import image_folder
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC
from torch import nn

import skorchlite
from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.cli import main
from skorchlite.model_io import TRUSTED_TYPES, PickleFileError, UntrustedTypesError

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
X = np.concatenate([RNG.integers(0, 80, (6, 32, 32, 3)), RNG.integers(170, 256, (6, 32, 32, 3))]).astype(np.uint8)
Y = np.array(["dark"] * 6 + ["bright"] * 6)
TREE = "sklearn.tree._tree.Tree"
PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _extractor(**params) -> PretrainedFeatureExtractor:
    # Module fixtures do not get the isolated cache of the function-scoped fixture: no cache.
    return PretrainedFeatureExtractor(image_size=64, cache=False, **params)


@pytest.fixture(scope="module")
def models():
    """Each kind of model the issue names, fitted on 12 small images."""
    stages = _extractor(layer="stages")
    return {
        "logistic": make_pipeline(_extractor(), LogisticRegression(max_iter=500)).fit(X, Y),
        "svc": make_pipeline(_extractor(), SVC()).fit(X, Y),
        "forest": make_pipeline(_extractor(), RandomForestClassifier(n_estimators=5, random_state=0)).fit(X, Y),
        "voting": make_pipeline(stages, LayerVotingClassifier(stages.fit().layer_widths_)).fit(X, Y),
        # unfreeze=1: the backbone's last group trains, so its weights are the file's own.
        "finetune": FineTuneClassifier(
            unfreeze=1, freeze_epochs=0, epochs=1, augment=None, image_size=64, validation_fraction=0, cache=False
        ).fit(X, Y),
    }


@pytest.fixture(scope="module")
def files(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared")
    return {name: skorchlite.save(model, folder / f"{name}.skorchlite") for name, model in models.items()}


def _outputs(model, X) -> dict[str, np.ndarray]:
    found = {"predict": model.predict(X)}
    for method in ("predict_proba", "decision_function"):
        if hasattr(model, method):
            found[method] = getattr(model, method)(X)
    return found


def _trusted(name: str) -> list[str] | None:
    return [TREE] if name == "forest" else None


# -- identical predictions in a fresh process ---------------------------------------------


def test_every_kind_of_model_predicts_identically_in_a_fresh_process(models, files, tmp_path):
    images = X[::3]  # both classes; fewer forward passes in both processes
    np.save(tmp_path / "X.npy", images)
    script = f"""
import sys, numpy as np, skorchlite
X = np.load(sys.argv[1])
for name, path in {[(name, str(path)) for name, path in files.items()]!r}:
    model = skorchlite.load(path, trusted={[TREE]!r} if name == "forest" else None)
    found = {{"predict": model.predict(X)}}
    for method in ("predict_proba", "decision_function"):
        if hasattr(model, method):
            found[method] = getattr(model, method)(X)
    np.savez(sys.argv[2] + name + ".npz", **found)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "X.npy"), str(tmp_path) + "/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for name, model in models.items():
        expected = _outputs(model, images)
        with np.load(tmp_path / f"{name}.npz", allow_pickle=False) as found:
            assert sorted(found.files) == sorted(expected), name
            np.testing.assert_array_equal(found["predict"], expected["predict"], err_msg=f"{name}.predict")
            for method in expected.keys() - {"predict"}:
                values = expected[method]
                # The network's float32 vectors may differ in the last bit between
                # processes (batch composition, thread count), never the model.
                np.testing.assert_allclose(found[method], values, rtol=1e-5, atol=1e-6, err_msg=f"{name}.{method}")


def test_a_fine_tuned_classifier_comes_back_whole(models, files):
    clf, loaded = models["finetune"], skorchlite.load(files["finetune"])
    assert type(loaded) is FineTuneClassifier and loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.best_epoch_ == clf.best_epoch_ and len(loaded.history_) == len(clf.history_)
    np.testing.assert_array_equal(loaded.transform(X), clf.transform(X))
    for name, tensor in clf.model_.state_dict().items():
        assert torch.equal(loaded.model_.state_dict()[name], tensor), name
    loaded.partial_fit(X[::2], Y[::2])  # and trains on
    assert len(loaded.history_) == len(clf.history_) + 1


def test_the_file_is_a_manifest_beside_data_and_no_pickle(files):
    for name, path in files.items():
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            members = set(archive.namelist())
            assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert manifest["format"] == "skorchlite-model" and manifest["format_version"] == 1
        assert manifest["skorchlite"] == skorchlite.__version__
        kind = "FineTuneClassifier" if name == "finetune" else "skops"
        assert manifest["kind"] == kind
        assert members == {"manifest.json", "model.safetensors" if name == "finetune" else "model.skops"}


def test_a_save_weights_file_loads_too(models, tmp_path):
    path = models["finetune"].save_weights(tmp_path / "model.pt")
    assert path.read_bytes()[4:9] == b"\0\0\0\0{"  # safetensors: a header length, then JSON
    np.testing.assert_array_equal(skorchlite.load(path).predict_proba(X), models["finetune"].predict_proba(X))


def test_path_and_device_parameters_travel_as_strings_and_the_model_is_not_changed(tmp_path):
    extractor = PretrainedFeatureExtractor(
        image_size=64, cache=tmp_path / "cache", device=torch.device("cpu"), weights="DEFAULT"
    )
    model = make_pipeline(extractor, LogisticRegression()).fit(X, Y)
    loaded = skorchlite.load(skorchlite.save(model, tmp_path / "m.skorchlite"))  # no trust in pathlib or torch
    assert loaded[0].cache == str(tmp_path / "cache") and loaded[0].device == "cpu"
    assert isinstance(extractor.cache, Path) and isinstance(extractor.device, torch.device)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


# -- trust ----------------------------------------------------------------------------------


def test_a_random_forest_needs_its_tree_type_trusted_by_name(models, files):
    with pytest.raises(UntrustedTypesError) as info:
        skorchlite.load(files["forest"])
    assert info.value.types == [TREE]
    message = str(info.value)
    assert "\n" not in message and str(files["forest"]) in message and f"trusted=['{TREE}']" in message
    for trusted in ([TREE], TREE, [__import__("sklearn.tree._tree", fromlist=["Tree"]).Tree]):
        loaded = skorchlite.load(files["forest"], trusted=trusted)
        np.testing.assert_array_equal(loaded.predict_proba(X), models["forest"].predict_proba(X))


@pytest.mark.parametrize("trusted", [True, 3, [None], {"a": 1}])
def test_trusted_must_name_types(files, trusted):
    with pytest.raises(TypeError, match="trusted must be a list of type names or types"):
        skorchlite.load(files["forest"], trusted=trusted)


def test_skorchlite_s_trusted_types_are_its_estimators_of_plain_data():
    from skorchlite.backbones import Preprocessing

    classes = (PretrainedFeatureExtractor, LayerVotingClassifier, Preprocessing)
    assert TRUSTED_TYPES == tuple(f"{cls.__module__}.{cls.__name__}" for cls in classes)


def _probe_module(folder: Path) -> Path:
    """A module that leaves a marker when it is imported, and another when its class is built."""
    marker = folder / "ran"
    (folder / "sharing_probe.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "class Probe:\n"
        "    def __setstate__(self, state):\n"
        f"        Path({str(marker)!r}).write_text('built')\n"
    )
    return marker


def _with_skops_part(path: Path, out: Path, change) -> Path:
    """``path`` with its skops part's schema changed by ``change``, saved as ``out``."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    inner = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(members["model.skops"])) as skops_part, zipfile.ZipFile(inner, "w") as new:
        for name in skops_part.namelist():
            data = skops_part.read(name)
            if name == "schema.json":
                schema = json.loads(data)
                change(schema)
                data = json.dumps(schema).encode()
            new.writestr(name, data)
    members["model.skops"] = inner.getvalue()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out


def _replace_head(module: str, cls: str):
    """Make the pipeline's last step a ``module.cls`` (an attacker's edit of the schema)."""

    def change(schema):
        steps = schema["content"]["content"]["steps"]["content"]
        head = steps[-1]["content"][-1]
        head["__module__"], head["__class__"] = module, cls

    return change


def test_a_type_injected_into_the_skops_part_is_refused_and_nothing_runs(files, tmp_path, monkeypatch):
    marker = _probe_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    tampered = _with_skops_part(files["logistic"], tmp_path / "t.skorchlite", _replace_head("sharing_probe", "Probe"))
    with pytest.raises(UntrustedTypesError) as info:
        skorchlite.load(tampered)
    assert "sharing_probe.Probe" in str(info.value) and "\n" not in str(info.value)
    assert "sharing_probe.Probe" in info.value.types
    assert not marker.exists() and "sharing_probe" not in sys.modules


def test_an_attacker_s_own_object_in_a_pipeline_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    """The file an attacker builds with skops itself, packed as a skorchlite model."""
    marker = _probe_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import sharing_probe

    data = skops.io.dumps({"model": sharing_probe.Probe()})
    marker.unlink()
    del sys.modules["sharing_probe"]
    manifest = {"format": "skorchlite-model", "format_version": 1, "kind": "skops", "skorchlite": "0.0"}
    path = tmp_path / "evil.skorchlite"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("model.skops", data)
    with pytest.raises(UntrustedTypesError, match="sharing_probe.Probe"):
        skorchlite.load(path)
    assert not marker.exists() and "sharing_probe" not in sys.modules


_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}(\.[A-Za-z_][A-Za-z0-9_]{0,15}){0,2}", fullmatch=True)


@PROPERTY
@given(module=_NAMES, cls=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True))
def test_any_type_outside_the_trusted_list_is_refused_naming_it(files, tmp_path, module, cls):
    name = f"{module}.{cls}"
    trusted_already = name in TRUSTED_TYPES or name.startswith(("sklearn.", "numpy.", "builtins."))
    assume(not trusted_already)  # skops's own trusted types are its business
    tampered = _with_skops_part(files["logistic"], tmp_path / "t.skorchlite", _replace_head(module, cls))
    with pytest.raises(UntrustedTypesError) as info:
        skorchlite.load(tampered)
    assert name in info.value.types and "\n" not in str(info.value)


def test_a_module_backbone_or_a_nested_fine_tuner_is_refused_when_saving(models, tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    preprocessing = {"size": 32, "resize_size": 32, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    model = make_pipeline(
        PretrainedFeatureExtractor(net, preprocessing=preprocessing, cache=False), LogisticRegression()
    )
    with pytest.raises(ValueError, match=r"backbone is a module \(Sequential\)"):
        skorchlite.save(model, tmp_path / "m.skorchlite")
    nested = make_pipeline(models["finetune"], LogisticRegression())
    with pytest.raises(ValueError, match="FineTuneClassifier alone"):
        skorchlite.save(nested, tmp_path / "m.skorchlite")
    with pytest.raises(NotFittedError):
        skorchlite.save(make_pipeline(_extractor(), LogisticRegression()), tmp_path / "m.skorchlite")
    assert not list(tmp_path.iterdir())


def test_voting_on_fine_tuned_layers_travels_as_its_two_steps(tmp_path):
    """What docs/strategies.md says to do while save refuses the Pipeline: each fitted step on its own."""
    widths = _extractor(layer="blocks").fit().layer_widths_
    tuned = FineTuneClassifier(
        layer="blocks", epochs=1, freeze_epochs=0, image_size=64, validation_fraction=0, random_state=0, cache=False
    )
    pipe = make_pipeline(tuned, LayerVotingClassifier(widths)).fit(X, Y)
    parts = [skorchlite.save(step, tmp_path / f"{name}.skorchlite") for name, step in pipe.steps]
    back = make_pipeline(*(skorchlite.load(path) for path in parts))
    assert back[0].layer == "blocks"
    np.testing.assert_array_equal(back.predict_proba(X), pipe.predict_proba(X))


# -- damaged, truncated, foreign files --------------------------------------------------------


def _one_line_naming(err: BaseException, path: Path) -> str:
    assert isinstance(err, ValueError), repr(err)
    assert "\n" not in str(err) and str(path) in str(err), str(err)
    return str(err)


@PROPERTY
@given(data=st.data())
def test_a_truncated_file_is_one_line_naming_it(files, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(files)))
    content = files[name].read_bytes()
    cut = data.draw(st.integers(0, len(content) - 1))
    path = tmp_path / "cut.skorchlite"
    path.write_bytes(content[:cut])
    with pytest.raises(Exception) as info:
        skorchlite.load(path, trusted=_trusted(name))
    _one_line_naming(info.value, path)


@PROPERTY
@given(data=st.data())
def test_a_damaged_byte_anywhere_loads_the_same_model_or_is_one_line(models, files, tmp_path, data):
    name = data.draw(st.sampled_from(["logistic", "voting"]))
    content = bytearray(files[name].read_bytes())
    where = data.draw(st.integers(0, len(content) - 1))
    content[where] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "damaged.skorchlite"
    path.write_bytes(bytes(content))
    try:
        loaded = skorchlite.load(path)
    except Exception as err:
        _one_line_naming(err, path)
    else:  # a byte nobody reads (a zip header's date): the data are checked by their CRC
        np.testing.assert_array_equal(loaded.predict_proba(X), models[name].predict_proba(X))


def test_a_pickle_is_never_loaded(models, tmp_path):
    path = tmp_path / "model.skorchlite"
    joblib.dump(models["logistic"], path)
    with pytest.raises(PickleFileError) as info:
        skorchlite.load(path)
    assert "never reads" in _one_line_naming(info.value, path)


@pytest.mark.parametrize(
    "manifest, needles",
    [
        ({"format": "skorchlite-model", "format_version": 2, "kind": "skops", "skorchlite": "9.9"}, ["9.9", "upgrade"]),
        ({"format": "skorchlite-model", "format_version": "1", "kind": "skops"}, ["format version 1"]),
        ({"format": "skorchlite-model", "format_version": 1, "kind": "pickle"}, ["kind pickle"]),
        ({"format": "other"}, ["not a skorchlite model file"]),
        ([1, 2], ["not a skorchlite model file"]),
    ],
)
def test_a_manifest_this_version_cannot_read_is_one_line(files, tmp_path, manifest, needles):
    path = tmp_path / "m.skorchlite"
    with zipfile.ZipFile(files["logistic"]) as source, zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("model.skops", source.read("model.skops"))
    with pytest.raises(ValueError) as info:
        skorchlite.load(path)
    message = _one_line_naming(info.value, path)
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04" + bytes(40), json.dumps({"a": 1}).encode()])
def test_bytes_that_are_no_model_are_one_line(tmp_path, content):
    path = tmp_path / "m.skorchlite"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        skorchlite.load(path)
    _one_line_naming(info.value, path)


def test_a_missing_file_or_a_folder_is_one_line(tmp_path):
    for path in (tmp_path / "missing.skorchlite", tmp_path):
        with pytest.raises(ValueError) as info:
            skorchlite.load(path)
        _one_line_naming(info.value, path)


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("cli-images"), {"dark": 4, "bright": 4})


def _image(folder: Path) -> str:
    return str(sorted(folder.rglob("*.png"))[0])


def test_cli_finetune_writes_a_shared_model_that_predict_and_explain_read(folder, tmp_path, capsys):
    model = tmp_path / "model.skorchlite"
    train = [
        "--epochs",
        "1",
        "--unfreeze",
        "0",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--validation-fraction",
        "0",
    ]
    assert main(["finetune", str(folder), "-o", str(model), *train]) == 0
    with zipfile.ZipFile(model) as archive:
        assert json.loads(archive.read("manifest.json"))["kind"] == "FineTuneClassifier"
    capsys.readouterr()
    assert main(["predict", str(model), _image(folder), "--csv"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split(",")
    assert row[1] == skorchlite.load(model).predict([_image(folder)])[0]
    assert main(["explain", str(model), _image(folder), "-o", str(tmp_path / "cam.png")]) == 0
    assert (tmp_path / "cam.png").is_file()


def test_cli_predict_and_explain_read_a_saved_pipeline_and_trust_only_the_types_named(files, folder, tmp_path, capsys):
    assert main(["predict", str(files["logistic"]), _image(folder)]) == 0
    assert main(["explain", str(files["logistic"]), _image(folder), "-o", str(tmp_path / "cam.png")]) == 0
    capsys.readouterr()
    assert main(["predict", str(files["forest"]), _image(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--trust {TREE}" in err and str(files["forest"]) in err, err
    assert main(["predict", str(files["forest"]), _image(folder), "--trust", TREE]) == 0
    assert _image(folder) in capsys.readouterr().out
