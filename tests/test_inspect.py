"""skorchlite.inspect: the model resolver, feature maps, Grad-CAM (aligned with
the input image), class visualisation with a total-variation term, and
adversarial examples computed in the model's own preprocessing space."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from conftest import PHOTOS
from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import get_backbone
from skorchlite.figures import DPI
from skorchlite.inspect import (
    adversarial_accuracy,
    adversarial_example,
    class_visualization,
    feature_maps,
    grad_cam,
    total_variation,
)
from skorchlite.inspect._model import resolve_model
from skorchlite.inspect.sizes import FIGSIZES

CAT = PHOTOS["chelsea"][0]
RNG = np.random.default_rng(0)


def patches(n: int, side: str | None) -> np.ndarray:
    """Dark noise, with a bright 20-pixel square in the given half (None: no square)."""
    X = RNG.integers(0, 90, (n, 64, 64, 3), dtype=np.uint8)
    if side is not None:
        for x in X:
            row, col = RNG.integers(0, 44), RNG.integers(0, 12) + (0 if side == "left" else 32)
            x[row : row + 20, col : col + 20] = RNG.integers(200, 256, (20, 20, 3))
    return X


@pytest.fixture(scope="module")
def patch_clf():
    """Head-only FineTuneClassifier at 224 px: is there a bright square?"""
    X = np.concatenate([patches(6, "left"), patches(6, "right"), patches(12, None)])
    y = np.array(["square"] * 12 + ["plain"] * 12)
    clf = FineTuneClassifier(
        unfreeze=0, augment=None, epochs=15, lr=1e-2, batch_size=8, validation_fraction=0, random_state=0, cache=False
    )
    return clf.fit(X, y)


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


def test_normalising_inside_the_graph_reproduces_the_model():
    backbone = get_backbone("efficientnet_lite0")
    image = Image.open(CAT).convert("RGB")
    expected = backbone.classifier(backbone.model(backbone.preprocessing.transform()(image)[None]))
    explainable = resolve_model("efficientnet_lite0")
    _, pixels = explainable.load([CAT], torch.device("cpu"))
    assert 0 <= pixels.min() and pixels.max() <= 1
    with torch.inference_mode():
        np.testing.assert_allclose(explainable.net(pixels), expected, atol=1e-4)


# ------------------------------------------------------------- the resolver
def test_finetuned_model_resolves_to_its_own_probabilities(patch_clf):
    X = patches(4, "left")
    explainable = resolve_model(patch_clf)
    _, pixels = explainable.load(list(X), torch.device("cpu"))
    with torch.inference_mode():
        proba = explainable.net(pixels).softmax(1).numpy()
    np.testing.assert_allclose(proba, patch_clf.predict_proba(X), atol=1e-4)
    assert list(explainable.classes) == list(patch_clf.classes_)


@pytest.mark.parametrize(
    "extractor, head",
    [
        (dict(), lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
        (dict(layer="_blocks.10", pooling="avg+max"), lambda: LogisticRegression(max_iter=2000)),
        (dict(pooling="max"), lambda: LinearSVC()),
    ],
    ids=["nested-scaler-logreg", "layer-avg+max", "max-linearsvc"],
)
def test_extractor_pipelines_resolve_to_their_decisions(extractor, head):
    X = np.concatenate([patches(6, "left"), patches(6, None), RNG.integers(150, 256, (6, 64, 64, 3), dtype=np.uint8)])
    y = np.repeat(["square", "plain", "bright"], 6)
    if isinstance(head(), LinearSVC):
        X, y = X[:12], y[:12]  # binary: one row of coef_
    pipe = make_pipeline(PretrainedFeatureExtractor(image_size=64, cache=False, **extractor), head()).fit(X, y)
    explainable = resolve_model(pipe)
    _, pixels = explainable.load(list(X), torch.device("cpu"))
    with torch.inference_mode():
        logits = explainable.net(pixels).numpy()
    decision = pipe.decision_function(X)
    if decision.ndim == 1:
        decision = logits[:, 1] - logits[:, 0], decision
        np.testing.assert_allclose(*decision, atol=1e-3, rtol=1e-3)
    else:
        np.testing.assert_allclose(logits, decision, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(torch.tensor(logits).softmax(1), pipe.predict_proba(X), atol=1e-4)
    assert (explainable.classes[logits.argmax(1)] == pipe.predict(X)).all()


def test_other_models_are_refused_with_what_is_accepted():
    X, y = np.concatenate([patches(3, None), patches(3, "left")]), ["a"] * 3 + ["b"] * 3
    for model in (LogisticRegression(), 42, make_pipeline(StandardScaler(), LogisticRegression())):
        with pytest.raises(TypeError, match="backbone name.*FineTuneClassifier.*PretrainedFeatureExtractor"):
            grad_cam(model, X)
    # A linear-kernel SVC has coef_, but decides one-vs-one: not one linear score per class.
    features = PretrainedFeatureExtractor(image_size=64, cache=False)
    svc = make_pipeline(features, SVC(kernel="linear")).fit(np.concatenate([X, patches(3, "right")]), [*y, *"ccc"])
    with pytest.raises(TypeError, match="does not compute one linear score per class"):
        resolve_model(svc)
    with pytest.raises(ValueError, match="Unknown backbone 'resnet_5'"):
        resolve_model("resnet_5")
    with pytest.raises(NotFittedError):
        resolve_model(FineTuneClassifier())
    with pytest.raises(ValueError, match="image_size applies to a backbone name"):
        resolve_model(make_pipeline(features.fit(X), LogisticRegression().fit(features.transform(X), y)), image_size=64)


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
        ValueError, match=r"no layer '_head'; did you mean '_head_act'.*Available layers \(144\):.*_blocks\.15"
    ):
        feature_maps(CAT, "efficientnet_lite0", "_head")
    with pytest.raises(ValueError, match=r"no layer 'layer4'.*Available layers.*_conv_stem"):
        grad_cam(patch_clf, patches(1, None), layer="layer4")
    with pytest.raises(ValueError, match="spatial map"):
        grad_cam("efficientnet_lite0", [CAT], layer="flatten", image_size=64)


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
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        class_visualization("efficientnet_lite0", 1, steps=0)


def test_total_variation():
    assert total_variation(np.full((5, 5, 3), 200, np.uint8)) == 0
    stripes = np.zeros((4, 4), np.uint8)
    stripes[:, 1::2] = 255
    assert total_variation(stripes) == 1.0
    assert total_variation(RNG.random((64, 64, 3))) == pytest.approx(2 / 3, abs=0.03)


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
        (dict(method="cw"), "method must be one of"),
        (dict(eps=2), r"eps .*must be a number in \[0, 1\]"),
        (dict(eps=0.5 / 255), "below one grey level"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(step_size=-1.0), r"step_size must be a number in \(0, inf\]"),
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


# ------------------------------------------------------------- the package name
def test_the_standard_library_inspect_is_not_shadowed():
    import inspect

    import skorchlite.inspect

    assert sys.modules["inspect"] is inspect and Path(inspect.__file__).name == "inspect.py"
    assert skorchlite.inspect.grad_cam.__module__ == "skorchlite.inspect.gradcam"
    assert inspect.signature(skorchlite.inspect.grad_cam).parameters["target"].default is None
