"""Issue 24, class 6: class and file names that would become control
sequences, math text or markup, run across fixed-width places, or fail to
encode. Every verb, figure and page shows them as data."""

from __future__ import annotations

import os
import sys

import matplotlib
import numpy as np
import pytest
from PIL import Image

from skorchlite import FineTuneClassifier
from skorchlite.cli import evaluate as cli_evaluate
from skorchlite.cli import main
from skorchlite.datasets import summarize
from skorchlite.figures import figure_png
from skorchlite.report import RunInfo, drawing, evaluation_page

# Class folders as the file system holds them (bytes): screen clear, OSC 52
# (set the clipboard) and a bidi override; math text, valid and not; LaTeX
# specials; a legend's "hidden" marker; 250 characters; bytes that are not UTF-8.
FOLDERS = [
    b"\x1b[2J\x1b]52;c;aGk=\x07\xe2\x80\xaeevil",
    b"$x^2$",
    b"$\\frac{$ 50%_a&b",
    b"_hidden",
    b"L" * 250,
    b"caf\xe9\x9b\xff",
]
NAMES = [os.fsdecode(name) for name in FOLDERS]  # what Python gives: surrogates for the bytes that are not UTF-8
CONTROLS = {chr(c) for c in [*range(32), *range(127, 160)]} | {"\u202e"}


def _assert_harmless(text: str) -> None:
    """Nothing a terminal obeys, and nothing that fails to encode."""
    assert not set(text) & (CONTROLS - {"\n"}), ascii(text)
    text.encode("utf-8")


def _hostile_folder(root: bytes, per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for name in FOLDERS:
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            # File names that hold escapes, and bytes that are not UTF-8, too.
            for file in [b"%d\x1b[31m.png" % i] if i else [b"\xff%d.png" % i]:
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.fsdecode(os.path.join(root, name, file)))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = os.fsencode(tmp_path_factory.mktemp("names") / "images")
    _hostile_folder(root)
    return os.fsdecode(root)


@pytest.fixture(scope="module")
def hostile_model(hostile, tmp_path_factory):
    """A head-only model whose classes are the hostile names, saved as data (.pt)."""
    from skorchlite.datasets import load_image_folder

    paths, labels = load_image_folder(hostile)
    clf = FineTuneClassifier(unfreeze=0, augment=None, epochs=1, image_size=64, validation_fraction=0, cache=False)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    clf.fit(paths, labels).save_weights(path)
    return path, paths


# -- terminal ------------------------------------------------------------------


def test_class_table_escapes_and_shortens_names_and_lists_them_in_full():
    table = str(summarize(NAMES + NAMES[:2]))
    _assert_harmless(table)
    lines = table.splitlines()
    rows = lines[: lines.index("In full:")]
    assert max(map(len, rows)) < 80  # the 250-character name no longer widens every row
    assert "\\x1b[2J" in table and "\\u202eevil" in table and "caf\ufffd" in table
    assert "L" * 250 in lines[-1]  # given in full under the table


def test_terminal_confusion_matrix_has_bounded_distinct_columns():
    classes = np.array(NAMES + ["L" * 249 + "M"])  # two long names that differ only at the end
    text = cli_evaluate._format_confusion_matrix(classes, np.eye(len(classes), dtype=int) * 3)
    _assert_harmless(text)
    header, *rows = text.splitlines()
    assert max(map(len, [header, *rows])) <= 30 * (len(classes) + 1)
    row_names = [row.split()[0] for row in rows]
    assert len(set(row_names)) == len(classes)


# -- figures -------------------------------------------------------------------


def _texts(fig) -> list:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text()]


def test_confusion_matrix_draws_names_literally_and_short():
    y = np.repeat(NAMES, 2)
    fig = drawing.confusion_matrix_figure(y, np.roll(y, 1), None)
    figure_png(fig)  # math text, LaTeX specials and surrogates used to raise here
    ticks = [t for t in fig.axes[0].get_yticklabels() + fig.axes[0].get_xticklabels()]
    labels = [t.get_text() for t in ticks]
    assert "$x^2$" in labels and "_hidden" in labels and "$\\frac{$ 50%_a&b" in labels
    assert all(not t.get_parse_math() and not t.get_usetex() for t in ticks)
    assert len(set(labels)) == len(NAMES) and max(map(len, labels)) <= 24
    for text in _texts(fig):
        _assert_harmless(text.get_text())


def test_roc_pr_legends_keep_every_class_literally():
    y = np.repeat(NAMES, 3)
    classes = np.unique(y)
    proba = np.random.default_rng(0).dirichlet(np.ones(len(classes)), len(y))
    fig = drawing.roc_pr_figure(y, proba, classes)
    figure_png(fig)
    roc, pr = (ax.get_legend() for ax in fig.axes[:2])
    entries = [t.get_text() for t in roc.get_texts()]
    assert len(entries) == len(NAMES) + 1  # "_hidden" is no longer left out
    assert any(e.startswith("_hidden (AUC") for e in entries) and any(e.startswith("$x^2$ (AUC") for e in entries)
    assert len(pr.get_texts()) == len(NAMES)
    assert not any(t.get_parse_math() for t in roc.get_texts() + pr.get_texts())
    for text in _texts(fig):
        _assert_harmless(text.get_text())


