"""Red-team regression tests of issue 13, points 2, 3, 7, 8 and 9: a blank
Grad-CAM for the first of two classes, silent all-zero embeddings at small
sizes, a replaced weights file served from the memo, non-regular files read
blindly, and extreme aspect ratios exhausting memory at the resize."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from conftest import PHOTOS
from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import check_image_size, get_backbone, min_image_size, resolve_weights
from skorchlite.cli import main
from skorchlite.images import load_rgb
from skorchlite.inspect import class_visualization, grad_cam

RNG = np.random.default_rng(0)


def photo(name: str) -> Image.Image:
    return Image.open(PHOTOS[name][0]).convert("RGB")


def square_crops(name: str, n: int, side: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random square crops (half the shorter side or more) of a photograph."""
    image, out = photo(name), []
    for _ in range(n):
        s = int(min(image.size) * rng.uniform(0.5, 1))
        x, y = rng.integers(0, image.width - s + 1), rng.integers(0, image.height - s + 1)
        out.append(np.asarray(image.crop((x, y, x + s, y + s)).resize((side, side), Image.BILINEAR)))
    return out


@pytest.fixture(scope="module")
def cat_or_coffee():
    """A two-class linear pipeline (classes_: cat = 0, coffee = 1), and an
    image with the coffee in its left half and the cat in its right."""
    # A generator of its own: drawn from the module's RNG, the crops (and the
    # maps the tests check) depended on which tests had drawn from it before.
    rng = np.random.default_rng(0)
    X = square_crops("chelsea", 5, 128, rng) + square_crops("coffee", 5, 128, rng)
    pipe = make_pipeline(PretrainedFeatureExtractor(image_size=128, cache=False), LogisticRegression(max_iter=2000))
    pipe.fit(X, ["cat"] * 5 + ["coffee"] * 5)
    both = np.concatenate([square_crops(name, 1, 128, rng)[0] for name in ("coffee", "chelsea")], axis=1)
    return pipe, both


# ------------------------------------------------- point 2: the first class
def test_issue13_point2_grad_cam_of_the_first_of_two_classes_is_not_blank(cat_or_coffee):
    """Class 0's evidence is the negative of class 1's: its map is not flat
    and lies where class 1's does not; probabilities and labels are still
    the pipeline's own."""
    pipe, both = cat_or_coffee
    assert list(pipe.classes_) == ["cat", "coffee"]
    cat, coffee = (grad_cam(pipe, [both], target=t) for t in ("cat", "coffee"))
    cat_map, coffee_map = cat.heatmaps[0], coffee.heatmaps[0]
    assert cat_map.max() == 1 == coffee_map.max()  # before the fix the cat's map was all 0
    assert cat_map[:, 128:].sum() / cat_map.sum() > 0.8
    assert coffee_map[:, :128].sum() / coffee_map.sum() > 0.8
    proba = pipe.predict_proba([both])[0]
    np.testing.assert_allclose([cat.target_probability[0], coffee.target_probability[0]], proba, atol=1e-4)
    assert cat.predicted[0] == coffee.predicted[0] == pipe.predict([both])[0]


def test_issue13_point2_class_visualization_of_the_first_class_climbs(cat_or_coffee):
    """Gradient ascent on class 0 had nothing to climb (a constant logit)."""
    pipe, _ = cat_or_coffee
    result = class_visualization(pipe, "cat", steps=3, tv_weight=0, lr=0.5, random_state=0)
    assert result.probability > result.probabilities[0] + 0.1


# ------------------------------------------------- point 7: replaced weights
@pytest.mark.parametrize("how", ["rewritten in place", "replaced by rename"])
def test_issue13_point7_a_weights_file_replaced_with_its_size_and_mtime_is_rehashed(tmp_path, how):
    """The memo was keyed on (path, size, mtime): the old hash, hence the
    old model and cache namespace, were served."""
    path = tmp_path / "weights.pth"
    path.write_bytes(b"a" * 64)
    old = time.time_ns() - 3600 * 10**9  # an old file, which the memo keeps
    os.utime(path, ns=(old, old))
    first = resolve_weights("efficientnet_lite0", path)
    assert resolve_weights("efficientnet_lite0", path) == first
    time.sleep(0.05)  # past the kernel's coarse ctime tick
    if how == "rewritten in place":
        with open(path, "r+b") as f:
            f.write(b"b" * 64)
    else:
        (tmp_path / "new.pth").write_bytes(b"b" * 64)
        os.replace(tmp_path / "new.pth", path)
    os.utime(path, ns=(old, old))  # as cp -p, rsync -t or touch -r would
    second = resolve_weights("efficientnet_lite0", path)
    assert second.sha256 == hashlib.sha256(b"b" * 64).hexdigest() != first.sha256
    assert second.id != first.id


