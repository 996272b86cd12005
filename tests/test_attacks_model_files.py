"""Red-team cases of issue 24 for model and weights files: no code runs from
a file unless the user trusts it by name (class 1), and any file that is not
what it should be is one clear line, never a traceback (class 8)."""

from __future__ import annotations

import contextlib
import io
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from model_files import payload_of, write_payload, write_torch_payload
from PIL import Image

from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import get_backbone
from skorchlite.cli import main

FAST = ["--image-size", "64", "--verbose", "0"]
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PICKLE_NAMES = ["model.pth", "model.pt", "model.joblib", "model.pkl"]

# Files that are not model or weights files, as users have them at hand.
NOT_MODELS = {
    "passwd": Path("/etc/passwd").read_bytes() if Path("/etc/passwd").is_file() else b"root:x:0:0:root:/root:/bin/sh\n",
    "url": b"[InternetShortcut]\nURL=https://example.com/model.pt\n",
    "empty": b"",
    "text": b"hello world\n",
    "digits": b"12345",
}


class _Exploit:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("model-files") / "images"
    for label, (low, high) in {"dark": (0, 90), "bright": (160, 256)}.items():
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(low, high, (32, 32, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def fitted(folder):
    images = sorted(str(p) for p in folder.rglob("*.png"))
    labels = [Path(p).parent.name for p in images]
    clf = FineTuneClassifier(unfreeze=0, augment=None, epochs=1, image_size=64, validation_fraction=0, cache=False)
    return clf.fit(images, labels)


def _image(folder) -> str:
    return str(sorted(folder.rglob("*.png"))[0])


def _run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)``: its status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def _fails_in_one_line(argv: list[str], *needles: str) -> str:
    status, _, err = _run(argv)
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, (status, err)
    for needle in needles:
        assert needle in err, err
    return err


def _malicious_files(tmp_path: Path, name: str) -> list[Path]:
    """A plain pickle and a joblib pickle under ``name``, each writing ``pwned`` when loaded."""
    plain, with_joblib = tmp_path / "plain" / name, tmp_path / "joblib" / name
    for path in (plain, with_joblib):
        path.parent.mkdir(exist_ok=True)
    plain.write_bytes(pickle.dumps(_Exploit(tmp_path / "pwned")))
    joblib.dump({"model": _Exploit(tmp_path / "pwned"), "weights": np.zeros(3)}, with_joblib)
    return [plain, with_joblib]


# -- class 1: no code runs from a model file unless the user trusts it -------------------


@pytest.mark.parametrize("name", PICKLE_NAMES)
def test_a_pickle_with_a_payload_is_refused_by_predict_and_explain_and_never_runs(folder, tmp_path, name):
    for path in _malicious_files(tmp_path, name):
        _fails_in_one_line(["predict", str(path), _image(folder)], name, "--trust-pickle")
        cam = tmp_path / "cam.png"
        _fails_in_one_line(["explain", str(path), _image(folder), "-o", str(cam)], name, "--trust-pickle")
        assert not cam.exists()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", PICKLE_NAMES)
def test_a_pickled_model_loads_with_trust_pickle(fitted, folder, tmp_path, name):
    path = tmp_path / name
    joblib.dump(fitted, path)
    _fails_in_one_line(["predict", str(path), _image(folder)], "--trust-pickle")
    status, out, err = _run(["predict", str(path), _image(folder), "--trust-pickle"])
    assert status == 0 and _image(folder) in out
    # Loaded, and said so: a pickle ran whatever it holds.
    assert f"warning: {path} is a pickle" in err and "skorchlite.save" in err, err
    status, out, _ = _run(["explain", str(path), _image(folder), "-o", str(tmp_path / "cam.png"), "--trust-pickle"])
    assert status == 0 and (tmp_path / "cam.png").is_file() and "Grad-CAM" in out


def test_trust_pickle_still_reports_a_file_that_is_no_model_in_one_line(folder, tmp_path):
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04\x95garbage")
    _fails_in_one_line(["predict", str(tmp_path / "m.pkl"), _image(folder), "--trust-pickle"], "m.pkl")


@pytest.mark.parametrize("name", ["model.joblib", "model.bin", "model"])
def test_a_data_only_model_loads_whatever_its_name(fitted, folder, tmp_path, name):
    path = fitted.save_weights(tmp_path / name)
    status, out, _ = _run(["predict", str(path), _image(folder)])
    assert status == 0 and _image(folder) in out


@pytest.mark.parametrize("name", ["model.joblib", "model.pkl", "model.pickle", "model", "model.pt.bak"])
def test_finetune_refuses_a_model_name_other_than_skorchlite_pt_or_pth_before_any_work(
    folder, tmp_path, monkeypatch, name
):
    def work(*args, **kwargs):
        raise AssertionError("the work started before the output name was checked")

    monkeypatch.setattr(FineTuneClassifier, "fit", work)
    _fails_in_one_line(["finetune", str(folder), "-o", str(tmp_path / name), *FAST], ".skorchlite, .pt or .pth", name)
    assert list(tmp_path.iterdir()) == []


def test_finetune_to_pth_writes_a_data_only_file_that_predict_loads(folder, tmp_path):
    model = tmp_path / "model.pth"
    args = ["finetune", str(folder), "-o", str(model), "--epochs", "1", "--unfreeze", "0", *FAST]
    assert _run([*args, "--batch-size", "8", "--validation-fraction", "0"])[0] == 0
    assert payload_of(model)["format"] == "skorchlite.FineTuneClassifier"
    status, out, _ = _run(["predict", str(model), _image(folder)])
    assert status == 0 and out.split()[-2] in ("bright", "dark")


# -- class 8: a file that is not what it should be is one line ---------------------------


def _zip_not_torch() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "not a torch file")
    return buffer.getvalue()


