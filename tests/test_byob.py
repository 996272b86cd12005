"""Issue 15, bring your own backbone: the registry of sources, weights=None,
any nn.Module or (architecture, checkpoint) pair as backbone, embeddings of
a fine-tuned network, the CLI's listing. Each test names its issue point."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest
import torch
import torchvision
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

import skorchlite.backbones as backbones
from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import (
    BackboneSource,
    BackboneUnavailableError,
    LiteSource,
    Preprocessing,
    TorchvisionSource,
    get_backbone,
    list_backbones,
    registry,
    resolve_backbone,
    resolve_weights,
    source_of,
    state_dict_sha256,
)

RNG = np.random.default_rng(0)
DARK = RNG.integers(0, 90, size=(6, 32, 32, 3), dtype=np.uint8)
BRIGHT = RNG.integers(160, 256, size=(6, 32, 32, 3), dtype=np.uint8)
X, Y = np.concatenate([DARK, BRIGHT]), np.array(["dark"] * 6 + ["bright"] * 6)
TINY = {"size": 32, "resize_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


class TinyNet(nn.Module):
    """A user's own small CNN (random weights: tests the mechanics only)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x):
        return self.block(self.stem(x))


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return TinyNet().eval()


# ------------------------------------------------------------- 1. sources
def test_point1_every_name_comes_from_one_source():
    for name in list_backbones():
        assert sum(source.offers(name) for source in backbones.SOURCES) == 1, name
    assert isinstance(source_of("efficientnet_lite0"), LiteSource)
    assert isinstance(source_of("resnet18"), TorchvisionSource)


class _ToySource(BackboneSource):
    """A new family added in one place: the registry's functions all see it."""

    title = "toy"

    def __init__(self, path):
        self.path = path

    def names(self):
        return ["toy_net"]

    def weights_file(self, name, weights):
        return "toy_net.RANDOM_FOR_TESTS", self.path

    def architecture(self, name):
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def preprocessing(self, name, weights="DEFAULT"):
        return Preprocessing(crop_size=32, resize_size=36, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)


def test_point1_a_new_source_is_one_subclass(tmp_path, monkeypatch):
    path = tmp_path / "toy_random.pth"
    torch.manual_seed(0)
    torch.save(_ToySource(path).architecture("toy_net").state_dict(), path)
    # Where the registry's functions look the list up.
    monkeypatch.setattr(registry, "SOURCES", [*registry.SOURCES, _ToySource(path)])
    assert "toy_net" in list_backbones() and "toy_net" in backbones.offline_backbones()
    bb = get_backbone("toy_net")
    assert bb.embedding_dim == 4 and bb.weights.id == "toy_net.RANDOM_FOR_TESTS"
    assert bb.layer_groups == [("0",)]
    out = PretrainedFeatureExtractor(backbone="toy_net", cache=False).fit_transform(X[:2])
    assert out.shape == (2, 4)


def test_point1_resnet_stem_is_one_group_by_override():
    """The generic guess split conv1 and bn1 into two groups; the override joins them."""
    groups = get_backbone("resnet18", None).layer_groups
    assert groups == [("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)]


# ------------------------------------------------------------ 2. random init
def test_point2_random_init_is_labelled_hashed_and_seeded():
    state = torch.random.get_rng_state()
    bb = get_backbone("resnet18", None)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream is untouched
    assert bb.weights.id == "random-init:seed=0" and bb.weights.path is None and bb.categories is None
    torch.manual_seed(0)
    assert bb.weights.sha256 == state_dict_sha256(torchvision.models.resnet18())  # the initial state, head included
    again = get_backbone("resnet18", None, seed=0)
    other = get_backbone("resnet18", None, seed=1)
    assert torch.equal(again.model.conv1.weight, bb.model.conv1.weight)
    assert other.weights.sha256 != bb.weights.sha256
    assert not torch.equal(other.model.conv1.weight, bb.model.conv1.weight)


def test_point2_random_init_in_the_estimators():
    ext = PretrainedFeatureExtractor(weights=None, image_size=64, cache=False).fit(X)
    assert ext.fingerprint_["weights"] == "random-init:seed=0"
    assert ext.fingerprint_["weights_sha256"] != resolve_weights("efficientnet_lite0").sha256
    keys = [
        FineTuneClassifier(
            weights=None,
            random_state=seed,
            unfreeze=0,
            augment=None,
            epochs=1,
            image_size=64,
            validation_fraction=0,
            cache=False,
        )
        .fit(X, Y)
        ._network_key_
        for seed in (3, 3, 4)
    ]
    assert keys[0] == keys[1] != keys[2]


# --------------------------------------------------------- 3. module backbones
def test_point3_module_backbone_embeds_clones_and_pickles(tmp_path):
    net = tiny_net()
    ext = PretrainedFeatureExtractor(backbone=net, preprocessing=TINY, cache=tmp_path / "c")
    out = ext.fit_transform(X)
    assert out.shape == (12, 8) and ext.fingerprint_["backbone"].endswith("TinyNet")
    with torch.no_grad():
        expected = net(torch.from_numpy(X).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)).mean((2, 3))
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-4)
    np.testing.assert_allclose(clone(ext).fit_transform(X), out, atol=1e-6)
    restored = pickle.loads(pickle.dumps(ext))
    np.testing.assert_allclose(restored.transform(X), out, atol=1e-6)
    assert clone(ext).get_params()["backbone"] is not net  # a copy travels with the estimator


