"""Red-team cases of issue 13 for the command line, device and model files
(points 5, 12, 13 and the "safe model files" item of "Also")."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from model_files import payload_of, write_payload, write_torch_payload
from PIL import Image

from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import get_backbone
from skorchlite.cli import main
from skorchlite.finetune.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--image-size", "64", "--verbose", "0"]
TRAIN = ["--unfreeze", "0", "--batch-size", "8", "--validation-fraction", "0", *FAST]


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label, (low, high) in {"dark": (0, 90), "bright": (160, 256)}.items():
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(low, high, (32, 32, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


@pytest.fixture
def no_work(monkeypatch):
    """Embedding or training fails loudly: a check that runs first never gets there."""

    def work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr(PretrainedFeatureExtractor, "fit_transform", work)
    monkeypatch.setattr(FineTuneClassifier, "fit", work)


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _ctrl_c_in_epoch(monkeypatch, epoch: int) -> None:
    """A real SIGINT (as Ctrl-C sends) in the middle of training epoch ``epoch``."""
    train_epoch = Trainer._train_epoch

    def interrupted(self, number, *args, **kwargs):
        if number == epoch:
            signal.raise_signal(signal.SIGINT)
        return train_epoch(self, number, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)


# -- point 5: only the named paths; Ctrl-C ---------------------------------------


def test_point5_embed_npy_never_overwrites_a_csv_the_user_did_not_name(folder, tmp_path, capsys):
    precious = tmp_path / "data.csv"
    precious.write_text("the user's own table\n")
    assert main(["embed", str(folder), "-o", str(tmp_path / "data.npy"), *FAST]) == 1
    _one_line_error(capsys, "data.csv", "--index")
    assert precious.read_text() == "the user's own table\n" and not (tmp_path / "data.npy").exists()
    # Named, it is replaced; a distinct name leaves the user's file alone.
    assert (
        main(["embed", str(folder), "-o", str(tmp_path / "data.npy"), "--index", str(tmp_path / "i.csv"), *FAST]) == 0
    )
    assert precious.read_text() == "the user's own table\n"
    assert (tmp_path / "i.csv").read_text().startswith("path,label")
    assert main(["embed", str(folder), "-o", str(tmp_path / "data.npy"), "--index", str(precious), *FAST]) == 0
    assert precious.read_text().startswith("path,label")
    assert main(["embed", str(folder), "-o", str(tmp_path / "x.npy"), "--index", str(tmp_path / "x.npy"), *FAST]) == 1
    assert main(["embed", str(folder), "-o", str(tmp_path / "x.csv"), "--index", str(tmp_path / "y.csv"), *FAST]) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["data.csv", "data.npy", "i.csv"]


def test_point5_interrupted_finetune_exits_130_and_writes_nothing(folder, tmp_path, monkeypatch, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"the previous model")
    _ctrl_c_in_epoch(monkeypatch, 1)
    args = ["finetune", str(folder), "-o", str(model), "--epochs", "2", "--report", str(tmp_path / "rep"), *TRAIN]
    assert main(args) == 130
    assert "nothing written" in capsys.readouterr().err
    assert model.read_bytes() == b"the previous model" and not (tmp_path / "rep").exists()
    # Asking to keep partial results cannot keep an epoch that never ended.
    assert main([*args, "--keep-partial"]) == 130
    assert model.read_bytes() == b"the previous model" and not (tmp_path / "rep").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_point5_keep_partial_saves_the_complete_epochs_and_still_exits_130(folder, tmp_path, monkeypatch, capsys):
    model = tmp_path / "model.pt"
    _ctrl_c_in_epoch(monkeypatch, 2)
    args = ["finetune", str(folder), "-o", str(model), "--epochs", "3", "--report", str(tmp_path / "rep"), *TRAIN]
    assert main(args) == 130 and not model.exists()
    assert main([*args, "--keep-partial"]) == 130
    assert "Interrupted: trained 1 epochs" in capsys.readouterr().out
    clf = FineTuneClassifier.load_weights(model)
    assert len(clf.history_) == 1 and (tmp_path / "rep" / "learning_curves.png").is_file()


def test_point5_ctrl_c_in_any_verb_exits_130(folder, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(PretrainedFeatureExtractor, "fit_transform", interrupt)
    assert main(["embed", str(folder), "-o", str(tmp_path / "x.npy"), *FAST]) == 130
    assert main(["evaluate", str(folder), "--cv", "2", *FAST]) == 130
    assert list(tmp_path.glob("x.*")) == []


# -- point 13: output paths checked before the work ---------------------------------


@pytest.mark.parametrize(
    "make_args, needle",
    [
        (lambda d, t: ["embed", d, "-o", f"{t}/missing/x.npy"], "does not exist"),
        (lambda d, t: ["embed", d, "-o", f"{t}/x.txt"], ".npy, .csv or .parquet"),
        (lambda d, t: ["embed", d, "-o", t], "must end in"),
        (lambda d, t: ["embed", d, "-o", f"{t}/sub.npy"], "is a folder"),
        (lambda d, t: ["embed", d, "-o", f"{t}/file/x.npy"], "is not a folder"),
        (lambda d, t: ["finetune", d, "-o", f"{t}/missing/model.pt"], "does not exist"),
        (lambda d, t: ["finetune", d, "-o", f"{t}/sub.pt"], "is a folder"),
        (lambda d, t: ["finetune", d, "-o", f"{t}/m.pt", "--report", f"{t}/file"], "not a folder"),
        (lambda d, t: ["finetune", d, "-o", f"{t}/m.pth", "--report", f"{t}/file/deeper"], "not a folder"),
        (lambda d, t: ["evaluate", d, "--report", f"{t}/file"], "not a folder"),
        (lambda d, t: ["evaluate", d, "--cv", "50"], "--cv 50"),
        (lambda d, t: ["explain", f"{t}/m.joblib", "x.png", "-o", f"{t}/missing/cam.png"], "does not exist"),
        (lambda d, t: ["explain", f"{t}/m.joblib", "x.png", "-o", f"{t}/cam.jpg"], ".png"),
    ],
)
def test_point13_output_paths_are_checked_before_any_work(folder, tmp_path, capsys, no_work, make_args, needle):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub.npy").mkdir()
    (tmp_path / "sub.pt").mkdir()
    (tmp_path / "file").write_text("a file")
    assert main([*make_args(str(folder), str(tmp_path)), "--verbose", "0"]) == 1
    _one_line_error(capsys, needle)


def test_point13_unwritable_output_folder_is_refused_before_work(folder, tmp_path, capsys, no_work, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    # As root every folder is writable: the permission check itself is what is tested.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    assert main(["embed", str(folder), "-o", str(locked / "x.npy"), *FAST]) == 1
    _one_line_error(capsys, "not writable")


def test_point13_cv_below_two_is_a_usage_error(folder, no_work, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(folder), "--cv", "1"])
    assert exit_.value.code == 2 and "--cv: must be at least 2" in capsys.readouterr().err


def test_point13_finetune_report_creates_its_folder(folder, tmp_path, capsys):
    report = tmp_path / "new" / "report"
    model = tmp_path / "model.pth"
    assert main(["finetune", str(folder), "-o", str(model), "--epochs", "1", "--report", str(report), *TRAIN]) == 0
    assert (report / "learning_curves.png").is_file() and model.is_file()


# -- point 12: one clear line ------------------------------------------------------


@pytest.mark.parametrize("content", [b"nKnot a model" * 10, b"", b"\x80\x04K\x01.", b"plain text\n"])
@pytest.mark.parametrize("name", ["model.joblib", "model.pt"])
def test_point12_a_non_model_file_is_one_clear_line(folder, tmp_path, capsys, content, name):
    bogus = tmp_path / name
    bogus.write_bytes(content)
    image = str(next(folder.rglob("*.png")))
    assert main(["predict", str(bogus), image]) == 1
    _one_line_error(capsys, name)
    assert main(["explain", str(bogus), image, "-o", str(tmp_path / "cam.png")]) == 1
    _one_line_error(capsys, name)
    assert not (tmp_path / "cam.png").exists()


def test_point12_a_closed_pipe_ends_quietly():
    """``skorchlite backbones | head``: the reader leaves before the output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "skorchlite", "backbones"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 128 + signal.SIGPIPE
    assert err == ""


