"""Red-team regression tests of issue 13, points 2, 3, 7, 8 and 9: a blank
Grad-CAM for the first of two classes, silent all-zero embeddings at small
sizes, a replaced weights file served from the memo, non-regular files read
blindly, and extreme aspect ratios exhausting memory at the resize."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from conftest import PHOTOS
from skorchlite import PretrainedFeatureExtractor
from skorchlite.inspect import class_visualization, grad_cam

RNG = np.random.default_rng(0)


def photo(name: str) -> Image.Image:
    return Image.open(PHOTOS[name][0]).convert("RGB")


def square_crops(name: str, n: int, side: int) -> list[np.ndarray]:
    """Random square crops (half the shorter side or more) of a photograph."""
    image, out = photo(name), []
    for _ in range(n):
        s = int(min(image.size) * RNG.uniform(0.5, 1))
        x, y = RNG.integers(0, image.width - s + 1), RNG.integers(0, image.height - s + 1)
        out.append(np.asarray(image.crop((x, y, x + s, y + s)).resize((side, side), Image.BILINEAR)))
    return out


@pytest.fixture(scope="module")
def cat_or_coffee():
    """A two-class linear pipeline (classes_: cat = 0, coffee = 1), and an
    image with the coffee in its left half and the cat in its right."""
    X = square_crops("chelsea", 5, 128) + square_crops("coffee", 5, 128)
    pipe = make_pipeline(PretrainedFeatureExtractor(image_size=128, cache=False), LogisticRegression(max_iter=2000))
    pipe.fit(X, ["cat"] * 5 + ["coffee"] * 5)
    both = np.concatenate([square_crops(name, 1, 128)[0] for name in ("coffee", "chelsea")], axis=1)
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
