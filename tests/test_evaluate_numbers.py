"""The numbers ``skorchlite evaluate`` prints and writes (issue 28, point 3):
balanced accuracy, accuracy, class counts and the confusion matrix, on an
imbalanced folder where balanced accuracy and accuracy differ, checked
against scikit-learn computed from the out-of-fold predictions it saves,
and against the folder itself. Pages are parsed as HTML."""

from __future__ import annotations

import csv
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from skorchlite.cli import main

# Imbalanced, and all classes drawn alike: the heads err, and a rare class
# counts as much as the common one in balanced accuracy but not in accuracy.
COUNTS = {"common": 12, "rare a": 4, "rare b": 4}
SCORE = r"(\d\.\d{3}) ± (\d\.\d{3})"
# Elements without an end tag.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Tables(HTMLParser):
    """Every table of a page as rows of cell texts, and the text of each element with an id."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.by_id: dict[str, str] = {}
        self._ids: list[str | None] = []  # per open element, its id
        self._in_cell = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
            self._in_cell = True
        elif tag == "br" and self._in_cell:
            self.tables[-1][-1][-1] += " "
        if tag not in _VOID:
            self._ids.append(dict(attrs).get("id"))

    def handle_endtag(self, tag):
        self._in_cell = self._in_cell and tag not in ("td", "th")
        if tag not in _VOID:
            self._ids.pop()

    def handle_data(self, data):
        if self._in_cell:
            self.tables[-1][-1][-1] += data
        for element_id in filter(None, self._ids):
            self.by_id[element_id] = self.by_id.get(element_id, "") + data

    def table(self, *header: str) -> list[list[str]]:
        """The body rows of the one table whose header row is ``header``."""
        (found,) = [t for t in self.tables if t and [cell.strip() for cell in t[0]] == list(header)]
        return [[cell.strip() for cell in row] for row in found[1:]]


@pytest.fixture
def imbalanced(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label, n in COUNTS.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def _mean_std(scores: list[float]) -> tuple[float, float]:
    return float(np.mean(scores)), float(np.std(scores))


def test_evaluate_scores_and_counts_agree_with_scikit_learn_on_imbalanced_data(imbalanced, tmp_path, capsys):
    report = tmp_path / "report"
    args = ["evaluate", str(imbalanced), "--cv", "2", "--image-size", "64", "--verbose", "0", "--no-report-images"]
    assert main([*args, "--report", str(report)]) == 0
    out = capsys.readouterr().out

    # The reference: scikit-learn on the saved out-of-fold predictions, each
    # image's label checked against its class folder.
    with open(report / "predictions.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["image"] for row in rows) == sorted(str(p) for p in imbalanced.rglob("*.png"))
    assert all(Path(row["image"]).parent.name == row["label"] for row in rows)
    y = np.array([row["label"] for row in rows])
    predicted = np.array([row["predicted"] for row in rows])
    fold = np.array([int(row["fold"]) for row in rows])
    folds = sorted(set(fold))
    balanced = [balanced_accuracy_score(y[fold == k], predicted[fold == k]) for k in folds]
    accuracy = [accuracy_score(y[fold == k], predicted[fold == k]) for k in folds]
    assert all(abs(b - a) > 0.01 for b, a in zip(balanced, accuracy, strict=True))  # the data tell them apart

    # The terminal: the class table, the scores, the confusion matrix.
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.split() == ["class", "count", "share"]))
    table = {line.rsplit(None, 2)[0]: int(line.rsplit(None, 2)[1]) for line in lines[start + 1 : start + 4]}
    assert table == COUNTS and lines[start + 4].split()[:2] == ["total", str(sum(COUNTS.values()))]
    printed = re.search(rf"accuracy {SCORE}, balanced accuracy {SCORE}", out)
    assert printed is not None, out
    assert tuple(map(float, printed.groups())) == pytest.approx((*_mean_std(accuracy), *_mean_std(balanced)), abs=5e-4)
    classes = sorted(COUNTS)
    start = lines.index(next(line for line in lines if line.startswith("Confusion matrix")))
    matrix = [[int(v) for v in line.split()[-len(classes) :]] for line in lines[start + 2 : start + 2 + len(classes)]]
    assert matrix == confusion_matrix(y, predicted, labels=classes).tolist()

    # scores.csv, at full precision.
    with open(report / "scores.csv", newline="", encoding="utf-8") as file:
        scores = list(csv.DictReader(file))
    assert list(scores[0]) == ["backbone", "head", "fold", "test images", "accuracy", "balanced accuracy"]
    assert {(s["backbone"], s["head"]) for s in scores} == {("efficientnet_lite0", "voting")}  # the defaults
    assert [int(s["fold"]) for s in scores] == folds
    assert [int(s["test images"]) for s in scores] == [int((fold == k).sum()) for k in folds]
    assert [float(s["balanced accuracy"]) for s in scores] == pytest.approx(balanced, abs=1e-12)
    assert [float(s["accuracy"]) for s in scores] == pytest.approx(accuracy, abs=1e-12)

    # The page: headline, each fold, classes, confusion matrix.
    page = _Tables((report / "index.html").read_text(encoding="utf-8"))
    headline = [re.fullmatch(SCORE, page.by_id[key].strip()) for key in ("balanced-accuracy", "accuracy")]
    assert [tuple(map(float, m.groups())) for m in headline] == [
        pytest.approx(_mean_std(balanced), abs=5e-4),
        pytest.approx(_mean_std(accuracy), abs=5e-4),
    ]
    per_fold = page.table("fold", "test images", "balanced accuracy", "accuracy")
    assert [int(r[1]) for r in per_fold] == [int((fold == k).sum()) for k in folds]
    assert [float(r[2]) for r in per_fold] == pytest.approx(balanced, abs=5e-4)
    assert [float(r[3]) for r in per_fold] == pytest.approx(accuracy, abs=5e-4)
    assert {r[0]: int(r[1]) for r in page.table("class", "images", "share")} == {
        **COUNTS,
        "total": sum(COUNTS.values()),
    }
    cells = page.table("true \\ predicted", *classes, "total")
    assert [[int(cell.split()[0]) for cell in row[1:-1]] for row in cells if row[0] in classes] == matrix


def test_cross_validation_is_each_folds_own_model_scored_by_scikit_learn(capsys):
    """_cross_validate's out-of-fold predictions, probabilities, models and per-fold scores
    against a clone fitted on each training part here; a test part that lacks a class is named."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression

    from skorchlite.cli.evaluate import _cross_validate

    rng = np.random.default_rng(3)
    y = np.array(["a"] * 9 + ["b"] * 6 + ["c"] * 2)
    features = rng.normal(size=(len(y), 4)) + (y == "b")[:, None]
    order = rng.permutation(len(y))
    # Four folds; "c"'s two images fall in folds 1 and 3, so folds 2 and 4 lack it.
    c = np.flatnonzero(y == "c")
    rest = [i for i in order if y[i] != "c"]
    tests = [np.array([*rest[0:4], c[0]]), np.array(rest[4:8]), np.array([*rest[8:11], c[1]]), np.array(rest[11:])]
    splits = [(np.setdiff1d(np.arange(len(y)), test), test) for test in tests]
    head = LogisticRegression(C=0.5)
    with warnings.catch_warnings():
        # scikit-learn's warning about fold 2's missing class becomes the one note below, never shown.
        warnings.simplefilter("error", UserWarning)
        got = _cross_validate(features, y, head, splits, verbose=0)
    proba = np.zeros((len(y), 3))
    for k, (train, test) in enumerate(splits):
        model = clone(head).fit(features[train], y[train])
        np.testing.assert_array_equal(got["predicted"][test], model.predict(features[test]))
        np.testing.assert_array_equal(got["fold"][test], k)
        np.testing.assert_allclose(got["models"][k].coef_, model.coef_)
        proba[test] = model.predict_proba(features[test])
        assert got["accuracy"][k] == accuracy_score(y[test], model.predict(features[test]))
        assert got["balanced"][k] == balanced_accuracy_score(y[test], model.predict(features[test]))
    np.testing.assert_allclose(got["scores"], proba)
    lacking = [str(k + 1) for k, (_, test) in enumerate(splits) if set(y[test]) != set(y)]
    assert len(lacking) >= 2  # the note lists them all
    assert f"note: the test part of fold {', '.join(lacking)} lacks a class" in capsys.readouterr().err


