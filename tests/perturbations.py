"""Copies of an image as real duplicates look: the one generator of them.

Used by tests/test_duplicates.py and benchmarks/duplicates.py (which puts
tests/ on its path), so both measure the same copies. Each kind is a
function ``(image, rng) -> (copy, format, quality)`` on an RGB PIL image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

Copy = tuple[Image.Image, str, int]


def resize(image: Image.Image, rng: np.random.Generator) -> Copy:
    """Another size (0.6x to 1.4x) and aspect ratio (width / height changed by up to +-15 %)."""
    scale, aspect = rng.uniform(0.6, 1.4), rng.uniform(0.85, 1.15)
    size = (round(image.width * scale * aspect**0.5), round(image.height * scale / aspect**0.5))
    return image.resize(size, Image.BICUBIC), "PNG", 0


def crop(image: Image.Image, rng: np.random.Generator) -> Copy:
    """Up to 10 % of the width and of the height cut from the border, split at random between the sides."""
    cut_w, cut_h = rng.uniform(0.02, 0.10, 2) * image.size
    left, top = rng.uniform(0, cut_w), rng.uniform(0, cut_h)
    box = (round(left), round(top), round(image.width - (cut_w - left)), round(image.height - (cut_h - top)))
    return image.crop(box), "PNG", 0


def jpeg(image: Image.Image, rng: np.random.Generator) -> Copy:
    """Re-encoded as JPEG, quality 50 to 95."""
    return image, "JPEG", int(rng.integers(50, 96))


def grey_rgb(image: Image.Image, rng: np.random.Generator) -> Copy:
    """Saved as 8-bit grey (from RGB), or as RGB with a faint colour tint (from grey)."""
    pixels = np.asarray(image)
    if pixels.ndim == 3 and np.ptp(pixels.astype(int), axis=2).max() > 0:
        return image.convert("L"), "PNG", 0
    tint = np.asarray(rng.uniform(0.92, 1.0, 3))
    return Image.fromarray((np.asarray(image.convert("RGB")) * tint).astype(np.uint8)), "PNG", 0


def brightness_contrast(image: Image.Image, rng: np.random.Generator) -> Copy:
    """Brightness and contrast each changed by up to +-15 %."""
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15)), "PNG", 0


def overlay(image: Image.Image, rng: np.random.Generator) -> Copy:
    """A caliper mark (two crosses and a dotted line between them) and a line of text, as scanners burn in."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    w, h = image.size
    colour = tuple(int(c) for c in rng.choice([(255, 255, 255), (255, 255, 0), (0, 255, 255)]))
    (x0, y0), (x1, y1) = rng.uniform(0.25, 0.75, (2, 2)) * (w, h)
    arm = max(3, round(0.02 * w))
    for x, y in ((x0, y0), (x1, y1)):
        draw.line([(x - arm, y), (x + arm, y)], fill=colour, width=1)
        draw.line([(x, y - arm), (x, y + arm)], fill=colour, width=1)
    for t in np.linspace(0, 1, 12)[1:-1]:
        draw.point((x0 + t * (x1 - x0), y0 + t * (y1 - y0)), fill=colour)
    draw.text((rng.uniform(0.02, 0.5) * w, rng.uniform(0.02, 0.9) * h), f"D1 {rng.uniform(0.3, 3):.2f}cm", fill=colour)
    return image, "PNG", 0


def export(image: Image.Image, rng: np.random.Generator) -> Copy:
    """A dataset re-export: squashed to a fixed square (224 or 256) and saved as JPEG quality 75."""
    side = int(rng.choice([224, 256]))
    return image.resize((side, side), Image.BILINEAR), "JPEG", 75


def combined(image: Image.Image, rng: np.random.Generator) -> Copy:
    """Crop, resize, brightness/contrast, then JPEG: several edits on one copy."""
    image = crop(image, rng)[0]
    image = resize(image, rng)[0]
    image = brightness_contrast(image, rng)[0]
    return jpeg(image, rng)


PERTURBATIONS: dict[str, Callable[[Image.Image, np.random.Generator], Copy]] = {
    f.__name__: f for f in (resize, crop, jpeg, grey_rgb, brightness_contrast, overlay, export, combined)
}


def write_copies(sources: list[Path], folder: Path, seed: int = 0) -> list[tuple[int, str, Path]]:
    """A copy of each source under each perturbation, written to ``folder``.

    Returns
    -------
    list of (source index, kind, path)
    """
    rng = np.random.default_rng(seed)
    written = []
    for index, source in enumerate(sources):
        with Image.open(source) as opened:
            image = opened.convert("RGB")
        for kind, perturb in PERTURBATIONS.items():
            copy, format, quality = perturb(image, rng)
            path = folder / f"{index:04d}-{kind}.{'jpg' if format == 'JPEG' else 'png'}"
            copy.save(path, format, **({"quality": quality} if format == "JPEG" else {}))
            written.append((index, kind, path))
    return written


# Fractions cut from (left, right) and from (top, bottom) when aligning two
# images: up to 10 % in all, as the crop kind cuts.
CUTS = [(a / 30, b / 30) for a in range(4) for b in range(4 - a)]


def pixel_correlation(paths: list[Path], side: int = 32, aligned: bool = False) -> np.ndarray:
    """Pearson correlation between every two images' ``side`` x ``side`` grey thumbnails.

    ``aligned`` takes the best over crops of up to 10 % of either image's
    border (:data:`CUTS`), so that a crop of an image still correlates with
    it. Pairs below 0.9 are *clearly different* images: a detector that
    pairs any of them makes a false pair.
    """
    cuts = CUTS if aligned else [(0.0, 0.0)]
    whole, crops = [], []
    for path in paths:
        with Image.open(path) as opened:
            grey = opened.convert("L")
        w, h = grey.size
        boxes = [(left * w, t * h, w - r * w, h - b * h) for left, r in cuts for t, b in cuts]
        thumbs = _unit(
            np.array([np.asarray(grey.resize((side, side), Image.BOX, box=box), np.float32).ravel() for box in boxes])
        )
        whole.append(thumbs[0])
        crops.append(thumbs)
    whole = np.array(whole)
    best = np.array([(mine @ whole.T).max(axis=0) for mine in crops])
    return np.maximum(best, best.T)


def _unit(thumbs: np.ndarray) -> np.ndarray:
    centred = thumbs - thumbs.mean(axis=-1, keepdims=True)
    return centred / np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-6)
