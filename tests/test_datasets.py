"""load_image_folder, summarize, train_val_test_split: layout, ordering,
skipped files, errors, counts tables, rounding, groups, BUSI."""

from __future__ import annotations

import collections
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import BUSI, requires_busi
from skorchlite.datasets import load_image_folder, summarize, train_val_test_split


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


@pytest.mark.parametrize(
    "documentation",
    [["README.md"], ["LICENSE", "CITATION.cff"], ["cat/notes.txt", "dog/README"], ["Readme.rst", "dog/license.txt"]],
)
def test_a_data_set_s_documentation_is_skipped_silently(tmp_path, documentation):
    """Issue 27, point 8: BUSI's README.md beside its class folders warned on every run."""
    root = make_folder(tmp_path, ["cat/1.png", "dog/1.png", *documentation])
    assert load_quietly(root) == ([str(root / "cat" / "1.png"), str(root / "dog" / "1.png")], ["cat", "dog"])


@pytest.mark.parametrize("entry", ["cat/scan.dcm", "cat/README.png/x.png", "notes.txt/1.png", "cat/readme.png"])
def test_what_looks_like_an_image_or_a_class_still_counts(tmp_path, entry):
    """Only files named as documentation are skipped quietly: a folder named README.png or notes.txt,
    a file of another image format, and an image named readme are not documentation."""
    root = make_folder(tmp_path, ["cat/1.png", "dog/1.png", entry])
    if entry == "cat/readme.png":  # an image: loaded, whatever its name
        assert str(root / entry) in load_quietly(root)[0]
        return
    if entry.startswith("notes.txt/"):  # a folder: a class
        assert load_quietly(root)[1] == ["cat", "dog", "notes.txt"]
        return
    with pytest.warns(UserWarning, match="skipped 1 "):
        load_image_folder(root)


def test_hidden_files_and_folders_are_skipped_silently(tmp_path):
    root = make_folder(tmp_path, ["cat/1.png", "cat/.DS_Store", "cat/.thumb.png", ".cache/x.png", ".hidden"])
    assert load_quietly(root) == ([str(root / "cat" / "1.png")], ["cat"])


def test_files_that_are_not_images_are_counted_and_named(tmp_path):
    root = make_folder(
        tmp_path,
        ["cat/1.png", "cat/scan.dcm", "dog/1.png", "dog/nested/2.png", "labels.csv"]
        + [f"dog/extra{i}.csv" for i in range(6)],
    )
    with pytest.warns(UserWarning, match=re.escape(f"{str(root)!r}: skipped 9 ")) as record:
        paths, labels = load_image_folder(root)
    message = str(record[0].message)
    for name in ["'labels.csv'", "'cat/scan.dcm'", "'dog/extra0.csv'", "..."]:
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
    paths, labels = load_quietly(BUSI)  # its README.md beside the class folders is documentation
    assert len(paths) == 780
    assert collections.Counter(labels) == {"benign": 437, "malignant": 210, "normal": 133}
    assert paths[0] == str(BUSI / "benign" / "benign (1).png")
    assert all(Path(p).is_file() for p in paths)


def test_summarize_prints_counts_shares_and_a_total_row():
    counts = summarize(np.array([2, 0, 2, 2]))
    assert counts == {0: (1,), 2: (3,)}
    assert str(counts) == "\n".join(
        [
            "class  count   share",
            "0          1   25.0%",
            "2          3   75.0%",
            "total      4  100.0%",
        ]
    )


@pytest.mark.parametrize("labels, message", [([], "empty"), ([["a", "b"]], "one-dimensional")])
def test_summarize_rejects_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        summarize(labels)


def busi_like_labels() -> np.ndarray:
    """BUSI's class sizes, without the images."""
    return np.repeat(["benign", "malignant", "normal"], [437, 210, 133])


def split(X, y, **kwargs):
    """train_val_test_split as three X parts, three y parts and the counts."""
    *parts, counts = train_val_test_split(X, y, **kwargs)
    return parts[:3], parts[3:], counts


def test_rounding_follows_the_documented_largest_remainder_rule():
    y = busi_like_labels()
    _, _, counts = split(np.arange(len(y)), y, random_state=0)
    assert counts == {"benign": (306, 65, 66), "malignant": (147, 31, 32), "normal": (93, 20, 20)}
    assert counts.totals == (546, 116, 118)
    _, _, counts = split(np.arange(len(y)), y, stratify=False, random_state=0)
    assert counts.totals == (546, 117, 117)  # 780 * 0.15 is exactly 117


@given(
    n=st.integers(50, 2000),
    weights=st.tuples(st.integers(1, 20), st.integers(0, 20), st.integers(0, 20)),
)
def test_each_part_is_within_one_sample_of_its_exact_share(n, weights):
    sizes = np.array(weights) / sum(weights)
    _, _, counts = split(list(range(n)), ["a"] * n, sizes=sizes, random_state=0)
    assert sum(counts.totals) == n
    assert np.all(np.abs(np.array(counts.totals) - n * sizes) < 1)