# ------------------------------------------------- point 8: only regular files
def returns_within(call, seconds: float = 10, unblock=None):
    """call(), failing (not hanging the suite) when it blocks for longer."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as err:  # re-raised below
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            unblock()
        pytest.fail(f"blocked for over {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def release(fifo: Path):
    """Let a reader blocked on ``fifo`` go: open its writing end, and close it."""

    def unblock():
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    return unblock


# Run in a child with a memory limit, so a regression (reading /dev/zero
# until MemoryError, or a FIFO forever) fails instead of harming the suite.
_READ_EACH = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from skorchlite import images
images.MAX_FILE_BYTES = int(sys.argv[1])
out = []
for i, path in enumerate(json.loads(sys.argv[2])):
    for read in (images.load_rgb, images.content_key):
        try:
            read(images.check_images([path])[0], i)
            out.append("read")
        except Exception as err:
            out.append(f"{type(err).__name__}: {err}")
print(json.dumps(out))
"""


def read_each(paths: list, max_bytes: int = 1 << 30) -> list[str]:
    """The outcome of load_rgb, then content_key, of each path (sample i)."""
    child = subprocess.run(
        [sys.executable, "-c", _READ_EACH, str(max_bytes), json.dumps([str(p) for p in paths])],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def test_issue13_point8_fifos_devices_and_odd_paths_are_clear_errors(tmp_path):
    """A FIFO blocked forever, /dev/zero read until MemoryError; a symlink
    loop, a NUL byte or an over-long name gave raw errors without the sample."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    (tmp_path / "link.jpg").symlink_to(fifo)
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    paths = [
        fifo,
        tmp_path / "link.jpg",
        "/dev/zero",
        tmp_path / "loop.jpg",
        f"{tmp_path}/a\0b.jpg",
        tmp_path / ("n" * 300 + ".jpg"),
        tmp_path.joinpath(*["d" * 200] * 25, "x.jpg"),
    ]  # a name, then a path, too long
    causes = ["FIFO", "FIFO", "character device", "loop of symbolic links", "NUL byte", "too long", "too long"]
    outcomes = read_each(paths)
    for i, (path, cause) in enumerate(zip(paths, causes, strict=True)):
        for outcome in outcomes[2 * i : 2 * i + 2]:  # load_rgb, content_key
            assert outcome.startswith(f"ValueError: sample {i} ({str(path)!r}): "), outcome
            assert cause in outcome, outcome
            assert ("only regular files are read" in outcome) == (i < 3), outcome


def test_issue13_point8_image_files_over_the_size_cap_are_refused(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    size = path.stat().st_size
    assert read_each([path], max_bytes=size) == ["read", "read"]
    for outcome in read_each([path], max_bytes=size - 1):
        assert outcome.startswith(f"ValueError: sample 0 ({str(path)!r}): the file holds {size} bytes"), outcome
        assert f"over the limit of {size - 1} bytes (skorchlite.images.MAX_FILE_BYTES)" in outcome


def test_issue13_point8_transform_refuses_a_fifo_without_blocking(tmp_path):
    """What ``skorchlite predict`` and Dask tasks run: a cached transform."""
    good = tmp_path / "good.png"
    Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(good)
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    extractor = PretrainedFeatureExtractor(image_size=64).fit([good])
    with pytest.raises(ValueError, match=re.escape(f"sample 1 ({str(fifo)!r}): this is a FIFO")):
        returns_within(lambda: extractor.transform([good, fifo]), unblock=release(fifo))


def test_issue13_point8_weights_that_are_not_regular_files_are_refused(tmp_path):
    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)
    for path, cause in ((fifo, "FIFO"), ("/dev/zero", "character device"), (tmp_path, "directory")):
        with pytest.raises(OSError, match=f"Weights file {re.escape(repr(str(path)))} cannot be read: .*{cause}"):
            returns_within(lambda path=path: resolve_weights("efficientnet_lite0", path), unblock=release(fifo))


# ------------------------------------------------- point 3: too small an input
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_issue13_point3_lite_embeddings_are_sound_from_the_minimum_size(name):
    """At the bound each photograph has its own, mostly non-zero, embedding;
    one pixel less (what used to be returned silently) is (almost) all zeros."""
    minimum = min_image_size(name)
    assert minimum == get_backbone(name).min_image_size == 33
    photos = [photo(p) for p in PHOTOS]
    at = PretrainedFeatureExtractor(name, image_size=minimum, cache=False).fit_transform(photos)
    assert (at != 0).mean(1).min() > 0.2 and np.linalg.matrix_rank(at) == len(photos)
    backbone = get_backbone(name)  # what image_size=32 computed before it was refused
    below = backbone.preprocessing.resized(minimum - 1).transform()
    with torch.inference_mode():
        assert (backbone.model(torch.stack([below(p) for p in photos])) == 0).float().mean() > 0.99


def test_issue13_point3_sizes_below_the_minimum_are_refused_everywhere(tmp_path, capsys):
    X = RNG.integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    message = re.escape("image_size=32 is too small for backbone 'efficientnet_lite0': its smallest input is 33 px")
    with pytest.raises(ValueError, match=message):
        PretrainedFeatureExtractor(image_size=32, cache=False).fit(X)
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier(image_size=32, epochs=1, cache=False).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=message):
        grad_cam("efficientnet_lite0", X[:1], image_size=32)
    with pytest.raises(ValueError, match=re.escape("image_size=74 is too small for backbone 'inception_v3'")):
        check_image_size("inception_v3", 74)
    folder = tmp_path / "images"  # not tmp_path, which holds the embedding cache (tests/conftest.py)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(X[i]).save(folder / label / f"{i}.png")
    assert main(["evaluate", str(folder), "--cv", "2", "--image-size", "32", "--verbose", "0"]) == 1
    assert "its smallest input is 33 px" in capsys.readouterr().err


# ------------------------------------------------- point 9: extreme aspect ratios
def test_issue13_point9_extreme_aspect_ratios_are_refused_before_the_resize(tmp_path):
    """A 2 KB PNG of 2,000,000 x 1 pixels passed the bomb check, then asked
    for ~32 GB at the resize (50,000,000 x 1: OverflowError). Refused by the
    one input layer, so transform, fine-tuning (random resized crops) and
    inspect all stop before resizing; 100:1 still works."""
    line = tmp_path / "line.png"
    Image.new("L", (2_000_000, 1)).save(line, optimize=True)
    assert line.stat().st_size < 10_000
    tall = Image.new("RGB", (1, 50_000_000 // 1000))
    # The long side named as it is: a wide image's width, a tall one's height.
    message = "the image is 2000000x1, its width more than skorchlite.images.MAX_ASPECT_RATIO = 100 times its height"
    with pytest.raises(ValueError, match=re.escape(f"sample 3 ({str(line)!r}): {message}")):
        load_rgb(line, 3)  # first: before the fix the calls below would exhaust memory
    with pytest.raises(
        ValueError,
        match=re.escape("sample 0 (PIL image, mode 'RGB', size 1x50000): the image is 1x50000, its height more than"),
    ):
        load_rgb(tall, 0)
    strip = RNG.integers(0, 256, (2, 1000), dtype=np.uint8)  # 500:1
    with pytest.raises(ValueError, match="sample 1 .*MAX_ASPECT_RATIO"):
        PretrainedFeatureExtractor(image_size=64, cache=False).fit_transform([np.zeros((40, 40), np.uint8), line])
    with pytest.raises(ValueError, match="sample 1 .*MAX_ASPECT_RATIO"):
        FineTuneClassifier(image_size=64, epochs=1, validation_fraction=0, cache=False).fit(
            [np.zeros((40, 40), np.uint8), strip], [0, 1]
        )
    with pytest.raises(ValueError, match="sample 0 .*MAX_ASPECT_RATIO"):
        grad_cam("efficientnet_lite0", [line], image_size=64)
    wide = RNG.integers(0, 256, (2, 200, 3), dtype=np.uint8)  # exactly 100:1
    assert np.isfinite(PretrainedFeatureExtractor(image_size=64, cache=False).fit_transform([wide])).all()
