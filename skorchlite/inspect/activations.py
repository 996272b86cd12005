"""Feature maps: what one layer of the network responds to in an image."""

from __future__ import annotations

import math
import os
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..figures import new_figure, save_figure
from ..names import visible
from ..validation import Interval, check_params
from .explainable import one_image, output_paths, resolve_model
from .sizes import FIGSIZES

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["feature_maps"]


def feature_maps(
    image: Any,
    backbone: Any = "efficientnet_lite0",
    layer: str | None = None,
    *,
    k: int = 15,
    path: str | os.PathLike | None = None,
    image_size: int | None = None,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """The activations of one layer for one image.

    The image is decoded, resized and centre-cropped as the model's
    preprocessing says, and run up to ``layer``.

    Parameters
    ----------
    image : path, PIL image or array
        One image, anything :func:`skorchlite.images.check_images` accepts
        as an element of X.
    backbone : str, FineTuneClassifier or Pipeline, default="efficientnet_lite0"
        A backbone name, or a fitted model (its own, possibly fine-tuned,
        backbone), as for :func:`grad_cam`.
    layer : str or None, default=None
        A node name of the backbone (``Backbone.layer_names()``); ``None``
        is the last spatial feature map (``Backbone.feature_node()``).
    k : int, default=15
        Channels drawn in the PNG: those with the highest mean activation.
    path : str, path-like or None, default=None
        Write a PNG grid: the crop the network saw, then the top ``k``
        channels, each titled with its index and mean activation.
    image_size, device
        As for :func:`grad_cam`: the input side for a backbone name, and
        ``"auto"`` (CUDA when available) or a device.

    Returns
    -------
    ndarray of float32
        The layer's output for the image without the batch axis: shape
        (C, h, w) for a convolutional layer.

    Raises
    ------
    ValueError
        For an unknown layer: the message suggests close names and lists
        every available one.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.inspect import feature_maps
    >>> image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> feature_maps(image, "efficientnet_lite0", layer="_blocks.2", image_size=64).shape
    (24, 16, 16)
    """
    check_params(
        {"k": k, "image_size": image_size},
        {
            "k": [Interval(Integral, 1, None, closed="left")],
            "image_size": [Interval(Integral, 1, None, closed="left"), None],
        },
        "feature_maps",
    )
    explainable = resolve_model(backbone, image_size, device)
    if layer is None:
        layer = explainable.backbone.feature_node()
        if layer is None:
            raise ValueError(f"{explainable.name} has no spatial feature map before its pooling; name a layer.")
    layer = explainable.backbone.check_layer(layer)
    samples = one_image(image)
    destination = output_paths(path, samples, "features")
    device = next(explainable.net.parameters()).device
    _, pixels = explainable.load(samples, device)
    with torch.inference_mode():
        activations, _ = explainable.net.tap(pixels, layer)
    assert activations is not None  # for mypy: a layer was tapped
    maps = activations[0].float().cpu().numpy()
    if destination is not None:
        if maps.ndim != 3:
            raise ValueError(f"Layer {layer!r} gives an output of shape {maps.shape}; the PNG grid needs (C, h, w).")
        crop = Image.fromarray(np.rint(pixels[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8))
        fig = new_figure(FIGSIZES["feature_maps"])
        _draw_grid(
            fig,
            crop,
            maps,
            k,
            f"{visible(explainable.name)}, layer {layer!r}: top {min(k, len(maps))} of {len(maps)} channels by mean activation",
        )
        save_figure(fig, destination[0])
    return maps


def _draw_grid(fig: Figure, crop: Image.Image, maps: np.ndarray, k: int, title: str) -> None:
    means = maps.mean((1, 2))
    # Stable: equally active channels keep their order.
    top = np.argsort(-means, kind="stable")[:k]
    ncols = math.ceil(math.sqrt(len(top) + 1))
    nrows = math.ceil((len(top) + 1) / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(np.asarray(crop))
    axes[0].set_title("input crop", fontsize="small")
    # The grid may have more cells than channels; the spare ones stay blank.
    for ax, channel in zip(axes[1:], top, strict=False):
        ax.imshow(maps[channel], cmap="viridis")
        ax.set_title(f"#{channel} (mean {means[channel]:.2f})", fontsize="small")
    fig.suptitle(title)