def test_cross_validation_of_a_head_without_probabilities_has_no_scores():
    from sklearn.linear_model import RidgeClassifier

    from skorchlite.cli.evaluate import _cross_validate

    y = np.array(["a", "b"] * 4)
    features = np.random.default_rng(0).normal(size=(8, 3))
    splits = [(np.arange(4, 8), np.arange(4)), (np.arange(4), np.arange(4, 8))]
    assert _cross_validate(features, y, RidgeClassifier(), splits, verbose=0)["scores"] is None


@pytest.mark.parametrize(
    "names", [["a", "b", "c"], ["benign", "malignant", "x"], ["short", "a_much_longer_class_name"]]
)
def test_the_printed_confusion_matrix_reads_back_as_the_matrix(names):
    """Right-aligned columns of one width, wide enough for every name and count: each row's
    cells split back into its name and counts, and every column ends where its header ends."""
    from skorchlite.cli.evaluate import _format_confusion_matrix

    matrix = np.arange(len(names) ** 2).reshape(len(names), -1) * 4567 % 100003
    lines = _format_confusion_matrix(np.array(names), matrix).splitlines()
    assert lines[0].split() == names
    assert [line.split() for line in lines[1:]] == [[n, *map(str, row)] for n, row in zip(names, matrix, strict=True)]
    assert len({len(line) for line in lines}) == 1
    header_ends = [m.end() for m in re.finditer(r"\S+", lines[0])]
    for line in lines[1:]:
        assert [m.end() for m in re.finditer(r"\S+", line)][1:] == header_ends


def test_a_fold_lacking_a_predicted_class_is_scored_without_scikit_learns_warning():
    """A head that predicts a class a test part lacks: scikit-learn warns; evaluate says it once, in its note."""
    from sklearn.dummy import DummyClassifier

    from skorchlite.cli.evaluate import _cross_validate

    y = np.array(["a", "b", "c", "a", "b", "c", "a", "b"])
    # Fold 1's test part lacks "c", which the head predicts for every image.
    splits = [(np.arange(2, 8), np.array([0, 1])), (np.array([0, 1, 5, 6, 7]), np.array([2, 3, 4]))]
    head = DummyClassifier(strategy="constant", constant="c")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        got = _cross_validate(np.zeros((8, 1)), y, head, splits, verbose=0)
    for k, (_, test) in enumerate(splits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert got["balanced"][k] == balanced_accuracy_score(y[test], ["c"] * len(test))
