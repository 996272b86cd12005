"""skorchlite.inspect.adversarial: adversarial examples computed in the
model's own preprocessing space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inspect_helpers import CAT, patches, read_png

from conftest import PHOTOS
from skorchlite.inspect import adversarial_accuracy, adversarial_example
from skorchlite.inspect.explainable import resolve_model

pytestmark = pytest.mark.usefixtures("inspect_draws")


# ------------------------------------------------------------- adversarial examples
def test_two_grey_levels_fool_the_network_on_a_real_photograph(tmp_path):
    result = adversarial_example("efficientnet_lite0", CAT, eps=2 / 255, steps=5, path=tmp_path / "adv.png")
    assert result.original_label in PHOTOS["chelsea"][1]
    assert result.label != result.original_label and result.success
    assert np.abs(result.perturbation).max() <= 2 / 255 + 1e-6
    assert result.image.min() >= 0 and result.image.max() <= 1 and result.image.shape == (224, 224, 3)
    # Quantised onto the 8-bit grid: the uint8 image itself is adversarial.
    explainable = resolve_model("efficientnet_lite0")
    pixels = torch.from_numpy(result.image_uint8).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        assert explainable.classes[explainable.net(pixels).argmax()] == result.label
    assert np.abs(result.image_uint8.astype(int) - np.rint(result.original * 255)).max() <= 2
    read_png(tmp_path / "adv.png", "adversarial")


def test_targeted_and_fgsm_attacks_stay_in_the_ball():
    targeted = adversarial_example("efficientnet_lite0", CAT, "golden retriever", eps=8 / 255, steps=8, image_size=128)
    assert targeted.success and targeted.label == targeted.target == "golden retriever"
    assert np.abs(targeted.perturbation).max() <= 8 / 255 + 1e-6
    fgsm = adversarial_example("efficientnet_lite0", CAT, eps=0.3 / 255, method="fgsm", quantize=False, image_size=64)
    assert np.abs(fgsm.perturbation).max() == pytest.approx(0.3 / 255, abs=1e-6)
    assert fgsm.image.min() >= 0 and fgsm.image.max() <= 1


def test_attack_parameters_are_checked():
    for kwargs, message in [
        (dict(method="cw"), r"The 'method' parameter of adversarial_example must be a str among \{'pgd', 'fgsm'\}"),
        (
            dict(eps=2),
            r"The 'eps' parameter of adversarial_example must be a float in the range \[0.0, 1.0\]. Got 2 instead. "
            r"Pixels are in \[0, 1\] units",
        ),
        (dict(eps=0.5 / 255), "below one grey level"),
        (dict(steps=0), r"The 'steps' parameter of adversarial_example must be an int in the range \[1, inf\)"),
        (
            dict(step_size=-1.0),
            r"The 'step_size' parameter of adversarial_example must be a float in the range \(0.0, inf\]",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            adversarial_example("efficientnet_lite0", CAT, **kwargs)


def test_adversarial_accuracy_is_at_most_the_clean_accuracy_and_falls(patch_clf):
    X = np.concatenate([patches(1, "left"), patches(1, "right"), patches(2, None)])
    y = np.array(["square"] * 2 + ["plain"] * 2)
    clean = patch_clf.score(X, y)
    assert adversarial_accuracy(patch_clf, X, y, eps=0) == clean == 1.0
    small = adversarial_accuracy(patch_clf, X, y, eps=1 / 255, steps=3)
    large = adversarial_accuracy(patch_clf, X, y, eps=8 / 255, steps=3)
    # Both attacks can only lose accuracy; a few PGD steps at a larger eps
    # need not beat those at a smaller one (different trajectories), so
    # between them only the drop below the clean score is asserted.
    assert 0 <= small <= clean and 0 <= large < clean, (small, large)
    with pytest.raises(ValueError, match="'round' is not a class"):
        adversarial_accuracy(patch_clf, X, ["round"] * 4)
