"""Evaluation plots: valid PNGs of fixed size, real content, the right images and curves."""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from skorchlite.report import (
    DPI,
    FIGSIZES,
    drawing,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_misclassified,
    plot_roc_pr,
    plots,
    write_report,
)
from skorchlite.report.sections import per_class_section

CLASSES = np.array(["benign", "malignant", "normal"])
NAN = float("nan")


def read_png(path: Path, kind: str) -> np.ndarray:
    """Check that ``path`` is a sound PNG of the size of ``kind``; return its RGB pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:  # verify() leaves the file unusable: reopen
        image.load()
        width, height = FIGSIZES[kind]
        assert image.size == (round(width * DPI), round(height * DPI))
        pixels = np.asarray(image.convert("RGB"))
    assert_not_blank(pixels)
    return pixels


def assert_not_blank(pixels: np.ndarray) -> None:
    packed = pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    colours = np.unique(packed)
    assert len(colours) > 50, f"only {len(colours)} colours"
    assert pixels.std() > 5
    assert (pixels < 128).mean() > 0.001  # some dark ink: text, lines, cells


def suptitle(fig) -> str:
    # Figure.get_suptitle() is matplotlib >= 3.8; the report supports 3.7.
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


@pytest.fixture
def figures(monkeypatch):
    """The figures drawn, captured on their way to being saved."""
    drawn = []
    save = plots.save_figure

    def capture(fig, path):
        drawn.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "save_figure", capture)
    return drawn


def predictions(n: int = 90, seed: int = 0):
    """Labels, probabilities that favour the true class, and their argmax."""
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n)
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), np.searchsorted(CLASSES, y)] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba, CLASSES[proba.argmax(axis=1)]


def history(valid: bool = True) -> list[dict]:
    """Two head epochs, then four fine-tune epochs; epoch 4 has no validation scores."""
    records = []
    for epoch in range(1, 7):
        records.append(
            {
                "epoch": epoch,
                "phase": "head" if epoch <= 2 else "fine-tune",
                "train_loss": 1.5 / epoch,
                "valid_loss": (1.0 / epoch**0.5 if epoch != 4 else NAN) if valid else NAN,
                "valid_accuracy": (0.5 + 0.07 * epoch if epoch != 4 else NAN) if valid else NAN,
                "lr": 1e-3 if epoch <= 2 else 5e-4 * (7 - epoch) / 4,
                "seconds": 0.5,
            }
        )
    return records


# -- confusion matrix ----------------------------------------------------------


def test_confusion_matrix_png(tmp_path, figures):
    y, _, pred = predictions()
    path = plot_confusion_matrix(y, pred, tmp_path / "cm.png")
    assert path == tmp_path / "cm.png"
    read_png(path, "confusion_matrix")
    counts, normalised = (ax for ax in figures[0].axes if ax.images)
    assert [t.get_text() for t in counts.get_xticklabels()] == list(CLASSES)
    cells = [float(t.get_text()) for t in normalised.texts]
    np.testing.assert_allclose(np.reshape(cells, (3, 3)).sum(axis=1), 1, atol=0.02)
    assert "accuracy" in counts.get_title()


def test_confusion_matrix_differs_between_matrices_and_is_deterministic(tmp_path):
    y, _, pred = predictions()
    first = read_png(plot_confusion_matrix(y, pred, tmp_path / "a.png"), "confusion_matrix")
    again = read_png(plot_confusion_matrix(y, pred, tmp_path / "b.png"), "confusion_matrix")
    other = read_png(plot_confusion_matrix(y, y, tmp_path / "c.png"), "confusion_matrix")
    np.testing.assert_array_equal(first, again)
    assert (first != other).any(axis=2).mean() > 0.01


def test_confusion_matrix_labels_fix_order_and_add_unseen_classes(tmp_path, figures):
    labels = ["normal", "malignant", "benign", "other"]
    plot_confusion_matrix(["benign", "normal"], ["benign", "benign"], tmp_path / "cm.png", labels=labels)
    counts = next(ax for ax in figures[0].axes if ax.images)
    assert [t.get_text() for t in counts.get_yticklabels()] == labels
    assert counts.images[0].get_array().shape == (4, 4)


def test_size_ignores_savefig_rcparams(tmp_path):
    import matplotlib

    with matplotlib.rc_context({"savefig.bbox": "tight", "savefig.dpi": 300, "figure.dpi": 50}):
        path = plot_confusion_matrix([0, 1, 1], [0, 1, 0], tmp_path / "cm.png")
    read_png(path, "confusion_matrix")


# -- ROC and precision-recall --------------------------------------------------


def test_roc_pr_png(tmp_path, figures):
    y, proba, _ = predictions()
    read_png(plot_roc_pr(y, proba, CLASSES, tmp_path / "roc.png"), "roc_pr")
    roc, pr = figures[0].axes
    roc_legend = [t.get_text() for t in roc.get_legend().get_texts()]
    pr_legend = [t.get_text() for t in pr.get_legend().get_texts()]
    assert [t.split(" (")[0] for t in roc_legend] == [*CLASSES, "chance"]
    assert all(re.fullmatch(r"\w+ \(AUC 0\.\d{3}\)", t) for t in roc_legend[:3])
    assert all(re.fullmatch(r"\w+ \(AP 0\.\d{3}\)", t) for t in pr_legend)
    assert "macro AUC" in roc.get_title() and "macro AP" in pr.get_title()


def test_roc_pr_binary_1d_proba_and_class_absent_from_y_true(tmp_path, figures):
    y = np.array([0, 1, 1, 0, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning for the absent class
        read_png(plot_roc_pr(y, [0.2, 0.9, 0.6, 0.4, 0.7, 0.1], [0, 1], tmp_path / "a.png"), "roc_pr")
        proba = np.tile([0.3, 0.3, 0.4], (6, 1))
        read_png(plot_roc_pr(y, proba, [0, 1, 2], tmp_path / "b.png"), "roc_pr")
    roc, _ = figures[1].axes
    assert len(roc.get_legend().get_texts()) == 3  # classes 0 and 1, chance
    assert suptitle(figures[1]) == "No curves for classes absent from y_true: 2"


def test_roc_pr_rejects_mismatched_proba(tmp_path):
    y, proba, _ = predictions()
    with pytest.raises(ValueError, match=r"proba has shape \(90, 2\); expected \(90, 3\)"):
        plot_roc_pr(y, proba[:, :2], CLASSES, tmp_path / "roc.png")
    with pytest.raises(ValueError, match="expected"):
        plot_roc_pr(y, proba, ["benign", "normal"], tmp_path / "roc.png")
    assert not (tmp_path / "roc.png").exists()


# -- learning curves -------------------------------------------------------------


def test_learning_curves_two_phases_and_nan_validation(tmp_path, figures):
    read_png(plot_learning_curves(history(), tmp_path / "curves.png"), "learning_curves")
    loss, accuracy, lr = figures[0].axes
    # The phase change, between epochs 2 and 3, on all three panels.
    for ax in (loss, accuracy, lr):
        assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [2.5]
    assert [t.get_text().strip() for t in loss.texts] == ["head", "fine-tune"]
    lines = {line.get_label(): line for line in loss.lines}
    valid = np.asarray(lines["valid loss"].get_ydata(), dtype=float)
    assert np.isnan(valid[3]) and np.isfinite(np.delete(valid, 3)).all()  # epoch 4 left out
    assert lines["best valid loss (epoch 6)"].get_xdata() == [6]
    assert len(lr.lines[0].get_xdata()) == 6


def test_learning_curves_without_validation(tmp_path, figures):
    read_png(plot_learning_curves(history(valid=False), tmp_path / "curves.png"), "learning_curves")
    loss, accuracy, _ = figures[0].axes
    assert [line.get_label() for line in loss.lines if line.get_linestyle() != "--"] == ["train loss"]
    assert not [line for line in accuracy.lines if line.get_linestyle() != "--"]
    assert "no validation" in accuracy.texts[0].get_text()


def test_learning_curves_accept_an_estimator_and_sparse_records(tmp_path, figures):
    class Fitted:
        history_ = [{"epoch": 1, "phase": "head", "train_loss": 0.7, "valid_loss": None, "lr": 1e-3}]

    read_png(plot_learning_curves(Fitted(), tmp_path / "one.png"), "learning_curves")
    assert "phase: head" in figures[0].axes[0].get_title()
    read_png(plot_learning_curves([{"train_loss": 0.9}, {"train_loss": 0.4}], tmp_path / "two.png"), "learning_curves")
    with pytest.raises(ValueError, match="history is empty"):
        plot_learning_curves([], tmp_path / "none.png")


# -- misclassified images ----------------------------------------------------------

# One solid, unusual colour per image, so each can be found in the grid.
COLOURS = np.array([[13 + 23 * i, 200 - 17 * i, 71 + 11 * i] for i in range(10)], dtype=np.uint8)


def solid_images() -> np.ndarray:
    return np.broadcast_to(COLOURS[:, None, None, :], (10, 24, 32, 3)).copy()


def colour_area(pixels: np.ndarray, colour: np.ndarray) -> int:
    return int((np.abs(pixels.astype(int) - colour.astype(int)).max(axis=2) <= 2).sum())


def test_misclassified_shows_the_most_confident_errors(tmp_path, figures, monkeypatch):
    y_true = np.array(["a"] * 5 + ["b"] * 5)
    y_pred = y_true.copy()
    wrong = {2: 0.60, 5: 0.90, 7: 0.80}  # index: probability of the (wrong) predicted class
    proba = np.where(y_true[:, None] == np.array(["a", "b"]), 0.8, 0.2)
    for i, p in wrong.items():
        y_pred[i] = "b" if y_true[i] == "a" else "a"
        proba[i] = [p, 1 - p] if y_pred[i] == "a" else [1 - p, p]
    loaded = []
    load_rgb = drawing.load_rgb
    monkeypatch.setattr(drawing, "load_rgb", lambda sample, i: loaded.append(i) or load_rgb(sample, i))

    path = plot_misclassified(solid_images(), y_true, y_pred, proba, ["a", "b"], tmp_path / "m.png", n=2)

    pixels = read_png(path, "misclassified")
    assert sorted(loaded) == [5, 7]  # only the images shown are decoded
    titles = [ax.get_title() for ax in figures[0].axes if ax.images]
    assert titles == ["true: b / pred: a (0.90)", "true: b / pred: a (0.80)"]
    for i in range(10):
        area = colour_area(pixels, COLOURS[i])
        assert area > 10_000 if i in (5, 7) else area == 0, (i, area)
    assert "2 most confident of 3 misclassified images (of 10)" in suptitle(figures[0])


def test_misclassified_from_files_without_proba(tmp_path, figures):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (30, 20), (200, 30, 30, 255)).save(rgba)
    X = [str(grey), rgba, np.zeros((8, 8), dtype=np.uint8)]
    path = plot_misclassified(X, [0, 1, 2], [1, 0, 2], None, None, tmp_path / "m.png")
    read_png(path, "misclassified")
    assert [ax.get_title() for ax in figures[0].axes if ax.images] == ["true: 0 / pred: 1", "true: 1 / pred: 0"]


def test_misclassified_when_all_are_right(tmp_path, figures):
    X = solid_images()
    y = np.repeat([0, 1], 5)
    path = plot_misclassified(X, y, y, np.eye(2)[y], [0, 1], tmp_path / "m.png")
    pixels = read_png(path, "misclassified")
    assert all(colour_area(pixels, colour) == 0 for colour in COLOURS)
    assert "every prediction of the 10 images is correct" in figures[0].axes[0].texts[0].get_text()


def test_misclassified_rejects_bad_input(tmp_path):
    X, y = solid_images(), np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match="X has 10 images but y_true has 9 labels"):
        plot_misclassified(X, y[:9], y[:9], None, None, tmp_path / "m.png")
    with pytest.raises(
        ValueError, match=r"The 'n' parameter of plot_misclassified must be an int in the range \[1, inf\)"
    ):
        plot_misclassified(X, y, y, None, None, tmp_path / "m.png", n=0)
    with pytest.raises(ValueError, match=r"predicted labels \['2'\] are not in classes"):
        plot_misclassified(X, y, np.where(y == 0, 2, 1), np.eye(2)[y], [0, 1], tmp_path / "m.png")
    with pytest.raises(ValueError, match="sample 0"):
        plot_misclassified([tmp_path / "missing.png"], [0], [1], None, None, tmp_path / "m.png")


# -- the whole report ------------------------------------------------------------------


def test_write_report_writes_every_plot(tmp_path):
    y, proba, pred = predictions(n=40)
    X = np.random.default_rng(1).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    out = tmp_path / "nested" / "report"
    paths = write_report(out, y, pred, proba, CLASSES, X=X, history=history())
    names = ["confusion_matrix", "roc_pr", "learning_curves", "misclassified"]
    assert paths == [out / f"{name}.png" for name in names]
    for path, name in zip(paths, names, strict=True):
        read_png(path, name)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temporary files left


def test_write_report_writes_what_the_inputs_allow(tmp_path):
    y, proba, pred = predictions(n=30)
    assert [p.name for p in write_report(tmp_path / "a", y, pred)] == ["confusion_matrix.png"]
    paths = write_report(tmp_path / "b", y, pred, proba, history=[])  # classes inferred, no epochs
    assert [p.name for p in paths] == ["confusion_matrix.png", "roc_pr.png"]


@pytest.mark.parametrize("failing", range(2))
def test_write_report_replaces_its_plots_all_at_once(tmp_path, monkeypatch, failing):
    """A write that fails on any plot leaves the previous plots whole, the user's other files and no
    temporary file: the plots are written through the report folder's writer (issue 25)."""
    from skorchlite.report import folder

    y, proba, pred = predictions(n=30)
    out = tmp_path / "out"
    write_report(out, y, pred, proba)
    (out / "notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = folder.write_atomic, []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) > failing:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(folder, "write_atomic", full_disk)
    y, proba, pred = predictions(n=30, seed=1)  # other plots
    with pytest.raises(OSError, match="No space"):
        write_report(out, y, pred, proba)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.undo()
    write_report(out, y, pred, proba)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after.keys() == before.keys() and all(after[name] != before[name] for name in after if name != "notes.txt")


def test_missing_matplotlib_raises_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    message = re.escape('Plots need matplotlib: pip install "skorchlite[report]"')
    y, proba, pred = predictions(n=12)
    calls = [
        lambda: plot_confusion_matrix(y, pred, tmp_path / "cm.png"),
        lambda: plot_roc_pr(y, proba, CLASSES, tmp_path / "roc.png"),
        lambda: plot_learning_curves(history(), tmp_path / "curves.png"),
        lambda: plot_misclassified(solid_images()[:2], [0, 1], [1, 0], None, None, tmp_path / "m.png"),
        lambda: write_report(tmp_path / "out", y, pred),
    ]
    for call in calls:
        with pytest.raises(ImportError, match=message):
            call()
    assert list(tmp_path.iterdir()) == []


def test_long_titles_wrap_and_shorten():
    assert drawing._fit_title("cat", "dog", " (0.93)", 40) == "true: cat / pred: dog (0.93)"
    assert drawing._fit_title("malignant", "normal", " (0.93)", 24) == "true: malignant /\npred: normal (0.93)"
    # Overlong labels keep their start and their end (issue 24: names shortened where space is fixed).
    first, second = drawing._fit_title("a" * 25 + "z" * 25, "b" * 25 + "y" * 25, "", 20).split("\n")
    assert first == "true: " + "a" * 8 + "…" + "z" * 3 + " /" and second == "pred: " + "b" * 9 + "…" + "y" * 4


def test_pngs_follow_the_umask_so_colleagues_can_open_them(tmp_path):
    path = plot_confusion_matrix(["a", "b"], ["a", "a"], tmp_path / "cm.png")
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]  # no temporary file left


