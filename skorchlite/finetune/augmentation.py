"""The default training-time augmentation of fine-tuning: a light, seeded
policy that the engine's decoding threads run reproducibly."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass

import numpy as np
from PIL import Image, ImageEnhance

from ..backbones import Preprocessing

__all__ = ["DefaultAugmentation", "default_augmentation"]


@dataclass(frozen=True)
class DefaultAugmentation:
    """The light training policy: random resized crop (at the resize size,
    so that the centre crop that follows sees the usual scale), horizontal
    flip, and small brightness, contrast and saturation changes in random
    order, as torchvision's ``RandomResizedCrop``, ``RandomHorizontalFlip``
    and ``ColorJitter`` draw them.

    Every random draw comes from ``seed``, never from a global generator,
    so images can be augmented in any thread, in any order, reproducibly.

    Examples
    --------
    >>> from PIL import Image
    >>> augment = DefaultAugmentation(size=64)
    >>> image = Image.new("RGB", (80, 100), (120, 60, 30))
    >>> augment(image, seed=0).size
    (64, 64)
    >>> augment(image, seed=0).tobytes() == augment(image, seed=0).tobytes()
    True
    """

    size: int
    _: KW_ONLY  # the strengths by name: DefaultAugmentation(64, (0.5, 1.0), ...) would not say which is which
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1
    seeded = True  # takes (image, seed): the engine runs it in its threads

    def __call__(self, image: Image.Image, seed: int) -> Image.Image:
        rng = np.random.default_rng(seed)
        box = self._crop_box(image.width, image.height, rng)
        out = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        enhancers = (
            (ImageEnhance.Brightness, self.brightness),
            (ImageEnhance.Contrast, self.contrast),
            (ImageEnhance.Color, self.saturation),
        )
        for k in rng.permutation(len(enhancers)):
            enhancer, strength = enhancers[k]
            out = enhancer(out).enhance(rng.uniform(1 - strength, 1 + strength))
        return out

    def _crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """torchvision's ``RandomResizedCrop.get_params``, drawn from ``rng``."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                return left, top, left + w, top + h
        # Fallback: the largest centred crop within the allowed aspect ratios.
        w, h = width, height
        if width / height < self.ratio[0]:
            h = round(width / self.ratio[0])
        elif width / height > self.ratio[1]:
            w = round(height * self.ratio[1])
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h


def default_augmentation(preprocessing: Preprocessing) -> DefaultAugmentation:
    """:class:`DefaultAugmentation` for a backbone's preprocessing."""
    return DefaultAugmentation(size=preprocessing.resize_size)
