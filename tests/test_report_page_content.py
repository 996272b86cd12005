"""What the report page says (issue 27, point 7): counts in good grammar,
headings a reader understands (no internal ids), every image sized, and a
visible note that the page embeds the input images, with the option to
leave them out. Pages are parsed as HTML, not searched as strings."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from skorchlite.cli import main
from skorchlite.duplicates import Duplicates, Pair
from skorchlite.report import ErrorGallery, RunInfo, evaluation_page
from skorchlite.report.gallery import jpeg_uri

# Nouns the pages count.
NOUNS = "image|class|fold|error|pair|set|group|copy|thumbnail|prediction"
# A count of one with a plural noun ("1 groups", "1 near copies"), or of
# several with a singular one ("3 image"); an adjective may come between.
ONE_MANY = re.compile(
    rf"(?<![\d.,/])\b1 (?:(?:exact|near|more|cross-validation) )?(?:{NOUNS.replace('y|', 'ie|')})e?s\b"
)
MANY_ONE = re.compile(rf"(?<![\d.,/])\b(?:[2-9]|\d\d+) (?:(?:exact|near|more|cross-validation) )?(?:{NOUNS})\b(?!s)")


class _Page(HTMLParser):
    """A page parsed: its text, its h3 headings, its <img> attributes and
    the text of the element with id="notice"."""

    def __init__(self, html: str):
        super().__init__()
        self.texts: list[str] = []
        self.h3: list[str] = []
        self.images: list[dict] = []
        self.notice = ""
        self._open: list[str] = []  # the elements the parser is inside
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
            return
        if tag == "h3":
            self.h3.append("")
        self._open.append("notice" if attrs.get("id") == "notice" else tag)

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        self.texts.append(data)
        if "h3" in self._open:
            self.h3[-1] += data
        if "notice" in self._open:
            self.notice += data

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.texts).split())


def _parse(html: str) -> _Page:
    return _Page(html)


def _picture(rng, size=(40, 30)) -> str:
    return jpeg_uri(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))


def _page(n_sets: int, set_size: int, n_wrong: int, n_folds: int, conflicts: int, *, images: bool = True):
    """A page of 24 images: ``n_sets`` duplicate sets of ``set_size`` (find_duplicates' ids 57, 58, ...
    and their first ``conflicts`` of another label), ``n_wrong`` errors shown with overlays."""
    rng = np.random.default_rng(0)
    n = 24
    names = [f"/data/busi/{'benign' if i % 2 else 'malignant'}/scan {i}.png" for i in range(n)]
    y = np.array(["benign" if i % 2 else "malignant" for i in range(n)])
    pred = y.copy()
    pred[:n_wrong] = np.where(y[:n_wrong] == "benign", "malignant", "benign")
    groups = np.arange(100, 100 + n)
    pairs, conflict_pairs = [], []
    for s in range(n_sets):
        members = list(range(s * set_size, (s + 1) * set_size))
        groups[members] = 57 + s
        for j in members[1:]:
            pair = Pair(members[0], j, 1.0, "exact")
            pairs.append(pair)
            if s < conflicts and j == members[1]:
                conflict_pairs.append(pair)
    labels = [str(label) for label in y]
    for s in range(n_sets):  # a set shares its first image's label, unless it is one of the conflicts
        for j in range(s * set_size + 1, (s + 1) * set_size):
            labels[j] = "other" if s < conflicts and j == s * set_size + 1 else labels[s * set_size]
    found = Duplicates(groups, pairs, conflict_pairs, 0.97, names, labels)
    errors = ErrorGallery(
        indices=np.arange(n_wrong),
        confidence=np.full(n_wrong, 0.9),
        thumbnails=[_picture(rng) for _ in range(n_wrong)],
        overlays=[_picture(rng) for _ in range(n_wrong)],
        note="Grad-CAM of the predicted class.",
    )
    run = RunInfo(command="skorchlite evaluate", parameters={}, fingerprint={}, folder="/data/busi", class_counts={})
    X = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]
    html = evaluation_page(
        run,
        title="efficientnet_lite0 + logreg",
        y_true=y,
        y_pred=pred,
        proba=None,
        classes=np.array(["benign", "malignant"]),
        folds=[{"n": n // n_folds, "balanced": 0.5, "accuracy": 0.5}] * n_folds,
        pngs={"confusion_matrix.png": _png(rng)},
        names=names,
        errors=errors,
        duplicates=found,
        X=X,
        images=images,
    )
    return _parse(html), names


def _png(rng) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@settings(max_examples=20, deadline=None)
@given(
    n_sets=st.integers(1, 3),
    set_size=st.integers(2, 3),
    n_wrong=st.integers(0, 3),
    n_folds=st.integers(2, 3),
    conflicts=st.integers(0, 3),
)
def test_counts_agree_with_their_nouns(n_sets, set_size, n_wrong, n_folds, conflicts):
    page, _ = _page(n_sets, set_size, n_wrong, n_folds, min(conflicts, n_sets))
    assert ONE_MANY.findall(page.text) == [] and MANY_ONE.findall(page.text) == []
    # The two the issue found, and their verbs.
    assert "1 groups" not in page.text and " 1 pair of copies have" not in page.text
    if n_sets == 1:
        assert "1 set of copies holds" in page.text
    if n_wrong == 1:
        assert "1 of 24 images was misclassified" in page.text


def test_the_grammar_check_catches_what_it_should():
    assert ONE_MANY.findall("1 groups, 1 near copies, 1 more errors, 1 classes") == [
        "1 groups",
        "1 near copies",
        "1 more errors",
        "1 classes",
    ]
    assert MANY_ONE.findall("3 image, 2 exact copy; 1 image; 12 images") == ["3 image", "2 exact copy"]


@pytest.mark.parametrize("conflicts", [0, 1])
def test_duplicate_headings_name_the_set_by_its_place_and_first_file_not_an_id(conflicts):
    page, names = _page(n_sets=2, set_size=3, n_wrong=0, n_folds=2, conflicts=conflicts)
    sets = [h for h in page.h3 if h.startswith("Duplicate set")]
    assert sets == [
        f"Duplicate set 1 of 2: {Path(names[0]).name} and 2 exact copies" + (" — labels disagree" if conflicts else ""),
        f"Duplicate set 2 of 2: {Path(names[3]).name} and 2 exact copies",
    ]
    # find_duplicates' ids (57, 58) appear nowhere a reader looks.
    assert not re.search(r"\b(57|58)\b", " ".join(page.h3)) and "Group" not in page.text
    assert all("group 5" not in (img.get("alt") or "") for img in page.images)


def test_every_image_has_its_own_width_and_height():
    page, _ = _page(n_sets=2, set_size=2, n_wrong=3, n_folds=2, conflicts=0)
    assert len(page.images) == 1 + 2 * 3 + 4  # the plot, each error with its overlay, the duplicates
    for img in page.images:
        data = base64.b64decode(img["src"].split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as image:
            assert (int(img["width"]), int(img["height"])) == image.size, img["alt"]


def test_the_page_says_it_embeds_the_input_images_and_can_leave_them_out():
    page, names = _page(n_sets=1, set_size=2, n_wrong=2, n_folds=2, conflicts=0)
    assert "embeds 4 thumbnails of the input images and their Grad-CAM overlays" in page.notice
    assert "patient data" in page.notice and "--no-report-images" in page.notice and "images=False" in page.notice

    bare, _ = _parse_without_images()
    jpegs = [img for img in bare.images if img["src"].startswith("data:image/jpeg")]
    assert jpegs == [] and len(bare.images) == 1  # the confusion matrix plot only
    assert "left out of this page" in bare.notice
    # The errors and the duplicates are still listed, by name.
    assert all(Path(name).name in bare.text for name in names[:2])
    assert "Duplicate set 1 of 1" in bare.text


def _parse_without_images():
    return _page(n_sets=1, set_size=2, n_wrong=2, n_folds=2, conflicts=0, images=False)


def test_a_page_without_input_images_has_no_notice_of_them():
    page, _ = _page(n_sets=0, set_size=2, n_wrong=0, n_folds=2, conflicts=0)
    assert page.notice == ""


def test_cli_no_report_images_leaves_every_input_image_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / label / f"{i}.png")
    Image.open(folder / "a" / "0.png").save(folder / "b" / "copy of 0.png")  # a duplicate set, labels disagree
    out = tmp_path / "report"
    args = ["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0", "--report", str(out)]
    assert main([*args, "--no-report-images"]) == 0, capsys.readouterr().err
    assert not (out / "misclassified.png").exists()
    page = _parse((out / "index.html").read_text(encoding="utf-8"))
    assert [img for img in page.images if img["src"].startswith("data:image/jpeg")] == []
    assert "left out of this page" in page.notice and "copy of 0.png" in page.text
