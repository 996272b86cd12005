"""What the tests of skorchlite.inspect (tests/test_inspect_*.py) share: a
photograph, synthetic patches, images of two photographs, and the checks of
the PNGs drawn. The classifier trained on the patches is conftest.py's
``patch_clf`` fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from conftest import PHOTOS
from skorchlite.figures import DPI
from skorchlite.inspect.sizes import FIGSIZES

CAT = PHOTOS["chelsea"][0]
RNG = np.random.default_rng(0)


def patches(n: int, side: str | None, rng: np.random.Generator = RNG) -> np.ndarray:
    """Dark noise, with a bright 20-pixel square in the given half (None: no square)."""
    X = rng.integers(0, 90, (n, 64, 64, 3), dtype=np.uint8)
    if side is not None:
        for x in X:
            row, col = rng.integers(0, 44), rng.integers(0, 12) + (0 if side == "left" else 32)
            x[row : row + 20, col : col + 20] = rng.integers(200, 256, (20, 20, 3))
    return X


def training_set(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The patches conftest.py's ``patch_clf`` learns from, and their labels."""
    X = np.concatenate([patches(6, "left", rng), patches(6, "right", rng), patches(12, None, rng)])
    y = np.array(["square"] * 12 + ["plain"] * 12)
    return X, y


# In the single tests/test_inspect.py all draws came from RNG, the training set
# first: what a test drew depended on the tests run before it (one Grad-CAM
# test passes for about half of all draws). Now the training set is drawn from
# a generator of its own (the same patches), and each file restarts RNG where
# that stream stood after the training set (conftest.py's ``inspect_draws``):
# a file draws the same whichever files ran before it, or alone.
_AFTER_TRAINING_SET = np.random.default_rng(0)
training_set(_AFTER_TRAINING_SET)


def restart_draws() -> None:
    """Put RNG back where the stream stood once the training set was drawn."""
    RNG.bit_generator.state = _AFTER_TRAINING_SET.bit_generator.state


def halves(left: str, right: str) -> np.ndarray:
    """A 256x256 image: one photograph squeezed into each half."""
    parts = []
    for name in (left, right):
        image = Image.open(PHOTOS[name][0]).convert("RGB")
        side = min(image.size)
        box = (
            (image.width - side) // 2,
            (image.height - side) // 2,
            (image.width + side) // 2,
            (image.height + side) // 2,
        )
        parts.append(np.asarray(image.crop(box).resize((128, 256), Image.BILINEAR)))
    return np.concatenate(parts, axis=1)


def read_png(path: Path, kind: str) -> np.ndarray:
    """A sound PNG of the fixed size of ``kind``, not blank; its RGB pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = FIGSIZES[kind]
        assert image.size == (round(width * DPI), round(height * DPI))
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    return pixels


def outside(box: tuple[float, float, float, float], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie outside the crop ``box``."""
    rows, cols = np.indices(shape) + 0.5
    left, top, right, bottom = box
    return (cols < left) | (cols >= right) | (rows < top) | (rows >= bottom)