def test_error_gallery_titles_are_literal():
    y = np.array(NAMES)
    X = np.zeros((len(y), 8, 8, 3), dtype=np.uint8)
    fig = drawing.misclassified_figure(X, y, np.roll(y, 1), None, None, 12)
    figure_png(fig)
    titles = [ax.title.get_text() for ax in fig.axes if ax.title.get_text()]
    assert len(titles) == len(NAMES) and any("$x^2$" in t for t in titles)
    for title in titles:
        _assert_harmless(title)


def test_figures_ignore_the_users_usetex_and_keep_numbers_formatted():
    with matplotlib.rc_context({"text.usetex": True, "axes.formatter.use_mathtext": True}):
        fig = drawing.confusion_matrix_figure(["a_b%", "c&d#"], ["a_b%", "a_b%"], None)
        figure_png(fig)  # used to need a LaTeX install, and fail on '_', '%', '&'
    colorbar_ticks = [t for t in fig.axes[2].get_yticklabels() if t.get_text()]
    assert colorbar_ticks and all(t.get_parse_math() for t in colorbar_ticks)  # its math-text numbers still render


# -- page ----------------------------------------------------------------------


def test_page_shows_names_visibly_and_always_encodes():
    y = np.repeat(NAMES, 2)
    pred = np.roll(y, 1)
    classes = np.unique(y)
    run = RunInfo(
        command="skorchlite evaluate '\x1b[2J\udcff'",
        parameters={"dir": "\udcff", "head": "Pipeline(steps=[a,\n                b])"},  # a long repr
        fingerprint={"backbone": "b"},
        folder="/data/\udcff\u202e",
        class_counts={name: 2 for name in classes.tolist()},
    )
    page = evaluation_page(
        run,
        title="t",
        y_true=y,
        y_pred=pred,
        proba=None,
        classes=classes,
        folds=[{"n": 6, "balanced": 0.5, "accuracy": 0.5}] * 2,
        pngs={"confusion_matrix.png": b"\x89PNG"},
        names=[f"/data/{name}/\x1b[31m{i}.png" for i, name in enumerate(y)],
    )
    page.encode("utf-8")  # used to raise UnicodeEncodeError: surrogates not allowed
    _assert_harmless(page)
    assert "\\x1b[2J" in page and "caf\ufffd" in page and "\\u202eevil" in page and "$x^2$" in page
    assert "[a,\n" in page  # our own line breaks are white space in HTML, not escapes


# -- the verbs -----------------------------------------------------------------


def test_evaluate_prints_no_escape_and_writes_its_report(hostile, tmp_path, capsys):
    report = tmp_path / "report"
    args = ["evaluate", hostile, "--cv", "3", "--image-size", "64", "--verbose", "0", "--report", str(report)]
    status = main(args)
    out, err = capsys.readouterr()
    assert status == 0, err
    _assert_harmless(out + err)
    assert "\\x1b[2J" in out and "$x^2$" in out and "_hidden" in out
    assert sorted(p.name for p in report.iterdir()) == [
        ".skorchlite-report.json",
        "confusion_matrix.png",
        "index.html",
        "misclassified.png",
        "predictions.csv",
        "roc_pr.png",
        "scores.csv",
    ]
    page = (report / "index.html").read_bytes().decode("utf-8")
    _assert_harmless(page)
    assert "caf\ufffd" in page and "_hidden" in page and "L" * 250 in page


def test_predict_and_explain_print_no_escape(hostile_model, tmp_path, capfdbinary, monkeypatch):
    model, paths = hostile_model
    images = paths[::3]
    assert main(["predict", str(model), *images]) == 0
    out = capfdbinary.readouterr().out
    assert b"\x1b" not in out and b"\xff" not in out and len(out.splitlines()) == len(images)
    assert b"\\x1b[31m.png" in out or "\ufffd0.png".encode() in out
    # CSV is data: piped, it keeps the names' exact bytes, so each row names its file.
    assert main(["predict", str(model), *images, "--csv"]) == 0
    data = capfdbinary.readouterr().out
    assert all(os.fsencode(path) in data for path in images) and b"p__hidden" in data
    # On a terminal it is shown, not obeyed, as ls does.
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["predict", str(model), *images, "--csv"]) == 0
    shown = capfdbinary.readouterr().out
    assert b"\x1b" not in shown and b"\xff" not in shown and b"p__hidden" in shown
    monkeypatch.undo()
    out_png = tmp_path / "cam.png"
    assert main(["explain", str(model), images[0], "-o", str(out_png), "--target", NAMES[0]]) == 0
    printed = capfdbinary.readouterr()
    assert b"\x1b" not in printed.out + printed.err and out_png.is_file()
    assert b"Grad-CAM of \\x1b[2J" in printed.out
