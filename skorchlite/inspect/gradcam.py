"""Grad-CAM: where in the image the evidence for a class lies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..figures import HEATMAP_ALPHA, HEATMAP_CMAP, new_figure, save_figure
from ..images import check_images
from ..names import visible
from ..validation import Interval, check_params
from .explainable import Explainable, output_paths, resolve_model
from .sizes import FIGSIZES

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["GradCAMResult", "grad_cam"]


@dataclass(frozen=True)
class GradCAMResult:
    """Grad-CAM heatmaps of a batch of images, with the classes they explain.

    Attributes
    ----------
    heatmaps : list of ndarray
        One float32 array of shape (H, W) per image, on the image's own
        pixel grid, values in [0, 1] (the maximum is 1 unless no evidence
        was found at all). Pixels outside the centre crop the network sees
        are 0.
    target : ndarray
        The class each heatmap explains.
    target_probability : ndarray
        Its predicted probability.
    predicted : ndarray
        The predicted class of each image.
    predicted_probability : ndarray
        Its probability.
    layer : str
        The feature map the heatmaps come from.
    paths : list of pathlib.Path
        The overlay PNGs written (empty without ``path``).
    """

    heatmaps: list[np.ndarray]
    target: np.ndarray
    target_probability: np.ndarray
    predicted: np.ndarray
    predicted_probability: np.ndarray
    layer: str
    paths: list[Path]


def grad_cam(
    model: Any,
    X: Any,
    target: Any = None,
    *,
    layer: str | None = None,
    path: str | os.PathLike | None = None,
    image_size: int | None = None,
    batch_size: int = 16,
    device: str | torch.device = "auto",
) -> GradCAMResult:
    """Grad-CAM heatmaps (Selvaraju et al., 2017), aligned with the input images.

    For a class ``c`` with logit ``y_c`` and the feature map ``A`` of
    ``layer`` (channels ``A_k``), the heatmap is ``ReLU(sum_k alpha_k A_k)``
    with ``alpha_k`` the spatial mean of ``d y_c / d A_k``, scaled to
    [0, 1]. It is then mapped (bilinearly) from the centre crop the network
    sees back onto each image's own pixel grid: the crop covers a known
    central region of the resized image (:meth:`Preprocessing.crop_box
    <skorchlite.backbones.Preprocessing.crop_box>`), and pixels outside it
    get 0 because the network never saw them.

    Parameters
    ----------
    model : str, FineTuneClassifier or Pipeline
        A backbone name (explains its ImageNet classes), a fitted
        :class:`~skorchlite.FineTuneClassifier`, or a fitted pipeline of
        :class:`~skorchlite.PretrainedFeatureExtractor`, optional
        ``StandardScaler`` steps and a linear classifier (``coef_``).
    X : sequence of images
        Paths, PIL images or arrays, as for the estimators.
    target : class label, sequence of labels, or None, default=None
        The class to explain: ``None`` explains each image's predicted
        class; one label (for ImageNet also an index 0-999) is used for
        every image; a sequence gives one per image.
    layer : str or None, default=None
        A node of the backbone with a spatial output (N, C, H, W); default:
        the last one before global pooling (``Backbone.feature_node()``),
        or the extractor's ``layer`` in a pipeline.
    path : str, path-like or None, default=None
        Write overlay PNGs (the image, and the image with its heatmap): a
        ``.png`` file for a single image, else a folder (created) that gets
        ``{index}_{name}_gradcam.png`` per image.
    image_size : int or None, default=None
        Input side for a backbone name (default: the weights' own); a
        fitted model uses the size it was trained at.
    batch_size : int, default=16
        Images per forward and backward pass.
    device : str or torch.device, default="auto"
        CUDA when available, else the CPU.

    Returns
    -------
    GradCAMResult

    Raises
    ------
    ValueError
        For an unknown layer (the message lists the available ones), a
        layer without a spatial output or that does not feed the
        prediction, or an unknown class.
    TypeError
        When ``model`` is none of the accepted kinds.

    See Also
    --------
    feature_maps : The activations of one layer.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.inspect import grad_cam
    >>> image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    >>> result = grad_cam("efficientnet_lite0", [image], image_size=96)
    >>> result.heatmaps[0].shape, float(result.heatmaps[0].max())
    ((120, 160), 1.0)
    """
    check_params(
        {"batch_size": batch_size, "image_size": image_size},
        {
            "batch_size": [Interval(Integral, 1, None, closed="left")],
            "image_size": [Interval(Integral, 1, None, closed="left"), None],
        },
        "grad_cam",
    )
    batch_size = int(batch_size)
    explainable = resolve_model(model, image_size, device)
    samples = check_images(X)
    layer = _cam_layer(explainable, layer)
    targets = _targets(explainable, target, len(samples))
    classes = explainable.classes
    device = next(explainable.net.parameters()).device
    destinations = output_paths(path, samples, "gradcam")
    explainable.net.trace(layer)
    heatmaps: list[np.ndarray] = []
    proba = np.empty((len(samples), len(classes)), dtype=np.float32)
    for rows, images, pixels in explainable.batches(samples, batch_size, device):
        maps, probs, chosen = _cam_batch(explainable, pixels, layer, [targets[i] for i in rows])
        proba[rows] = probs
        for i, image, cam, c in zip(rows, images, maps, chosen, strict=True):
            heatmap = _to_image_grid(cam, explainable.preprocessing.crop_box(*image.size), image.size)
            heatmaps.append(heatmap)
            targets[i] = c
            if destinations is not None:
                title = (
                    f"Grad-CAM of {visible(classes[c])} (p = {proba[i, c]:.2f}); predicted "
                    f"{visible(classes[proba[i].argmax()])} (p = {proba[i].max():.2f})"
                )
                fig = new_figure(FIGSIZES["grad_cam"])
                draw_overlay(fig, image, heatmap, title)
                save_figure(fig, destinations[i])
    chosen_all = np.asarray(targets)
    predicted = proba.argmax(1)
    return GradCAMResult(
        heatmaps=heatmaps,
        target=classes[chosen_all],
        target_probability=proba[np.arange(len(samples)), chosen_all],
        predicted=classes[predicted],
        predicted_probability=proba.max(1),
        layer=layer,
        paths=destinations or [],
    )


def _cam_layer(explainable: Explainable, layer: str | None) -> str:
    if layer is None:
        layer = explainable.cam_layer
        if layer is None:
            raise ValueError(
                f"{explainable.name} has no spatial feature map before its pooling (a vision transformer?); "
                f"name one with layer=..."
            )
    return explainable.backbone.check_layer(layer)


def _targets(explainable: Explainable, target: Any, n: int) -> list[int | None]:
    if target is None:
        return [None] * n
    if isinstance(target, (list, tuple, np.ndarray)):
        if len(target) != n:
            raise ValueError(f"target has {len(target)} labels but X has {n} images.")
        return [explainable.class_index(t) for t in target]
    return [explainable.class_index(target)] * n


def _cam_batch(
    explainable: Explainable, pixels: torch.Tensor, layer: str, targets: list[int | None]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Heatmaps on the feature grid (n, h, w), probabilities, explained classes."""
    # Frozen weights leave no graph to differentiate: the input starts one.
    pixels = pixels.requires_grad_(True)
    activations, logits = explainable.net.tap(pixels, layer)
    if activations is None or activations.ndim != 4:
        shape = None if activations is None else tuple(activations.shape)
        raise ValueError(
            f"Layer {layer!r} gives an output of shape {shape}; Grad-CAM needs a spatial map (N, C, H, W)."
        )
    chosen = [int(logits[j].argmax()) if t is None else t for j, t in enumerate(targets)]
    # Images are independent (eval mode), so one backward of the sum gives each its own gradient.
    score = logits[torch.arange(len(chosen)), torch.as_tensor(chosen, device=logits.device)].sum()
    (grads,) = torch.autograd.grad(score, activations, allow_unused=True)
    if grads is None:
        raise ValueError(f"Layer {layer!r} does not feed the prediction of {explainable.name}; choose an earlier one.")
    weights = grads.mean((2, 3), keepdim=True)
    cams = torch.relu((weights * activations).sum(1)).detach().float().cpu().numpy()
    probs = logits.detach().float().softmax(1).cpu().numpy()
    return cams, probs, chosen


def _interpolation_matrix(n_out: int, n_in: int, start: float, end: float) -> np.ndarray:
    """Bilinear weights (n_out, n_in) from ``n_in`` cells spread evenly over
    [start, end) to the pixel centres 0.5, 1.5, ...; zero rows outside."""
    centres = np.arange(n_out) + 0.5
    position = np.clip((centres - start) / (end - start) * n_in - 0.5, 0, n_in - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    frac = position - low
    matrix = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)
    matrix[(centres < start) | (centres >= end)] = 0
    return matrix


def _to_image_grid(cam: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """The feature-grid heatmap over the crop ``box``, resampled onto an
    image of ``size`` (width, height), scaled to a maximum of 1."""
    left, top, right, bottom = box
    width, height = size
    # Separable bilinear resampling: two small matrix products, any image size.
    heatmap = (
        _interpolation_matrix(height, cam.shape[0], top, bottom)
        @ cam
        @ _interpolation_matrix(width, cam.shape[1], left, right).T
    )
    peak = heatmap.max()
    return (heatmap / peak if peak > 0 else heatmap).astype(np.float32)


def draw_overlay(fig: Figure, image: Image.Image, heatmap: np.ndarray, title: str) -> None:
    """The image, and the image under its heatmap (colour bar 0-1)."""
    plain, overlay = fig.subplots(1, 2)
    for ax in (plain, overlay):
        ax.imshow(np.asarray(image))
        ax.set_axis_off()
    shown = overlay.imshow(heatmap, cmap=HEATMAP_CMAP, alpha=HEATMAP_ALPHA, vmin=0, vmax=1)
    fig.colorbar(shown, ax=overlay, fraction=0.046, pad=0.02)
    plain.set_title("image")
    overlay.set_title("Grad-CAM")
    fig.suptitle(title)
