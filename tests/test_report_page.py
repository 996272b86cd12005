"""The report page (issue 16): self-contained, escaped, and sound in a real browser.

The browser tests open ``index.html`` in headless Chromium (Debian's
``chromium`` package, driven by Python playwright); without either they
skip and say which is missing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skorchlite.cli import main
from skorchlite.report import RunInfo, evaluation_page, format_score

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# A label that is also markup: the page must show it, not run it.
TRICKY = "cat <img src=x onerror=alert(1)> & co"


@pytest.fixture
def folder(tmp_path):
    """Three classes of 8 noise images of 64 px: the head errs, so the error grid is full."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label in (TRICKY, "dog", "fish"):
        (root / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_the_page_is_part_of_the_report_and_its_old_names_still_import():
    """One report package (issue 25): skorchlite.report_page names the report's own objects."""
    import skorchlite.report
    import skorchlite.report_page

    names = [*skorchlite.report_page.__all__, "DUPLICATE_THUMBNAIL", "ERROR_THUMBNAIL", "MAX_DUPLICATE_GROUPS"]
    assert {"evaluation_page", "finetune_page", "RunInfo"} <= set(skorchlite.report_page.__all__)
    for name in names:
        assert getattr(skorchlite.report_page, name) is getattr(skorchlite.report, name)
    assert set(skorchlite.report_page.__all__) <= set(skorchlite.report.__all__)


def _browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="needs Python playwright (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"needs chromium at {CHROMIUM} (apt-get install chromium)")
    return playwright.sync_playwright


def _open(page_path: Path, screenshot: Path):
    """Load the page offline; return (console errors, failed requests, image widths, DOM texts)."""
    sync_playwright = _browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors, failed, requests = [], [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            widths = page.evaluate(
                "Promise.all([...document.images].map(i => i.decode().then(() => i.naturalWidth, () => 0)))"
            )
            texts = page.evaluate(
                "({balanced: document.querySelector('#balanced-accuracy')?.textContent,"
                " accuracy: document.querySelector('#accuracy')?.textContent,"
                " body: document.body.innerText, scripts: document.scripts.length})"
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    outside = [url for url in requests if not url.startswith(("file:", "data:"))]
    return errors, failed + outside, widths, texts


def _assert_not_blank(path: Path) -> None:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 900 and pixels.std() > 20  # a long page with ink on it
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # plots and photographs, not flat text


def test_evaluate_report_page_in_a_browser(folder, tmp_path, capsys):
    """Issue 16: the page opens offline, no console error or failed resource,
    every image decodes, the headline equals the terminal's, the screenshot is not blank."""
    # --head logreg: a linear head, whose errors get a Grad-CAM each (the voting default has none).
    _browser()  # skip before the work when there is no browser
    out = tmp_path / "report"
    args = [
        "evaluate",
        str(folder),
        "--cv",
        "2",
        "--image-size",
        "64",
        "--verbose",
        "0",
        "--report",
        str(out),
        "--head",
        "logreg",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    balanced = re.search(r"balanced accuracy (\d\.\d{3} ± \d\.\d{3})", printed).group(1)
    accuracy = re.search(r"-fold CV[^:\n]*: accuracy (\d\.\d{3} ± \d\.\d{3})", printed).group(1)
    page = out / "index.html"
    for name in ("confusion_matrix.png", "roc_pr.png", "misclassified.png", "index.html"):
        assert (out / name).is_file()
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script" not in html
    # The page inlines the very bytes of the PNGs written beside it.
    import base64

    assert base64.b64encode((out / "roc_pr.png").read_bytes()).decode() in html

    errors, failed, widths, texts = _open(page, tmp_path / "shot.png")
    assert errors == [] and failed == []
    assert texts["scripts"] == 0
    # Plots, then two pictures (image, Grad-CAM) per error card.
    n_errors = html.count('class="card"')
    assert n_errors > 0 and len(widths) == 2 + 2 * n_errors and all(w > 0 for w in widths)
    assert texts["balanced"] == balanced and texts["accuracy"] == accuracy
    assert TRICKY in texts["body"]  # shown as text, the markup escaped
    assert "Grad-CAM" in texts["body"] and "What was run" in texts["body"]
    _assert_not_blank(tmp_path / "shot.png")


def test_finetune_report_page_in_a_browser(folder, tmp_path, capsys):
    """Issue 16: finetune --report writes the page with the learning curves and the chosen epoch."""
    _browser()
    out, model = tmp_path / "report", tmp_path / "model.pt"
    args = [
        "finetune",
        str(folder),
        "-o",
        str(model),
        "--unfreeze",
        "1",
        "--freeze-epochs",
        "1",
        "--epochs",
        "2",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--validation-fraction",
        "0.25",
        "--verbose",
        "0",
        "--report",
        str(out),
    ]
    assert main(args) == 0
    best = re.search(r"best epoch (\d+)", capsys.readouterr().out).group(1)
    assert (out / "learning_curves.png").is_file()
    errors, failed, widths, texts = _open(out / "index.html", tmp_path / "shot.png")
    assert errors == [] and failed == [] and len(widths) == 1 and widths[0] > 0
    assert f"Chosen epoch {best} of 3" in texts["body"] and "★ chosen" in texts["body"]
    assert str(model) in texts["body"]


def test_page_escapes_every_user_text():
    """Issue 16: labels, paths and parameters come from users; none reaches the page as markup."""
    evil = "<script>alert(1)</script>"
    y = np.array([evil, "b", evil, "b"])
    pred = np.array([evil, evil, "b", "b"])
    run = RunInfo(
        command=f"skorchlite evaluate '{evil}'",
        parameters={"dir": evil},
        fingerprint={"backbone": evil},
        folder=evil,
        class_counts={evil: 2, "b": 2},
    )
    page = evaluation_page(
        run,
        title=evil,
        y_true=y,
        y_pred=pred,
        proba=None,
        classes=np.array([evil, "b"]),
        folds=[{"n": 2, "balanced": 0.5, "accuracy": 0.5}] * 2,
        pngs={"confusion_matrix.png": b"\x89PNG"},
        names=[evil] * 4,
    )
    assert "<script" not in page and "&lt;script&gt;" in page


def test_headline_is_formatted_as_the_terminal_prints_it():
    assert format_score(np.array([0.8125, 0.75])) == "0.781 ± 0.031"
