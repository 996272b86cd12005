"""load_image_folder: layout, ordering, skipped files, errors, BUSI."""

from __future__ import annotations

import collections
import re
import warnings
from pathlib import Path

import pytest
from conftest import BUSI, requires_busi
from PIL import Image

from skorchlite.datasets import load_image_folder


def make_folder(root: Path, files: list[str]) -> Path:
    """Create each relative path: images for image extensions, text otherwise."""
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
            Image.new("RGB", (4, 4)).save(path, format="JPEG" if path.suffix.lower() == ".jpg" else None)
        else:
            path.write_text("not an image")
    return root


def load_quietly(root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_image_folder(root)


def test_one_folder_per_class_sorted_by_class_then_name(tmp_path):
    expected = ["benign/b (1).jpg", "benign/b (10).PNG", "malignant/m.gif", "normal/n (2).png"]
    root = make_folder(tmp_path, expected[::-1])
    paths, labels = load_quietly(root)
    assert labels == ["benign", "benign", "malignant", "normal"]
    assert paths == [str(root / name) for name in expected]
    assert load_quietly(str(root)) == (paths, labels)  # str or Path, same answer every call


def test_hidden_files_and_folders_are_skipped_silently(tmp_path):
    root = make_folder(tmp_path, ["cat/1.png", "cat/.DS_Store", "cat/.thumb.png", ".cache/x.png", ".hidden"])
    assert load_quietly(root) == ([str(root / "cat" / "1.png")], ["cat"])


def test_files_that_are_not_images_are_counted_and_named(tmp_path):
    root = make_folder(
        tmp_path,
        ["cat/1.png", "cat/notes.txt", "dog/1.png", "dog/nested/2.png", "README.md"]
        + [f"dog/extra{i}.csv" for i in range(6)],
    )
    with pytest.warns(UserWarning, match=re.escape(f"{str(root)!r}: skipped 9 ")) as record:
        paths, labels = load_image_folder(root)
    message = str(record[0].message)
    for name in ["'README.md'", "'cat/notes.txt'", "'dog/extra0.csv'", "..."]:
        assert name in message
    assert "extra5" not in message  # only the first few are named
    assert labels == ["cat", "dog"]


@pytest.mark.parametrize(
    "files, root, named, cause",
    [
        ([], "missing", "missing", "does not exist"),
        (["file.png"], "file.png", "file.png", "not a directory"),
        ([], ".", ".", "no class folders"),
        (["README.md", ".git/x.png"], ".", ".", "no class folders"),
        (["cat/1.png", "dog/notes.txt"], ".", "dog", "has no images"),
    ],
)
def test_bad_folders_name_the_path(tmp_path, files, root, named, cause):
    make_folder(tmp_path, files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=re.escape(repr(str(tmp_path / named))) + ".*" + cause):
            load_image_folder(tmp_path / root)


def test_empty_class_folder_is_an_error(tmp_path):
    make_folder(tmp_path, ["cat/1.png"])
    (tmp_path / "dog").mkdir()
    with pytest.raises(ValueError, match=re.escape(repr(str(tmp_path / "dog"))) + ".*has no images"):
        load_image_folder(tmp_path)


@requires_busi
@pytest.mark.busi
def test_busi():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BUSI's README.md sits beside the class folders
        paths, labels = load_image_folder(BUSI)
    assert len(paths) == 780
    assert collections.Counter(labels) == {"benign": 437, "malignant": 210, "normal": 133}
    assert paths[0] == str(BUSI / "benign" / "benign (1).png")
    assert all(Path(p).is_file() for p in paths)