def _torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


READABLE_BUT_WRONG = {
    "zip": _zip_not_torch(),
    "list": _torch_bytes([1, 2, 3]),
    "wrong dict": _torch_bytes({"format": "skorchlite.FineTuneClassifier", "version": 2, "params": [], "fitted": 1}),
    "tensor": _torch_bytes(torch.zeros(3)),
    "dict of lists": _torch_bytes({"conv.weight": [1.0, 2.0]}),
    "int keys": _torch_bytes({1: torch.zeros(2)}),
}
NAMED_CASES = {**NOT_MODELS, **READABLE_BUT_WRONG}


def _check_library_error(err: BaseException, path: Path) -> None:
    assert isinstance(err, ValueError), repr(err)
    assert "\n" not in str(err) and str(path) in str(err), str(err)


@pytest.mark.parametrize("case", NAMED_CASES)
def test_a_named_non_model_file_is_one_value_error(tmp_path, case):
    path = tmp_path / "weights.pth"
    path.write_bytes(NAMED_CASES[case])
    for load in (FineTuneClassifier.load_weights, lambda p: get_backbone("efficientnet_lite0", weights=p)):
        with pytest.raises(Exception) as info:
            load(path)
        _check_library_error(info.value, path)


@PROPERTY
@given(content=st.one_of(st.binary(max_size=400), st.text(max_size=200).map(str.encode)))
@example(content=b"PK\x03\x04" + bytes(40))
@example(content=b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")  # torch's legacy magic number, then nothing
def test_any_bytes_as_a_weights_or_model_file_are_one_value_error(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    for load in (FineTuneClassifier.load_weights, lambda p: get_backbone("efficientnet_lite0", weights=p)):
        with pytest.raises(Exception) as info:
            load(path)
        _check_library_error(info.value, path)


_PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.just(torch.zeros(2))),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=8,
)


@PROPERTY
@given(data=st.data())
def test_a_model_file_with_any_value_in_any_field_loads_or_is_one_value_error(fitted, tmp_path, data):
    """Malformed but readable: each field of a real model file replaced by another plain value."""
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    write = data.draw(st.sampled_from([write_payload, write_torch_payload]))
    section = data.draw(st.sampled_from([payload, payload["params"], payload["fitted"]]))
    key = data.draw(st.sampled_from(sorted(section)))
    if data.draw(st.booleans()):
        section[key] = data.draw(_PLAIN)
    else:
        del section[key]
    write(payload, tmp_path / "m.pt")
    try:
        FineTuneClassifier.load_weights(tmp_path / "m.pt")
    except Exception as err:
        _check_library_error(err, tmp_path / "m.pt")


def _cli_cases(folder: Path, model: Path) -> list[list[str]]:
    image, out = _image(folder), str(model.parent / "out")
    return [
        ["predict", str(model), image],
        ["explain", str(model), image, "-o", out + ".png"],
        ["embed", str(folder), "-o", out + ".npy", "--weights", str(model), *FAST],
        ["evaluate", str(folder), "--cv", "2", "--weights", str(model), *FAST],
    ]


