"""skorchlite.inspect.gradcam: Grad-CAM, aligned with the input image (the
preprocessing's crop box says where the crop comes from)."""

from __future__ import annotations

import numpy as np
import pytest
from inspect_helpers import CAT, halves, outside, patches, read_png
from PIL import Image

from skorchlite.backbones import get_backbone
from skorchlite.inspect import grad_cam

pytestmark = pytest.mark.usefixtures("inspect_draws")


# ------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (256, 256), (90, 50)])
def test_crop_box_is_where_the_crop_comes_from(size):
    """A horizontal and a vertical ramp: each pixel of the crop holds the
    original coordinates it came from, which crop_box must predict."""
    width, height = size
    ramp = np.zeros((height, width, 3), dtype=np.uint8)
    ramp[..., 0] = np.round((np.arange(width) + 0.5) / width * 255)[None, :]
    ramp[..., 1] = np.round((np.arange(height) + 0.5) / height * 255)[:, None]
    pre = get_backbone("efficientnet_lite0").preprocessing.resized(64)
    crop = pre.transform(normalize=False)(Image.fromarray(ramp)).numpy()
    left, top, right, bottom = pre.crop_box(width, height)
    centres = (np.arange(64) + 0.5) / 64
    expect_x = (left + centres * (right - left)) / width
    expect_y = (top + centres * (bottom - top)) / height
    inner = slice(4, -4)  # resampling near the edges blends in clamped values
    np.testing.assert_allclose(crop[0, 32, inner], expect_x[inner], atol=2.5 / 255)
    np.testing.assert_allclose(crop[1, inner, 32], expect_y[inner], atol=2.5 / 255)


# ------------------------------------------------------------- Grad-CAM
def test_grad_cam_finds_each_class_in_its_half_of_the_image(tmp_path):
    both = halves("coffee", "chelsea")
    result = grad_cam("efficientnet_lite0", [both, both], target=["tabby", "espresso"], path=tmp_path / "cams")
    cat, coffee = result.heatmaps
    assert cat.shape == coffee.shape == (256, 256)
    assert cat[:, 128:].sum() / cat.sum() > 0.8  # the cat is on the right
    assert coffee[:, :128].sum() / coffee.sum() > 0.6  # the espresso on the left
    # The 224 px crop of a 256 px square covers pixels 16-239: nothing outside.
    for heatmap in result.heatmaps:
        assert heatmap[:16].max() == heatmap[240:].max() == heatmap[:, :16].max() == heatmap[:, 240:].max() == 0
        assert heatmap.max() == 1 and heatmap.min() == 0
    assert list(result.target) == ["tabby", "espresso"] and result.layer == "_head_act"
    assert [p.name for p in result.paths] == ["000_image_gradcam.png", "001_image_gradcam.png"]
    for path in result.paths:
        read_png(path, "grad_cam")


def test_grad_cam_of_a_finetuned_model_points_at_the_square(patch_clf):
    result = grad_cam(patch_clf, np.concatenate([patches(3, "left"), patches(3, "right")]))
    assert list(result.predicted) == ["square"] * 6 and list(result.target) == ["square"] * 6
    left_share = np.array([h[:, :32].sum() / h.sum() for h in result.heatmaps])
    assert (left_share[:3] > 0.6).all() and (left_share[3:] < 0.4).all(), left_share


def test_grad_cam_heatmaps_take_each_image_shape(tmp_path):
    photo = Image.open(CAT).convert("RGB")  # 451 x 300
    photo.resize((110, 70)).save(tmp_path / "a photo.png")
    X = [
        np.asarray(photo)[:, 100:300],  # portrait
        np.asarray(photo.convert("L").resize((160, 120))),  # grey
        photo.resize((90, 50)),
        tmp_path / "a photo.png",
    ]
    result = grad_cam("efficientnet_lite0", X, image_size=64, batch_size=3)
    preprocessing = get_backbone("efficientnet_lite0").preprocessing.resized(64)
    for heatmap, shape in zip(result.heatmaps, [(300, 200), (120, 160), (50, 90), (70, 110)], strict=True):
        assert heatmap.shape == shape and heatmap.dtype == np.float32
        mask = outside(preprocessing.crop_box(shape[1], shape[0]), shape)
        assert mask.any() and heatmap[mask].max() == 0 and heatmap[~mask].max() == 1
    assert (result.target == result.predicted).all() and result.target_probability.shape == (4,)


def test_grad_cam_targets_are_checked(patch_clf):
    X = patches(2, None)
    with pytest.raises(ValueError, match="target has 3 labels but X has 2 images"):
        grad_cam(patch_clf, X, target=["square"] * 3)
    with pytest.raises(ValueError, match="'sqare' is not a class.*Did you mean 'square'.*Classes: plain, square"):
        grad_cam(patch_clf, X, target="sqare")
    with pytest.raises(ValueError, match="one PNG but there are 2 images"):
        grad_cam(patch_clf, X, path="out.png")
    assert list(grad_cam(patch_clf, X, target="plain").target) == ["plain", "plain"]