def test_point12_a_broken_pipe_in_any_printing_verb_is_quiet(monkeypatch, capsys):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["backbones"]) == 128 + signal.SIGPIPE
    assert capsys.readouterr().err == ""


class _Exploit:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("kind", ["garbage", "exploit", "truncated", "pickle"])
def test_point12_a_bad_weights_file_is_named_without_advising_weights_only_false(tmp_path, kind):
    path, marker = tmp_path / "weights.pth", tmp_path / "pwned"
    if kind == "garbage":
        path.write_bytes(b"\x00not weights" * 50)
    elif kind == "exploit":
        torch.save({"state_dict": _Exploit(marker)}, path)
    elif kind == "truncated":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:600])
    else:
        path.write_bytes(pickle.dumps({"w": np.zeros(3)}))
    with pytest.raises(ValueError) as info:
        get_backbone("efficientnet_lite0", weights=path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "weights_only=False" not in message and "weights_only" not in message.replace("weights_only=True", "")
    assert not marker.exists()


def test_point12_cuda_without_a_gpu_fails_at_parameter_validation(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1", 0):
        with pytest.raises(ValueError, match=r"device=.*'auto'"):
            PretrainedFeatureExtractor(device=device).fit()
        with pytest.raises(ValueError, match=r"device=.*'auto'"):
            FineTuneClassifier(device=device).fit(np.zeros((2, 8, 8, 3), np.uint8), [0, 1])
    with pytest.raises(ValueError, match="not a device torch knows"):
        PretrainedFeatureExtractor(device="gpu").fit()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="1 CUDA device"):
        PretrainedFeatureExtractor(device="cuda:3").fit()


# -- Also: a model file of data only ----------------------------------------------------


def _fitted(folder) -> tuple[FineTuneClassifier, list[str]]:
    images = sorted(str(p) for p in folder.rglob("*.png"))
    labels = [Path(p).parent.name for p in images]
    clf = FineTuneClassifier(unfreeze=1, epochs=1, image_size=64, validation_fraction=0, random_state=0, cache=False)
    return clf.fit(images, labels), images


def test_also_save_weights_round_trip_predicts_identically(folder, tmp_path):
    clf, images = _fitted(folder)
    path = clf.save_weights(tmp_path / "model.pt")
    loaded = FineTuneClassifier.load_weights(path)
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(images), clf.predict_proba(images))
    assert loaded.best_epoch_ == clf.best_epoch_ and len(loaded.history_) == len(clf.history_)
    # Integer labels keep their type.
    clf.classes_ = np.array([3, 7])
    assert FineTuneClassifier.load_weights(clf.save_weights(path)).classes_.dtype == clf.classes_.dtype


