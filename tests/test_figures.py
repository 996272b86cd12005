"""What every figure and the report page share, set once in skorchlite.figures (issue 25, point 5):
figure sizes, thumbnails, and how a Grad-CAM heatmap lies over its image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib import colormaps
from PIL import Image

import skorchlite.inspect.sizes
import skorchlite.report
from skorchlite import figures
from skorchlite.inspect.gradcam import draw_overlay
from skorchlite.report.gallery import ERROR_THUMBNAIL, MIN_THUMBNAIL, error_gallery


def test_every_figure_size_is_set_in_one_table():
    assert skorchlite.report.FIGSIZES is figures.FIGSIZES
    assert skorchlite.inspect.sizes.FIGSIZES is figures.FIGSIZES
    report = {"confusion_matrix", "roc_pr", "learning_curves", "misclassified"}
    inspect = {"grad_cam", "feature_maps", "class_visualization", "adversarial"}
    assert set(figures.FIGSIZES) == report | inspect


@given(
    width=st.integers(1, 600),
    height=st.integers(1, 600),
    side=st.integers(16, 300),
    min_side=st.sampled_from([0, 96]),
)
def test_a_thumbnail_fits_its_side_and_small_images_grow_sharp(width, height, side, min_side):
    image = Image.new("RGB", (width, height), (10, 20, 30))
    small = figures.thumbnail(image, side, min_side)
    assert image.size == (width, height)  # a copy: the image shown elsewhere is untouched
    shrunk = image.copy()
    shrunk.thumbnail((side, side))  # Pillow's own: at most side long, the aspect kept
    if max(shrunk.size) >= min_side:
        assert small.size == shrunk.size and max(small.size) <= side
    else:
        # Enlarged by the smallest whole factor that reaches min_side: each pixel a square block.
        scale = small.width // shrunk.width
        assert small.size == (shrunk.width * scale, shrunk.height * scale)
        assert min_side <= max(small.size) < min_side + max(shrunk.size)


@given(value=st.floats(0, 1), grey=st.integers(0, 255))
def test_an_overlay_is_the_image_under_the_heatmap_s_colour(value, grey):
    image = Image.new("RGB", (6, 4), (grey, grey, grey))
    blended = np.asarray(figures.overlay_heatmap(image, np.full((4, 6), value, dtype=np.float32)))
    colour = np.asarray(colormaps[figures.HEATMAP_CMAP](np.float32(value))[:3]) * 255
    expected = (1 - figures.HEATMAP_ALPHA) * grey + figures.HEATMAP_ALPHA * colour
    assert np.abs(blended.astype(float) - expected).max() <= 1


def test_grad_cam_figures_and_the_page_draw_heatmaps_alike():
    fig = figures.new_figure(figures.FIGSIZES["grad_cam"])
    draw_overlay(fig, Image.new("RGB", (8, 8)), np.ones((8, 8), dtype=np.float32), "t")
    heat = fig.axes[1].images[-1]
    assert heat.get_cmap().name == figures.HEATMAP_CMAP and heat.get_alpha() == figures.HEATMAP_ALPHA


@pytest.mark.parametrize("size", [(8, 8), (400, 300)])
def test_the_page_s_overlay_lies_on_the_thumbnail_shown_beside_it(size, monkeypatch):
    """A tiny image and its heatmap are enlarged alike (pixels kept sharp); a large one, shrunk alike."""
    X = np.zeros((2, size[1], size[0], 3), dtype=np.uint8)
    heatmap = np.zeros(size[::-1], dtype=np.float32)
    heatmap[:, : size[0] // 2] = 1  # the left half
    shown = []
    monkeypatch.setattr("skorchlite.report.gallery.jpeg_uri", lambda image: shown.append(image) or "data:")
    error_gallery(X, np.array(["a", "b"]), np.array(["b", "a"]), None, np.array(["a", "b"]), lambda r, t: [heatmap] * 2)
    # The images are black: an overlay is the one with colour.
    overlays = [image for image in shown if np.asarray(image).any()]
    thumbnails = [image for image in shown if not np.asarray(image).any()]
    assert len(overlays) == len(thumbnails) == 2
    expected = figures.thumbnail(Image.fromarray(X[0]), ERROR_THUMBNAIL, MIN_THUMBNAIL).size
    assert all(t.size == expected for t in thumbnails) and all(o.size == expected for o in overlays)
    pixels = np.asarray(overlays[0]).astype(int)
    left, right = pixels[:, : expected[0] // 2 - 1], pixels[:, expected[0] // 2 + 1 :]
    assert (left[..., 0] > 40).all() and (right[..., 2] > 40).all() and (right[..., 0] < 10).all()
