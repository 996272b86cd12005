"""skorchlite.inspect.activations: feature maps, and unknown layers named
with the available ones."""

from __future__ import annotations

import numpy as np
import pytest
from inspect_helpers import CAT, patches, read_png

from skorchlite import PretrainedFeatureExtractor
from skorchlite.inspect import feature_maps, grad_cam

pytestmark = pytest.mark.usefixtures("inspect_draws")


# ------------------------------------------------------------- feature maps
def test_feature_maps_are_the_layer_the_extractor_pools(tmp_path):
    maps = feature_maps(CAT, "efficientnet_lite0", "_blocks.5", image_size=96, path=tmp_path / "maps.png")
    assert maps.shape == (80, 6, 6) and maps.dtype == np.float32
    pooled = PretrainedFeatureExtractor(layer="_blocks.5", image_size=96, cache=False).fit_transform([CAT])[0]
    np.testing.assert_allclose(maps.mean((1, 2)), pooled, atol=1e-3)
    read_png(tmp_path / "maps.png", "feature_maps")
    # Default: the last spatial feature map, 1280 channels of 7x7 at 224 px.
    assert feature_maps(CAT).shape == (1280, 7, 7)


def test_unknown_layers_list_the_available_names(patch_clf):
    with pytest.raises(
        ValueError,
        match=r"no layer '_head'. Did you mean '_head_act'.*144 layers are listed by: skorchlite backbones --layers",
    ):
        feature_maps(CAT, "efficientnet_lite0", "_head")
    with pytest.raises(ValueError, match=r"no layer 'layer4'.*layers are listed by"):
        grad_cam(patch_clf, patches(1, None), layer="layer4")
    with pytest.raises(ValueError, match="spatial map"):
        grad_cam("efficientnet_lite0", [CAT], layer="flatten", image_size=64)
