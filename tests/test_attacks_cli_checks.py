"""Issue 24, classes 5 and 8 on the command line: whatever can be checked fails before the first image is
embedded, in one line; sizes and rates have bounds that say why; no expected failure prints a traceback."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import pytest
from cli_helpers import image_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_attacks_cli import FAST, no_work  # noqa: F401 - the fixture, used by name
from test_attacks_cli import _one_line_error as _one_line

from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.cli import main
from skorchlite.finetune.loop import Trainer


@pytest.fixture
def no_training(monkeypatch):
    """Training fails loudly, for the checks that FineTuneClassifier.fit runs before it."""

    def work(*args, **kwargs):
        raise AssertionError("training started before the check")

    monkeypatch.setattr(Trainer, "run", work)


# -- class 5: late failures --------------------------------------------------------


@pytest.mark.usefixtures("no_work")
def test_a_class_with_one_image_fails_before_embedding(tmp_path, capsys):
    folder = image_folder(tmp_path / "images", {"a": 5, "b": 5, "lonely": 1})
    assert main(["evaluate", str(folder), "--cv", "2", *FAST]) == 1
    _one_line(capsys, "class 'lonely' has 1 image", "fold", "add images of 'lonely'")


@pytest.mark.usefixtures("no_work")
def test_duplicate_groups_that_empty_a_training_fold_name_the_grouping(tmp_path, capsys):
    folder = image_folder(tmp_path / "images", {"a": 6, "b": 6})
    (folder / "copies").mkdir()
    for i in range(3):
        (folder / "copies" / f"{i}.png").write_bytes((folder / "a" / "0.png").read_bytes())
    # Exact copies of one another, of another class's image: all in one group.
    assert main(["evaluate", str(folder), "--cv", "3", *FAST]) == 1
    _one_line(capsys, "class 'copies' has 3 images in 1 duplicate group", "--no-group-duplicates")


@pytest.mark.usefixtures("no_work")
def test_an_unavailable_second_backbone_fails_before_the_first_is_embedded(tmp_path, capsys):
    folder = image_folder(tmp_path / "images", {"a": 4, "b": 4})
    assert main(["evaluate", str(folder), "--cv", "2", "--backbone", "efficientnet_lite0", "no_such_net", *FAST]) == 1
    _one_line(capsys, "no_such_net")
    # A layer the first backbone has and the second lacks.
    layer = ["--backbone", "efficientnet_lite1", "efficientnet_lite0", "--layer", "_blocks.16.add"]
    assert main(["evaluate", str(folder), "--cv", "2", *layer, *FAST]) == 1
    _one_line(capsys, "_blocks.16.add")


@pytest.mark.usefixtures("no_work")
def test_svm_head_with_a_class_too_small_for_its_calibration_fails_first(tmp_path, capsys):
    folder = image_folder(tmp_path / "images", {"a": 6, "b": 6, "pair": 2})
    assert main(["evaluate", str(folder), "--cv", "2", "--head", "svm", *FAST]) == 1
    _one_line(capsys, "class 'pair' has 2 images", "--head svm", "another --head")


def test_svm_head_adapts_its_calibration_folds_to_a_small_class(tmp_path, capsys):
    """4 images of a class, 2 folds: 2 per training fold, where cv=3 failed after the work."""
    folder = image_folder(tmp_path / "images", {"a": 6, "b": 6, "four": 4})
    assert main(["evaluate", str(folder), "--cv", "2", "--head", "svm", "--no-group-duplicates", *FAST]) == 0
    assert "+ svm" in capsys.readouterr().out


@pytest.mark.usefixtures("no_work")
def test_compare_with_a_rare_class_fails_in_one_line_before_any_work(tmp_path, capsys):
    # Enough of the others for the default 5 inner folds: only 'rare' is short.
    folder = image_folder(tmp_path / "images", {"a": 20, "b": 20, "rare": 2})
    argv = ["compare", str(folder), "--backbone", "efficientnet_lite0", "--no-finetune", "--cv", "2", *FAST]
    assert main(argv) == 1
    _one_line(capsys, "class 'rare'", "inner fold", "add images of 'rare'")


def test_finetune_with_a_class_too_small_for_its_validation_split_fails_before_training(tmp_path, capsys, no_training):
    folder = image_folder(tmp_path / "images", {"a": 6, "b": 6, "lonely": 1})
    argv = ["finetune", str(folder), "-o", str(tmp_path / "m.pt"), "--validation-fraction", "0.2", *FAST]
    assert main(argv) == 1
    _one_line(capsys, "validation_fraction=0.2")
    assert not (tmp_path / "m.pt").exists()


# -- class 8: one line, never a traceback ------------------------------------------


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("--lr", "1e30", "at most 1"),
        ("--lr", "nan", "--lr"),
        ("--lr", "0", "above 0"),
        ("--image-size", "30000", "at most 1024"),
        ("--image-size", "8", "at least 32"),
        ("--epochs", "0", "at least 1"),
        ("--batch-size", "-3", "at least 1"),
        ("--validation-fraction", "1", "at most 0.5"),
        ("--random-state", "-1", "unsigned 32-bit"),
        ("--unfreeze", "-2", "at least 0"),
        ("--n-iter-no-change", "1.5", "expected an integer"),
        ("--verbose", "7", "at most 2"),
    ],
)
@pytest.mark.usefixtures("no_work")
def test_sizes_and_rates_are_bounded_at_parse_time(tmp_path, capsys, option, value, needle):
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", str(tmp_path), "-o", str(tmp_path / "m.pt"), f"{option}={value}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert option in line and needle in line


@pytest.mark.parametrize(
    "error, needles",
    [
        (FloatingPointError("training loss became inf at epoch 1"), ["loss became inf"]),
        (MemoryError(), ["out of memory", "--image-size", "--batch-size"]),
        (KeyError("weight_scale_"), ["a bug in skorchlite", "KeyError", "--debug"]),
    ],
)
def test_every_failure_of_the_work_is_one_line(tmp_path, capsys, monkeypatch, error, needles):
    folder = image_folder(tmp_path / "images", {"a": 3, "b": 3})

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(FineTuneClassifier, "fit", fails)
    argv = ["finetune", str(folder), "-o", str(tmp_path / "m.pt"), *FAST]
    assert main(argv) == 1
    _one_line(capsys, *needles)
    with pytest.raises(type(error)):
        main(["--debug", *argv])


class _Reached(BaseException):
    """The work began: every check passed (a BaseException, so that main lets it through)."""


def _outcome(argv: list[str]) -> tuple[int | str, str]:
    """main's exit status (or "reached": the work began) and what it wrote to stderr, which holds no traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status: int | str = main(argv)
        except _Reached:
            status = "reached"
        except SystemExit as exit_:
            status = exit_.code
    assert "Traceback" not in err.getvalue()
    return status, err.getvalue()