def test_point3_changed_module_weights_never_meet_stale_embeddings(tmp_path):
    net = tiny_net()
    ext = PretrainedFeatureExtractor(backbone=net, preprocessing=TINY, cache=tmp_path / "c")
    before = ext.fit_transform(X)
    with torch.no_grad():
        net.block[0].weight.mul_(2)
    with pytest.raises(ValueError, match="changed since fit"):
        ext.transform(X)
    after = ext.fit_transform(X)
    assert not np.allclose(after, before)


def test_point3_grid_search_over_a_name_and_a_module():
    pipe = make_pipeline(PretrainedFeatureExtractor(image_size=64, cache=False), LogisticRegression(max_iter=200))
    grid = GridSearchCV(pipe, {"pretrainedfeatureextractor__backbone": ["efficientnet_lite0", tiny_net()]}, cv=2)
    grid.fit(X, Y)
    assert len(grid.cv_results_["params"]) == 2
    assert grid.predict(X).shape == (12,)


def test_point3_finetune_a_module_with_default_and_given_groups():
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = dict(
        preprocessing=TINY,
        unfreeze=1,
        epochs=1,
        freeze_epochs=0,
        validation_fraction=0,
        batch_size=6,
        random_state=0,
        cache=False,
    )
    clf = FineTuneClassifier(backbone=net, **params).fit(X, Y)
    assert clf.layer_groups_ == [("body.stem",), ("body.block",)]
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the user's module is untouched
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    grouped = FineTuneClassifier(backbone=net, layer_groups=[["stem", "block"]], **params).fit(X, Y)
    assert grouped.layer_groups_ == [("body.stem", "body.block")]
    with pytest.raises(ValueError, match="unknown names \\['nope'\\]"):
        FineTuneClassifier(backbone=net, layer_groups=[["nope"]], **params).fit(X, Y)


def test_point3_models_pickled_before_the_package_split_still_load():
    """Pickles of a module backbone name its pooled wrapper as it was named
    when skorchlite.backbones was one module."""
    from skorchlite.backbones.resolve import Pooled

    assert pickle.loads(b"cskorchlite.backbones\n_Pooled\n.") is Pooled


def test_point3_bad_backbones_are_named_briefly():
    huge = nn.Sequential(*[nn.Linear(2, 2) for _ in range(50)])  # its repr runs to thousands of characters
    with pytest.raises(ValueError) as info:
        PretrainedFeatureExtractor(backbone=huge, preprocessing=TINY, cache=False).fit(X)
    assert len(str(info.value)) < 400 and "Sequential" in str(info.value)
    with pytest.raises(
        TypeError, match="The 'backbone' parameter of PretrainedFeatureExtractor must be an instance"
    ) as info:
        PretrainedFeatureExtractor(backbone=42, cache=False).fit(X)
    assert len(str(info.value)) < 400 and "Got 42 instead" in str(info.value)


