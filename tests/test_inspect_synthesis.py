"""skorchlite.inspect.synthesis: class visualisation with a total-variation
term."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inspect_helpers import RNG, read_png

from skorchlite.inspect import class_visualization, total_variation

pytestmark = pytest.mark.usefixtures("inspect_draws")


# ------------------------------------------------------------- class visualisation
def test_total_variation_term_smooths_the_image_and_the_class_still_wins():
    """At 96 px in 30 steps from noise (p(goldfish) about 0.001), with the TV
    term the class probability rises above 0.5 and the image has less
    than half the total variation of the image optimised without it."""
    args = dict(backbone="efficientnet_lite0", class_index="goldfish", steps=30, random_state=0, image_size=96)
    smooth = class_visualization(tv_weight=1000, **args)
    rough = class_visualization(tv_weight=0, **args)
    assert smooth.probabilities[0] < 0.01 and smooth.probability > 0.5
    assert total_variation(smooth.image) < 0.5 * total_variation(rough.image)
    assert smooth.image.shape == (96, 96, 3) and 0 <= smooth.image.min() and smooth.image.max() <= 1


def test_class_visualization_is_seeded_and_leaves_the_global_rng_alone(tmp_path):
    state = torch.random.get_rng_state()
    first = class_visualization(
        "efficientnet_lite0", 1, steps=2, random_state=7, image_size=64, path=tmp_path / "c.png"
    )
    again = class_visualization("efficientnet_lite0", 1, steps=2, random_state=7, image_size=64)
    other = class_visualization("efficientnet_lite0", 1, steps=2, random_state=8, image_size=64)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)
    assert first.target == "goldfish" and first.probabilities.shape == (2,)
    assert first.image_uint8.dtype == np.uint8
    read_png(tmp_path / "c.png", "class_visualization")
    with pytest.raises(
        ValueError, match=r"The 'steps' parameter of class_visualization must be an int in the range \[1, inf\)"
    ):
        class_visualization("efficientnet_lite0", 1, steps=0)


def test_total_variation():
    assert total_variation(np.full((5, 5, 3), 200, np.uint8)) == 0
    stripes = np.zeros((4, 4), np.uint8)
    stripes[:, 1::2] = 255
    assert total_variation(stripes) == 1.0
    assert total_variation(RNG.random((64, 64, 3))) == pytest.approx(2 / 3, abs=0.03)