@pytest.fixture
def no_embedding(monkeypatch):
    """Any embedding would mean the bad weights were not refused first."""

    def work(*args, **kwargs):
        raise AssertionError("images were embedded with a bad weights file")

    monkeypatch.setattr(PretrainedFeatureExtractor, "transform", work)


@pytest.mark.parametrize("case", NAMED_CASES)
def test_cli_a_named_non_model_file_is_exit_1_and_one_line(folder, tmp_path, no_embedding, case):
    model = tmp_path / "model.pt"
    model.write_bytes(NAMED_CASES[case])
    for argv in _cli_cases(folder, model):
        _fails_in_one_line(argv, "model.pt")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
def test_cli_any_bytes_as_a_model_or_weights_file_are_exit_1_and_one_line(folder, tmp_path, no_embedding, content):
    model = tmp_path / "model.pth"
    model.write_bytes(content)
    for argv in _cli_cases(folder, model):
        _fails_in_one_line(argv, "model.pth")


# -- a model file's values are checked as fit checks them (classes 7, 8, 9) ----------------


def _tampered(fitted, tmp_path: Path, change) -> Path:
    payload = payload_of(fitted.save_weights(tmp_path / "m.pt"))
    change(payload)
    try:
        return write_payload(payload, tmp_path / "t.pt")
    except ValueError:  # what safetensors cannot hold (a sparse tensor): the older format can
        return write_torch_payload(payload, tmp_path / "t.pt")


def _classes(values, dtype):
    return lambda p: p["fitted"].update(classes_=np.asarray(values, dtype=dtype))


def _model(change):
    def apply(payload):
        state = payload["fitted"]["model_"]
        change(state)

    return apply


def _zero_like_sparse(state):
    key = next(iter(state))
    state[key] = state[key].to_sparse()


@pytest.mark.parametrize(
    "change, needles",
    [
        (lambda p: p["params"].update(image_size=30000), ["image_size=30000", "at most 1024"]),
        (lambda p: p["params"].pop("image_size"), ["lacks parameter image_size"]),
        (lambda p: p["fitted"].pop("history_"), ["lacks fitted history_"]),
        (_classes(["a", "a"], "<U1"), ["'a' twice"]),
        (_classes(["b", "a"], "<U1"), ["before a smaller one"]),
        (_classes([None, 1.5], "|O"), ["classes_[0] is None"]),
        (_classes([0.1, float("nan")], "<f8"), ["classes_[1] is not finite"]),
        (_classes([], "<U1"), ["no class"]),
        (lambda p: p["fitted"].update(weight_scale_=float("nan")), ["weight_scale_ is nan"]),
        (lambda p: p["fitted"].update(weight_scale_=0.0), ["weight_scale_ is 0.0"]),
        (lambda p: p["fitted"].update(best_epoch_=True), ["best_epoch_ is a bool"]),
        (
            _model(
                lambda s: s.update({k: torch.full_like(v, float("nan")) for k, v in s.items() if v.is_floating_point()})
            ),
            ["non-finite weights"],
        ),
        (_model(lambda s: s.update(extra=torch.zeros(1))), ["1 unexpected (first extra)"]),
        (_model(lambda s: s.pop(next(iter(s)))), ["1 missing (first"]),
        (_classes(["a", "b", "c"], "<U1"), ["2 of another shape (first 1.weight: [2, 1280] in the file, [3, 1280]"]),
        (_model(_zero_like_sparse), ["sparse_coo tensor"]),
    ],
)
def test_a_model_file_s_values_are_checked_as_fit_checks_them(fitted, folder, tmp_path, change, needles):
    path = _tampered(fitted, tmp_path, change)
    with pytest.raises(ValueError) as caught:
        FineTuneClassifier.load_weights(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    _fails_in_one_line(["predict", str(path), _image(folder)], *needles)


def test_pillow_s_decompression_bomb_limit_is_one_line(monkeypatch, folder, tmp_path):
    from skorchlite import cli

    def bomb(*args, **kwargs):
        raise Image.DecompressionBombError("Image size (900000000 pixels) exceeds limit of 178956970 pixels")

    monkeypatch.setattr(cli.predict, "_load_model", bomb)
    err = _fails_in_one_line(["predict", str(tmp_path / "m.pt"), _image(folder)], "exceeds limit")
    assert "internal error" not in err
