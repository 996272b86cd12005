"""The command line: every verb on a tiny image folder, and its errors."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from skorchlite.cli import evaluate as cli_evaluate
from skorchlite.cli import main


@pytest.fixture
def folder(tmp_path):
    """Two visibly different classes of 8 small PNGs, names with spaces."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label, (low, high) in {"dark": (0, 90), "bright": (160, 256)}.items():
        (root / label).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(low, high, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label} ({i}).png")
    return root


def test_evaluate_prints_counts_scores_and_confusion_matrix(folder, capsys):
    assert main(["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "bright" in out and "dark" in out
    assert "balanced accuracy" in out and "±" in out
    assert "Confusion matrix" in out and "Time:" in out


def test_confusion_matrix_columns_stay_apart_with_large_counts():
    # Digits: one-character labels, three-digit counts ("0176" was printed before).
    classes, matrix = np.arange(3), np.array([[176, 1, 0], [0, 176, 1000], [2, 3, 169]])
    rows = [line.split() for line in cli_evaluate._format_confusion_matrix(classes, matrix).splitlines()]
    assert rows[0] == ["0", "1", "2"]
    assert rows[1:] == [[str(c), *map(str, row)] for c, row in zip(classes, matrix, strict=True)]


def test_evaluate_ranks_several_backbones_and_heads(folder, capsys):
    args = ["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0", "--head", "knn"]
    assert main([*args, "--backbone", "efficientnet_lite0", "efficientnet_lite1"]) == 0
    out = capsys.readouterr().out
    assert "Ranked by balanced accuracy" in out
    assert out.count("efficientnet_lite1") >= 2


@pytest.mark.parametrize(
    "options, recipe",
    [
        ([], "frozen blocks features + a logistic head per layer, their log-probabilities summed (the default;"),
        (["--head", "logreg"], "frozen penultimate features + logistic regression."),
        (
            ["--head", "voting", "--layer", "mid", "penultimate"],
            "frozen mid penultimate features + a logistic head per layer",
        ),
    ],
)
def test_evaluate_says_which_recipe_runs_first(folder, capsys, options, recipe):
    """Issue 26, point 6: the default is the recommended recipe, and the output names it."""
    assert main(["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0", *options]) == 0
    lines = capsys.readouterr().out.splitlines()
    said = [line for line in lines if line.startswith("Recipe: ")]
    assert len(said) == 1 and said[0].startswith("Recipe: " + recipe), said
    assert lines.index(said[0]) < next(i for i, line in enumerate(lines) if "-fold CV" in line)


@pytest.mark.parametrize("head", ["svm", "ridge"])
def test_evaluate_heads(folder, capsys, head):
    assert main(["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0", "--head", head]) == 0
    assert f"+ {head}" in capsys.readouterr().out


def test_evaluate_without_a_folder_uses_the_bundled_digits(monkeypatch, capsys):
    images, labels = cli_evaluate._digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    keep = np.concatenate([np.flatnonzero(labels == d)[:6] for d in ("0", "1", "7")])
    monkeypatch.setattr(cli_evaluate, "_digits", lambda: (images[keep], labels[keep]))
    assert main(["evaluate", "--cv", "2", "--image-size", "64", "--verbose", "0"]) == 0
    assert "scikit-learn's bundled digits" in capsys.readouterr().out


def test_embed_writes_npy_with_an_index_and_csv(folder, tmp_path, capsys):
    npy = tmp_path / "features.npy"
    assert main(["embed", str(folder), "-o", str(npy), "--image-size", "64", "--verbose", "0"]) == 0
    features = np.load(npy, allow_pickle=False)
    assert features.shape == (16, 1280) and features.dtype == np.float32
    rows = list(csv.reader(open(npy.with_suffix(".csv"))))
    assert rows[0] == ["path", "label"] and len(rows) == 17 and rows[1][1] == "bright"
    table = tmp_path / "features.csv"
    assert main(["embed", str(folder), "-o", str(table), "--image-size", "64", "--verbose", "0"]) == 0
    rows = list(csv.reader(open(table)))
    assert rows[0][:3] == ["path", "label", "pretrainedfeatureextractor0"] and len(rows[0]) == 1282
    np.testing.assert_allclose(np.array(rows[1][2:], dtype=np.float32), features[0], rtol=1e-6)


def test_embed_writes_parquet_with_the_rows_and_columns_of_the_csv(folder, tmp_path):
    import pandas as pd

    tables = {}
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"features{suffix}"
        assert main(["embed", str(folder), "-o", str(out), "--image-size", "64", "--verbose", "0"]) == 0
        tables[suffix] = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    csv_table, parquet = tables[".csv"], tables[".parquet"]
    assert list(parquet.columns) == list(csv_table.columns) and parquet.shape == (16, 1282)
    assert parquet["path"].tolist() == csv_table["path"].tolist()
    assert parquet["label"].tolist() == csv_table["label"].tolist()
    features = parquet.iloc[:, 2:].to_numpy()
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, csv_table.iloc[:, 2:].to_numpy(), rtol=1e-6)


def test_embed_rejects_an_unknown_format(folder, tmp_path, capsys):
    assert main(["embed", str(folder), "-o", str(tmp_path / "x.txt"), "--verbose", "0"]) == 1
    assert ".npy, .csv or .parquet" in capsys.readouterr().err


def test_finetune_then_predict(folder, tmp_path, capsys):
    model = tmp_path / "model.pt"
    args = ["finetune", str(folder), "-o", str(model), "--unfreeze", "1", "--epochs", "1", "--image-size", "64"]
    assert main([*args, "--batch-size", "8", "--validation-fraction", "0", "--verbose", "0"]) == 0
    assert model.is_file() and "saved to" in capsys.readouterr().out
    images = sorted(str(p) for p in folder.rglob("*.png"))[:3]
    assert main(["predict", str(model), *images]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.split()[-2] in ("bright", "dark") for line in lines)
    assert main(["predict", str(model), *images, "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["path", "class", "probability", "p_bright", "p_dark"]
    assert abs(float(rows[1][3]) + float(rows[1][4]) - 1) < 1e-3


def test_explain_writes_a_grad_cam_overlay(folder, tmp_path, capsys):
    import joblib

    from skorchlite import FineTuneClassifier
    from skorchlite.figures import DPI
    from skorchlite.inspect.sizes import FIGSIZES

    images = sorted(folder.rglob("*.png"))
    labels = [p.parent.name for p in images]
    clf = FineTuneClassifier(unfreeze=0, augment=None, epochs=2, image_size=64, validation_fraction=0, cache=False)
    joblib.dump(clf.fit([str(p) for p in images], labels), tmp_path / "model.joblib")
    out = tmp_path / "cam.png"
    # A pickle: loaded only when the user says it trusts it.
    args = ["explain", str(tmp_path / "model.joblib"), str(images[0]), "-o", str(out), "--target", "dark"]
    assert main(args) == 1 and "--trust-pickle" in capsys.readouterr().err
    assert main([*args, "--trust-pickle"]) == 0
    printed = capsys.readouterr().out
    assert "predicted" in printed and "Grad-CAM of dark" in printed and str(out) in printed
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == tuple(round(v * DPI) for v in FIGSIZES["grad_cam"])


def test_explain_with_a_backbone_name_explains_imagenet_classes(tmp_path, capsys):
    from conftest import PHOTOS

    out = tmp_path / "cat.png"
    cat = str(PHOTOS["chelsea"][0])
    assert main(["explain", "efficientnet_lite0", cat, "-o", str(out), "--image-size", "128"]) == 0
    assert out.is_file() and "Grad-CAM of" in capsys.readouterr().out
    assert main(["explain", "efficientnet_lite0", cat, "-o", str(out), "--target", "tabbby"]) == 1
    assert "Did you mean 'tabby'" in capsys.readouterr().err
    assert main(["explain", "efficientnet_lite9", cat, "-o", str(out)]) == 1
    assert "neither a model file nor a backbone name" in capsys.readouterr().err
    assert main(["explain", "efficientnet_lite0", cat, "-o", str(tmp_path / "cat.jpg")]) == 1
    assert "must end in .png" in capsys.readouterr().err
    assert main(["explain", "efficientnet_lite0", cat, "-o", str(out), "--layer", "_head"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Did you mean '_head_act'" in err


def test_backbones_lists_offline_status(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "offline: weights here" in out
    assert "resnet50" in out and "weights not on this machine" in out
    assert main(["backbones", "--offline"]) == 0
    assert "resnet50" not in capsys.readouterr().out


def test_errors_are_one_line_without_traceback(folder, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "missing" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(empty), "--verbose", "0"]) == 1
    assert "error" in capsys.readouterr().err

    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one / "only" / "a.png")
    assert main(["evaluate", str(one), "--verbose", "0"]) == 1
    assert "two classes" in capsys.readouterr().err

    (folder / "dark" / "broken (9).png").write_bytes(b"not a png")
    assert main(["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0"]) == 1
    assert "broken (9).png" in capsys.readouterr().err

    assert main(["predict", str(tmp_path / "nope.joblib"), "x.png"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError):
        main(["--debug", "evaluate", str(tmp_path / "missing")])
