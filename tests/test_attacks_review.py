"""Issue 13, second round: attacks of the same classes as the issue's, not listed in it.

Each test names its class: hangs on non-regular files, code run by an input,
memory blow-ups, partial writes, weights that do not mean what they say, and
a caller's process left changed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.cli import main
from skorchlite.images import MAX_FILE_BYTES, load_rgb

X = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)


def _within(seconds, work):
    """Run ``work`` in a thread; fail (instead of hanging the suite) past ``seconds``."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return result["value"]


def _peak_bytes(work) -> int:
    """Peak bytes Python allocated while ``work`` ran (numpy and Pillow report theirs)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_hang_a_cache_entry_that_is_not_a_regular_file_is_a_miss(tmp_path, kind):
    cache = tmp_path / "cache"
    extractor = PretrainedFeatureExtractor(image_size=64, cache=cache).fit()
    reference = extractor.transform(X)
    entries = sorted(cache.rglob("*.emb"))
    assert len(entries) == len(X)
    entries[0].unlink()
    if kind == "fifo":
        os.mkfifo(entries[0])
    else:
        entries[0].symlink_to("/dev/zero")
    again = _within(60, lambda: PretrainedFeatureExtractor(image_size=64, cache=cache).fit().transform(X))
    np.testing.assert_allclose(again, reference, atol=1e-5)
    assert stat.S_ISREG(entries[0].lstat().st_mode)  # replaced by a real entry


def test_code_an_eps_file_never_runs_ghostscript(tmp_path, monkeypatch):
    ran = tmp_path / "gs_ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho ran >> {ran}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    eps = tmp_path / "scan.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n")
    with pytest.raises(ValueError, match=r"sample 0 .*scan.jpg.*PostScript/EPS.*refused"):
        PretrainedFeatureExtractor(image_size=64, cache=False).fit().transform([str(eps)])
    assert not ran.exists()


def test_memory_reading_a_small_image_reserves_no_more_than_its_size(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(X[0]).save(path)
    assert MAX_FILE_BYTES >= 1 << 30
    peak = _peak_bytes(lambda: load_rgb(path, 0))
    assert peak < 8 << 20, peak  # reading to the 1 GiB cap reserved all of it before


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_memory_deep_images_convert_in_a_few_bytes_per_pixel(tmp_path, mode):
    side = 1500
    if mode == "I;16":
        image = Image.fromarray(np.random.default_rng(0).integers(0, 65536, (side, side), dtype=np.uint16))
    else:
        image = Image.fromarray(np.random.default_rng(0).random((side, side), dtype=np.float32), mode="F")
    peak = _peak_bytes(lambda: load_rgb(image, 0))
    # The RGB result alone is 3 bytes a pixel; int64 temporaries made it over 20.
    assert peak < 12 * side * side, peak / side**2


def test_partial_write_embed_keeps_names_that_are_not_utf8(tmp_path, capsys):
    root = tmp_path / "images"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(X[i]).save(root / label / f"{i}.png")
    odd = os.fsencode(root / "a") + b"/\x01\xff.png"
    Image.fromarray(X[3]).save(odd.decode("utf-8", "surrogateescape"))
    out = tmp_path / "u.npy"
    assert main(["embed", str(root), "-o", str(out), "--image-size", "64", "--verbose", "0"]) == 0
    listing = (tmp_path / "u.csv").read_bytes()
    assert odd in listing  # the file's own bytes, so the row names the file
    assert np.load(out).shape[0] == len(listing.splitlines()) - 1 == 7


@pytest.mark.parametrize("class_weight", [{0: -1.0, 1: 2.0}, {0: float("inf"), 1: 1.0}, {0: float("nan"), 1: 1.0}])
def test_weights_class_weight_must_be_finite_and_non_negative(class_weight):
    clf = FineTuneClassifier(
        unfreeze=0, augment=None, epochs=1, image_size=64, validation_fraction=0, cache=False, class_weight=class_weight
    )
    with pytest.raises(ValueError, match="class_weight must give every class a finite weight >= 0"):
        clf.fit(X, [0, 1, 0, 1])
    assert not hasattr(clf, "model_")


def test_weights_of_partial_fit_chunks_count_against_each_other():
    y = [0, 1, 0, 1]
    # SGD: Adam's steps hardly depend on a uniform scale of the loss, by design.
    params = dict(
        unfreeze=0,
        augment=None,
        image_size=64,
        batch_size=2,
        validation_fraction=0,
        lr=0.05,
        schedule=None,
        optimizer="sgd",
        momentum=0.0,
        cache=False,
        random_state=0,
    )

    def run(first_weight):
        clf = FineTuneClassifier(**params)
        clf.partial_fit(X[:2], y[:2], classes=[0, 1], sample_weight=[first_weight] * 2)
        clf.partial_fit(X[2:], y[2:], sample_weight=[1.0, 1.0])
        return clf.predict_proba(X)

    assert not np.allclose(run(10.0), run(1.0))
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        FineTuneClassifier(class_weight="balanced", **params).partial_fit(X, y)


RNG_AFTER_FIT = """
import numpy as np, torch
from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
X = np.zeros((4, 40, 40, 3), np.uint8)
torch.manual_seed(0)
before = torch.get_rng_state()
PretrainedFeatureExtractor(image_size=64, cache=False).fit(X)
FineTuneClassifier(backbone="efficientnet_lite1", unfreeze=0, augment=None, epochs=1, image_size=64,
                   validation_fraction=0, cache=False, random_state=0).fit(X, [0, 1, 0, 1])
print(torch.equal(before, torch.get_rng_state()))
"""


def test_process_building_a_backbone_leaves_torchs_random_state_alone():
    done = subprocess.run([sys.executable, "-c", RNG_AFTER_FIT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "True"
