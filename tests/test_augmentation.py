"""The default training-time augmentation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from skorchlite.backbones import get_backbone
from skorchlite.finetune.augmentation import DefaultAugmentation, default_augmentation


def test_default_augmentation_is_random_and_keeps_the_resize_size():
    preprocessing = get_backbone("efficientnet_lite0").preprocessing.resized(64)
    augment = default_augmentation(preprocessing)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    outs = [np.asarray(augment(image, seed)) for seed in range(4)]
    assert all(o.shape == (preprocessing.resize_size, preprocessing.resize_size, 3) for o in outs)
    assert not all(np.array_equal(outs[0], o) for o in outs[1:])
    torch.manual_seed(1)  # the global generators play no part: the seed alone fixes it
    np.random.seed(1)
    np.testing.assert_array_equal(np.asarray(augment(image, 0)), outs[0])
    assert preprocessing.resize_size == 73  # 64 * 256 / 224


def test_default_augmentation_crops_follow_torchvisions_rules():
    augment = DefaultAugmentation(size=32)
    rng = np.random.default_rng(0)
    for width, height in [(100, 100), (300, 40), (40, 300), (1, 1)]:
        for _ in range(50):
            left, top, right, bottom = augment._crop_box(width, height, rng)
            w, h = right - left, bottom - top
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            if (width, height) == (100, 100):  # the random branch: scale and ratio bounds hold
                assert 0.5 * 0.9 <= w * h / 1e4 <= 1.0 and 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