def _error_lines(text: str) -> int:
    return len([line for line in text.splitlines() if "error:" in line])


BOUNDS = {
    "--epochs": (int, 1, 10_000),
    "--freeze-epochs": (int, 0, 10_000),
    "--batch-size": (int, 1, 4096),
    # The option takes 32 and up; the default backbone's smallest input is 33.
    "--image-size": (int, 33, 1024),
    "--n-iter-no-change": (int, 1, 10_000),
    "--random-state": (int, 0, 2**32 - 1),
    "--lr": (float, 0, 1),
    "--validation-fraction": (float, 0, 0.5),
}

_VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-5, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "1e3", "0x10", "  7", "nan", "-inf", "1_000", "½"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(sorted(BOUNDS)), value=_VALUES)
def test_any_value_of_a_numeric_option_is_accepted_or_one_line(tmp_path_factory, monkeypatch, option, value):
    """finetune's numeric options: the run reaches its work with the value
    (which the estimator's own validation then accepts), or stops with one
    error line (status 2 from the parser, 1 from the checks made before
    the work); never a traceback."""
    tmp = tmp_path_factory.mktemp("run")
    folder = image_folder(tmp / "images", {"a": 10, "b": 10})

    def fit(self, X, y):
        self._validate_params()
        self._check_params()
        raise _Reached

    monkeypatch.setattr(FineTuneClassifier, "fit", fit)
    kind, low, high = BOUNDS[option]
    try:
        number = kind(value)
        valid = math.isfinite(number) and low <= number <= high and not (option == "--lr" and number == 0)
    except ValueError:
        valid = False
    extra = ["--validation-fraction", "0.2"] if option == "--n-iter-no-change" else []
    status, text = _outcome(
        ["finetune", str(folder), "-o", str(tmp / "m.pt"), *extra, f"{option}={value}", "--verbose=0"]
    )
    assert status == "reached" if valid else status in (1, 2), text
    assert valid or _error_lines(text) == 1, text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cv=st.one_of(st.integers(-3, 30), st.integers(-(2**70), 2**70)))
def test_any_number_of_folds_reaches_the_work_or_is_one_line(tmp_path_factory, monkeypatch, cv):
    """evaluate --cv N on 6 + 6 images: 2 to 6 folds reach the embedding; any
    other number stops first, in one line (status 2 at parsing, 1 at the fold check)."""
    folder = image_folder(tmp_path_factory.mktemp("run") / "images", {"a": 6, "b": 6})

    def reached(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(PretrainedFeatureExtractor, "fit_transform", reached)
    status, text = _outcome(["evaluate", str(folder), f"--cv={cv}", "--no-group-duplicates", *FAST])
    if 2 <= cv <= 6:
        assert status == "reached", text
    else:
        assert status == (2 if cv < 2 or cv > 10_000 else 1) and _error_lines(text) == 1, text


@pytest.mark.parametrize("value", ["0\r", "99999\u2028", "\x1b[2J5"])
def test_a_bad_number_never_reaches_the_terminal_raw(capsys, tmp_path, value):
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path), "--cv", value])
    err = capsys.readouterr().err
    assert not any(c in err for c in "\r\u2028\x1b") and err.count("error:") == 1
    assert "got '" in err.splitlines()[-1]


@pytest.mark.parametrize("model", ["folder", "/dev/zero"])
def test_predict_names_a_model_that_is_not_a_regular_file_as_such(capsys, tmp_path, model):
    path = str(tmp_path) if model == "folder" else model
    assert main(["predict", path, str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" not in err
    assert ("is a folder" if model == "folder" else "not a regular file") in err


def test_a_bad_layer_is_a_short_line_that_says_how_to_list_them(capsys, tmp_path):
    folder = image_folder(tmp_path / "images", {"a": 2, "b": 2})
    assert main(["embed", str(folder), "-o", str(tmp_path / "f.csv"), "--layer", "_blocks.99", "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 600, err
    assert "skorchlite backbones --layers efficientnet_lite0" in err and "_blocks.9" in err


def test_a_test_fold_without_a_class_is_one_note_not_sklearn_s_warnings(capsys, tmp_path):
    folder = image_folder(tmp_path / "images", {"a": 6, "b": 3})
    with warnings.catch_warnings(record=True) as caught:  # pytest would otherwise keep them from stderr
        warnings.simplefilter("always")
        assert main(["evaluate", str(folder), "--cv", "4", "--no-group-duplicates", *FAST]) == 0
    assert not [w for w in caught if "sklearn" in w.filename], [str(w.message) for w in caught]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: the test part of fold") and "lacks a class" in err, err