def test_parts_are_disjoint_cover_everything_and_keep_x_and_y_aligned():
    y = busi_like_labels()
    X = [f"{label}-{i}" for i, label in enumerate(y)]
    (X_train, X_val, X_test), (y_train, y_val, y_test), counts = split(X, y, random_state=1)
    assert type(X_train) is list and isinstance(y_train, np.ndarray)  # the kinds given
    assert sorted(X_train + X_val + X_test) == sorted(X)
    for X_part, y_part in [(X_train, y_train), (X_val, y_val), (X_test, y_test)]:
        assert [x.split("-")[0] for x in X_part] == list(y_part)
    assert [tuple(summarize(part)[label][0] for part in (y_train, y_val, y_test)) for label in counts] == list(
        counts.values()
    )
    assert list(X_train[:5]) != sorted(X_train[:5])  # shuffled, not in input order


def test_pandas_and_arrays_come_back_as_the_same_kind():
    y = pd.Series(busi_like_labels(), index=np.arange(780) + 1000)
    X = pd.DataFrame({"path": [f"img{i}.png" for i in range(780)]}, index=y.index)
    (X_train, _, _), (y_train, _, _), _ = split(X, y, random_state=0)
    assert isinstance(X_train, pd.DataFrame) and isinstance(y_train, pd.Series)
    assert (X_train.index == y_train.index).all()
    (X_train, _, _), _, _ = split(np.zeros((780, 4, 4, 3), dtype=np.uint8), list(y), random_state=0)
    assert X_train.shape == (546, 4, 4, 3)


def test_random_state_makes_the_split_reproducible():
    y = busi_like_labels()
    X = np.arange(len(y))
    first, _, _ = split(X, y, random_state=3)
    again, _, _ = split(X, y, random_state=np.random.RandomState(3))
    other, _, _ = split(X, y, random_state=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[2], other[2])


def test_a_part_of_size_zero_stays_empty():
    y = busi_like_labels()
    groups = np.arange(len(y)) // 4
    for kwargs in ({}, {"groups": groups}):
        (_, X_val, _), _, counts = split(np.arange(len(y)), y, sizes=(0.8, 0, 0.2), random_state=0, **kwargs)
        assert len(X_val) == 0 and counts.totals[1] == 0
    assert "  -" in str(counts)  # the share of an empty part


def test_groups_never_straddle_two_parts():
    rng = np.random.default_rng(0)
    group_sizes = rng.integers(1, 6, size=250)  # about 750 samples
    groups = np.repeat(rng.permutation(len(group_sizes)), group_sizes)  # ids in no particular order
    group_labels = rng.choice(["benign", "malignant", "normal"], size=len(group_sizes), p=[0.56, 0.27, 0.17])
    y = np.repeat(group_labels, group_sizes)
    y[::50] = "normal"  # some groups hold two classes
    X = np.arange(len(y))
    parts, _, counts = split(X, y, groups=groups, random_state=0)
    part_of_group = {}
    for k, part in enumerate(parts):
        for g in groups[part]:
            assert part_of_group.setdefault(g, k) == k, f"group {g} is in two parts"
    for label in counts:
        n = np.array(counts[label])
        assert np.all(np.abs(n / n.sum() - [0.70, 0.15, 0.15]) < 0.05), (label, n)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sizes": (0.7, 0.3)}, "sizes must be three"),
        ({"sizes": (0.9, 0.2, -0.1)}, "sizes must be three"),
        ({"sizes": (0.5, 0.3, 0.3)}, "sizes must be three"),
        ({"sizes": (float("nan"), 0.5, 0.5)}, "sizes must be three"),
        ({"sizes": "abc"}, "sizes must be three"),
        ({"y": ["a"] * 99}, "X has 100 samples but y has 99 labels"),
        ({"y": [["a"]] * 100}, "one-dimensional"),
        ({"groups": np.arange(99)}, r"groups has shape \(99,\); expected .* \(100,\)"),
        ({"y": ["a"] * 98 + ["rare"] * 2}, "class 'rare' has 2 samples, which .* split as train 2, val 0, test 0"),
        ({"groups": np.arange(100) % 2}, "class 'a' has 100 samples in 2 groups"),
    ],
)
def test_bad_arguments_are_explained(kwargs, message):
    arguments = {"X": list(range(100)), "y": ["a"] * 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_val_test_split(**arguments)


def test_too_few_samples_without_stratification():
    with pytest.raises(ValueError, match=r"the data has 3 samples, which .* train 2, val 0, test 1.* Give a part"):
        train_val_test_split([1, 2, 3], ["a", "b", "c"], stratify=False)


@requires_busi
@pytest.mark.busi
def test_busi_split_counts():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BUSI's README.md
        X, y = load_image_folder(BUSI)
    (X_train, X_val, X_test), _, counts = split(X, y, random_state=0)
    expected = {"benign": (306, 66, 66), "malignant": (147, 31, 32), "normal": (93, 20, 20)}
    for label, targets in expected.items():
        assert np.all(np.abs(np.array(counts[label]) - targets) <= 2), (label, counts[label])
    assert len(set(X_train) | set(X_val) | set(X_test)) == 780