def _table_rows(html: str) -> dict[str, list[str]]:
    """First cell -> the other cells, of every row with data cells."""
    rows = re.findall(r"<tr><td>(.*?)</td>(.*?)</tr>", html)
    return {name: re.findall(r"<td[^>]*>(.*?)</td>", rest) for name, rest in rows}


def _close(cell: str, value: float) -> bool:
    """A printed number (or the dash of a missing one) against the value it stands for."""
    if not np.isfinite(value):
        return cell == "–"
    return abs(float(cell) - value) <= 0.0005 + 1e-9


@pytest.mark.parametrize("seed", range(7))
def test_per_class_numbers_are_scikit_learns(seed):
    """Precision, recall, F1, support, ROC AUC and average precision per class, and their
    macro and support-weighted averages over the classes that have them, recomputed here."""
    rng = np.random.default_rng(seed)
    classes = np.array(["cat", "dog", "emu", "owl"])
    # Seeds 0 and 1: "owl" never occurs, so its curves are undefined; seed 5: it occurs once;
    # seed 6: only "cat" occurs, so only its average precision is defined (every image is a
    # positive); the others: all four.
    occurring = {0: 3, 1: 3, 5: 3, 6: 1}.get(seed, 4)
    y_true = rng.choice(classes[:occurring], size=rng.integers(12, 30))
    if seed == 5:
        y_true[0] = "owl"
    proba = rng.dirichlet(np.ones(4), size=len(y_true))
    y_pred = classes[proba.argmax(1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an area computed where it is undefined warns (or raises)
        got = _table_rows(per_class_section(y_true, y_pred, proba, classes))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    aucs, aps = [], []
    for j, label in enumerate(classes):
        positive = y_true == label
        aucs.append(roc_auc_score(positive, proba[:, j]) if 0 < positive.sum() < len(y_true) else np.nan)
        aps.append(average_precision_score(positive, proba[:, j]) if positive.any() else np.nan)
    aucs, aps = np.array(aucs), np.array(aps)
    for j, label in enumerate(classes):
        expected = [precision[j], recall[j], f1[j], support[j], aucs[j], aps[j]]
        assert all(_close(c, v) for c, v in zip(got[label], expected, strict=True)), (label, got[label], expected)

    def average(values, weights):
        keep = np.isfinite(values)
        if not keep.any():
            return np.nan
        return np.average(values[keep], weights=None if weights is None else weights[keep])

    for name, weights in [("macro average", None), ("weighted average", support)]:
        expected = [np.average(v, weights=weights) for v in (precision, recall, f1)] + [support.sum()]
        expected += [average(aucs, weights), average(aps, weights)]
        assert all(_close(c, v) for c, v in zip(got[name], expected, strict=True)), (name, got[name], expected)


def test_per_class_without_probabilities_has_no_curve_columns():
    y = np.array(["a", "b", "b"])
    html = per_class_section(y, np.array(["a", "a", "b"]), None, np.array(["a", "b"]))
    assert '<th scope="col">ROC AUC</th>' not in html
    assert [len(cells) for cells in _table_rows(html).values()] == [4, 4, 4, 4]