@pytest.mark.parametrize("layout", ["plain", "model", "state_dict+module."])
def test_point3_checkpoint_pairs_in_common_layouts(tmp_path, layout):
    pretrained = get_backbone("efficientnet_lite0")
    state = torch.load(resolve_weights("efficientnet_lite0").path, weights_only=True)
    if layout == "model":
        state = {"model": state, "epoch": 3}
    elif layout.startswith("state_dict"):
        state = {"state_dict": {"module." + k: v for k, v in state.items()}}
    path = tmp_path / f"{layout}.pth"
    torch.save(state, path)
    bb = resolve_backbone(("efficientnet_lite0", path))
    assert torch.equal(bb.model._conv_stem.weight, pretrained.model._conv_stem.weight)
    ext = PretrainedFeatureExtractor(backbone=("efficientnet_lite0", str(path)), image_size=64, cache=False)
    np.testing.assert_allclose(
        ext.fit_transform(X[:2]),
        PretrainedFeatureExtractor(weights=str(path), image_size=64, cache=False).fit_transform(X[:2]),
    )
    assert pickle.loads(pickle.dumps(ext)).transform(X[:2]).shape == (2, 1280)


def test_point3_headless_checkpoint_loads_and_wrong_keys_are_listed(tmp_path):
    state = torch.load(resolve_weights("efficientnet_lite0").path, weights_only=True)
    headless = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    torch.save(headless, tmp_path / "headless.pth")
    assert resolve_backbone(("efficientnet_lite0", tmp_path / "headless.pth")).embedding_dim == 1280
    headless["stray.weight"] = torch.zeros(1)
    del headless["_bn0.weight"]
    torch.save(headless, tmp_path / "stray.pth")
    with pytest.raises(ValueError, match=r"missing keys 1 \(_bn0.weight\); unexpected keys 1 \(stray.weight\)"):
        resolve_backbone(("efficientnet_lite0", tmp_path / "stray.pth"))


# ------------------------------------------------- 4. fine-tuned embeddings
def test_point4_finetune_transform_gives_the_fine_tuned_features():
    clf = FineTuneClassifier(
        head="linear",  # the head that reads transform's features
        unfreeze=1,
        epochs=1,
        freeze_epochs=0,
        image_size=64,
        batch_size=6,
        validation_fraction=0,
        random_state=0,
        cache=False,
    ).fit(X, Y)
    features = clf.transform(X)
    assert features.shape == (12, 1280) and features.dtype == np.float32
    logits = clf.model_[1](torch.from_numpy(features))
    np.testing.assert_allclose(logits.softmax(1).detach().numpy(), clf.predict_proba(X), atol=1e-4)
    pretrained = PretrainedFeatureExtractor(image_size=64, cache=False).fit_transform(X)
    assert not np.allclose(features, pretrained, atol=1e-4)  # the unfrozen group changed them
    pipe = make_pipeline(clone(clf), LogisticRegression(max_iter=200)).fit(X, Y)
    assert pipe.predict(X).shape == (12,)


def test_point4_transform_at_a_layer_gives_the_fine_tuned_backbones_layers(tmp_path):
    clf = FineTuneClassifier(
        epochs=1, freeze_epochs=0, image_size=64, batch_size=6, validation_fraction=0, random_state=0, cache=False
    )
    clf.set_params(layer="blocks").fit(X, Y)
    features = clf.transform(X)
    frozen = PretrainedFeatureExtractor(layer="blocks", image_size=64, cache=False).fit()
    assert features.shape == (12, sum(frozen.layer_widths_)) and features.dtype == np.float32
    assert len(clf.get_feature_names_out()) == features.shape[1]
    # The vectors of the extractor that reads the fine-tuned backbone's weights.
    torch.save(clf.model_[0].state_dict(), tmp_path / "tuned.pth")
    tuned = PretrainedFeatureExtractor(weights=tmp_path / "tuned.pth", layer="blocks", image_size=64, cache=False)
    np.testing.assert_allclose(features, tuned.fit_transform(X), rtol=1e-3, atol=1e-4)
    assert not np.allclose(features, frozen.transform(X), atol=1e-3)
    # A transform-time setting: the same fit gives the head's input again, and predicts the same.
    proba = clf.predict_proba(X)
    assert clf.set_params(layer=None).transform(X).shape == (12, 1280)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    voting = LayerVotingClassifier(frozen.layer_widths_)
    pipe = make_pipeline(clone(clf).set_params(layer="blocks"), voting).fit(X, Y)
    assert pipe.score(X, Y) > 0.5


def test_point4_an_unknown_layer_is_refused_before_training():
    with pytest.raises(ValueError, match="_blocks.99"):
        FineTuneClassifier(layer="_blocks.99", image_size=64, cache=False).fit(X, Y)