def test_also_a_loaded_model_goes_on_training_with_partial_fit(folder, tmp_path):
    clf, images = _fitted(folder)
    labels = [Path(p).parent.name for p in images]
    loaded = FineTuneClassifier.load_weights(clf.save_weights(tmp_path / "model.pt"))
    assert loaded.weight_scale_ == clf.weight_scale_
    loaded.partial_fit(images, labels)
    clf.partial_fit(images, labels)
    assert len(loaded.history_) == len(clf.history_)
    np.testing.assert_allclose(loaded.predict_proba(images), clf.predict_proba(images), atol=1e-5)


def test_also_cli_finetune_to_pt_then_predict(folder, tmp_path, capsys):
    model = tmp_path / "model.pt"
    assert main(["finetune", str(folder), "-o", str(model), "--epochs", "1", *TRAIN]) == 0
    image = str(next(folder.rglob("*.png")))
    assert main(["predict", str(model), image]) == 0
    assert image in capsys.readouterr().out


def test_also_a_malicious_weights_file_cannot_run_code(folder, tmp_path):
    clf, _ = _fitted(folder)
    path, marker = tmp_path / "model.pt", tmp_path / "pwned"
    payload = payload_of(clf.save_weights(path))
    payload["fitted"]["history_"] = _Exploit(marker)
    write_torch_payload(payload, path)  # the format torch.load reads
    with pytest.raises(ValueError, match="model.pt"):
        FineTuneClassifier.load_weights(path)
    joblib.dump(clf, path)  # a pickle under the safe name
    with pytest.raises(ValueError, match="model.pt"):
        FineTuneClassifier.load_weights(path)
    assert not marker.exists()


def test_also_weights_file_contents_are_checked(folder, tmp_path):
    clf, _ = _fitted(folder)
    path = clf.save_weights(tmp_path / "model.pt")
    payload = payload_of(path)
    for change, needle in [
        (lambda p: p.update(format="other"), "not a FineTuneClassifier weights file"),
        (lambda p: p.update(version=99), "version 99"),
        (lambda p: p["params"].update(evil=1), "evil"),
        (lambda p: p["params"].update(backbone="efficientnet_lite1"), "do not fit"),
    ]:
        for write in (write_payload, write_torch_payload):
            changed = payload_of(path)
            change(changed)
            write(changed, tmp_path / "changed.pt")
            with pytest.raises(ValueError, match=needle):
                FineTuneClassifier.load_weights(tmp_path / "changed.pt")
    assert payload["format"] == "skorchlite.FineTuneClassifier"
    with pytest.raises(ValueError, match="augment"):
        clf.set_params(augment=lambda image: image).save_weights(tmp_path / "other.pt")