# ------------------------------------------------------------------ 5. CLI
def test_point5_cli_lists_every_source_with_its_offline_names(capsys):
    from skorchlite.cli import main

    assert main(["backbones", "--offline"]) == 0
    out = capsys.readouterr().out
    for source in backbones.SOURCES:
        assert f"{source.title}: {len(backbones.offline_backbones(source))} of {len(source.names())} offline now" in out
    assert "  efficientnet_lite0 " in out and "resnet50" not in out and "nn.Module" in out


def test_point2_cli_labels_a_random_init_run_loudly(tmp_path, capsys):
    from PIL import Image

    from skorchlite.cli import main

    folder = tmp_path / "images"  # not tmp_path, which holds the embedding cache (tests/conftest.py)
    for label, images in (("dark", DARK), ("bright", BRIGHT)):
        (folder / label).mkdir(parents=True)
        for i, pixels in enumerate(images):
            Image.fromarray(pixels).save(folder / label / f"{i}.png")
    args = ["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0", "--weights", "random-init"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "RANDOM INITIALISATION" in out and "efficientnet_lite0 [random-init] + voting" in out


def test_point3_save_weights_keeps_a_pair_and_refuses_a_module_briefly(tmp_path):
    state = torch.load(resolve_weights("efficientnet_lite0").path, weights_only=True)
    torch.save(state, tmp_path / "ckpt.pth")
    params = dict(unfreeze=0, augment=None, epochs=1, image_size=64, validation_fraction=0, random_state=0, cache=False)
    clf = FineTuneClassifier(
        backbone=("efficientnet_lite0", str(tmp_path / "ckpt.pth")),
        preprocessing=Preprocessing(
            crop_size=64, resize_size=73, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3
        ),
        **params,
    ).fit(X, Y)
    loaded = FineTuneClassifier.load_weights(clf.save_weights(tmp_path / "clf.pt"))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    module_clf = FineTuneClassifier(backbone=tiny_net(), preprocessing=TINY, **params).fit(X, Y)
    with pytest.raises(ValueError, match="module \\(TinyNet\\).*joblib.dump") as info:
        module_clf.save_weights(tmp_path / "module.pt")
    assert len(str(info.value)) < 300


# ----------------------------------------------------------------- 6. timm
@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="optional extra: pip install 'skorchlite[timm]'")
def test_point6_timm_weights_only_from_the_local_hf_cache(tmp_path, monkeypatch):
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    name = "mobilenetv3_small_050.lamb_in1k"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(BackboneUnavailableError, match=f"huggingface-cli download timm/{name}"):
        get_backbone(f"timm/{name}")
    # RANDOM weights written by this test into the cache's layout: they test
    # the loading mechanics and are not pretrained weights.
    torch.manual_seed(0)
    random_weights = timm.create_model(name, pretrained=False).eval()
    repo = tmp_path / "hf" / f"models--timm--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(random_weights.state_dict(), repo / "snapshots" / ("0" * 40) / "model.safetensors")

    bb = get_backbone(f"timm/{name}")
    assert f"timm/{name}" in backbones.offline_backbones()
    assert bb.weights.id == f"timm/{name}@hf:timm/{name}/model.safetensors"
    cfg = timm.models.get_pretrained_cfg(name)
    assert (bb.preprocessing.crop_size, bb.preprocessing.mean, bb.preprocessing.interpolation) == (
        cfg.input_size[-1],
        tuple(cfg.mean),
        cfg.interpolation,
    )
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = random_weights.forward_head(random_weights.forward_features(x), pre_logits=True)
    torch.testing.assert_close(bb.model(x), expected)
    out = PretrainedFeatureExtractor(backbone=f"timm/{name}", image_size=64, cache=False).fit_transform(X[:2])
    assert out.shape == (2, bb.embedding_dim)
    assert get_backbone(f"timm/{name}", None).weights.id == "random-init:seed=0"


def test_a_failing_forward_is_reported_in_one_line_with_its_cause():
    """The cause announced on a message's first line and given on the next is kept."""

    class Announces(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("the input does not fit:\n(1x3 and 5x2)\n  more detail")

    with pytest.raises(ValueError, match=r"RuntimeError: the input does not fit: \(1x3 and 5x2\)\. Pass") as info:
        PretrainedFeatureExtractor(backbone=Announces(), cache=False).fit([np.zeros((8, 8, 3), np.uint8)])
    assert "\n" not in str(info.value)
