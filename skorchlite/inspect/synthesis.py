"""Class visualisation: the image a network finds most typical of a class."""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..figures import new_figure, save_figure
from ..names import visible
from ..validation import Interval, check_params
from .explainable import output_paths, resolve_model
from .sizes import FIGSIZES

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["ClassVisualization", "class_visualization", "total_variation"]


@dataclass(frozen=True)
class ClassVisualization:
    """The result of :func:`class_visualization`.

    Attributes
    ----------
    image : ndarray of shape (S, S, 3), float32
        The optimised image, values in [0, 1], at the network's input size.
    probabilities : ndarray of shape (steps,)
        The target class's probability at each step, for the (jittered)
        image the network saw at that step.
    probability : float
        The target class's probability for the final ``image``.
    target : object
        The class.
    """

    image: np.ndarray
    probabilities: np.ndarray
    probability: float
    target: Any

    @property
    def image_uint8(self) -> np.ndarray:
        """``image`` as uint8 RGB, ready for ``PIL.Image.fromarray``."""
        return np.rint(self.image * 255).astype(np.uint8)


def total_variation(image: Any) -> float:
    """Mean absolute difference between neighbouring pixels (anisotropic TV).

    Parameters
    ----------
    image : array-like of shape (H, W) or (H, W, C)
        uint8 (read as 0-255 / 255) or float in [0, 1].

    Returns
    -------
    float
        Mean over vertical plus mean over horizontal neighbours: 0 for a
        flat image, about 2/3 for uniform noise.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.inspect import total_variation
    >>> total_variation(np.zeros((8, 8, 3)))
    0.0
    >>> total_variation(np.indices((4, 4))[1] % 2)  # vertical stripes
    1.0
    """
    pixels = np.asarray(image)
    pixels = pixels / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float64)
    return float(_tv(torch.from_numpy(np.atleast_3d(pixels)).permute(2, 0, 1)[None]))


def _tv(x: torch.Tensor) -> torch.Tensor:
    """Total variation of a batch (N, C, H, W), as :func:`total_variation`."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def class_visualization(
    backbone: Any = "efficientnet_lite0",
    class_index: Any = 0,
    steps: int = 100,
    tv_weight: float = 1000.0,
    lr: float = 0.1,
    random_state: int | None = None,
    *,
    image_size: int | None = None,
    jitter: int | None = None,
    path: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
) -> ClassVisualization:
    """Optimise an image from noise until the network sees ``class_index`` in it.

    Gradient ascent on the class's logit, its score before the softmax
    (Simonyan et al., 2014, who found the logit gives clearer images than
    the probability, which can rise by lowering the other classes), minus ``tv_weight`` times the image's total variation
    (:func:`total_variation`), which keeps the image smooth instead of
    adversarial high-frequency noise. Pixels are parametrised as
    ``sigmoid(z)``, so they stay in [0, 1], and Adam updates ``z``. Each
    step shifts the image by a random offset of up to ``jitter`` pixels,
    so the pattern must work wherever it lies. The model's own
    normalisation is applied inside the graph.

    Parameters
    ----------
    backbone : str, FineTuneClassifier or Pipeline, default="efficientnet_lite0"
        A backbone name (ImageNet classes) or a fitted model, as for
        :func:`grad_cam`.
    class_index : int or class label, default=0
        The class: for ImageNet an index 0-999 or a category name
        (``"tabby"``), for a fitted model one of its ``classes_``.
    steps : int, default=100
        Optimisation steps.
    tv_weight : float, default=1000.0
        Weight of the total-variation penalty; 0 turns it off.
    lr : float, default=0.1
        Adam's learning rate on the sigmoid's input.
    random_state : int or None, default=None
        Seeds the starting noise and the jitter; the global torch random
        state is never used.
    image_size : int or None, default=None
        Side of the image for a backbone name (default: the weights' own);
        a fitted model uses its own.
    jitter : int or None, default=None
        Largest random shift per step, in pixels; ``None`` is 1/28 of the
        image side (8 pixels at 224).
    path : str, path-like or None, default=None
        Write a PNG of the image beside its probability curve.
    device : str or torch.device, default="auto"
        CUDA when available, else the CPU.

    Returns
    -------
    ClassVisualization
        The image (float in [0, 1]; ``image_uint8`` for bytes), the
        probability at every step, and the final probability.

    Examples
    --------
    >>> from skorchlite.inspect import class_visualization
    >>> result = class_visualization("efficientnet_lite0", "goldfish", steps=5, image_size=64, random_state=0)
    >>> result.image.shape, result.probabilities.shape, result.target
    ((64, 64, 3), (5,), 'goldfish')
    """
    check_params(
        {
            "steps": steps,
            "tv_weight": tv_weight,
            "lr": lr,
            "random_state": random_state,
            "image_size": image_size,
            "jitter": jitter,
        },
        {
            "steps": [Interval(Integral, 1, None, closed="left")],
            "tv_weight": [Interval(Real, 0, 1e12, closed="both")],
            "lr": [Interval(Real, 0, 1e12, closed="right")],
            # An int, not a RandomState: it seeds a torch generator.
            "random_state": [Interval(Integral, 0, None, closed="left"), None],
            "image_size": [Interval(Integral, 1, None, closed="left"), None],
            "jitter": [Interval(Integral, 0, None, closed="left"), None],
        },
        "class_visualization",
    )
    steps, tv_weight, lr = int(steps), float(tv_weight), float(lr)
    explainable = resolve_model(backbone, image_size, device)
    target = explainable.class_index(class_index)
    destination = output_paths(path, [None], "class")
    net = explainable.net
    device = next(net.parameters()).device
    size = explainable.preprocessing.crop_size
    jitter = max(1, size // 28) if jitter is None else int(jitter)
    # A private generator: seeded runs repeat exactly, global RNG untouched.
    generator = torch.Generator()
    if random_state is None:
        generator.seed()
    else:
        generator.manual_seed(int(random_state))
    z = (torch.randn(1, 3, size, size, generator=generator) * 0.5).to(device).requires_grad_(True)
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=generator).tolist()
    optimizer = torch.optim.Adam([z], lr=lr)
    trace = np.empty(steps, dtype=np.float32)
    for step, (dy, dx) in enumerate(shifts):
        x = torch.sigmoid(z)
        logits = net(torch.roll(x, (dy, dx), dims=(2, 3)))
        loss = -logits[0, target] + tv_weight * _tv(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        trace[step] = float(logits.detach().softmax(1)[0, target])
    with torch.inference_mode():
        x = torch.sigmoid(z)
        probability = float(net(x).softmax(1)[0, target])
    image = x[0].permute(1, 2, 0).float().cpu().numpy()
    label = explainable.classes[target]
    result = ClassVisualization(image=image, probabilities=trace, probability=probability, target=label)
    if destination is not None:
        fig = new_figure(FIGSIZES["class_visualization"])
        _draw(fig, result, f"{visible(explainable.name)}: {visible(label)}, tv_weight={tv_weight:g}")
        save_figure(fig, destination[0])
    return result


def _draw(fig: Figure, result: ClassVisualization, title: str) -> None:
    picture, curve = fig.subplots(1, 2, width_ratios=[1, 1.3])
    picture.imshow(result.image)
    picture.set_axis_off()
    picture.set_title(f"p = {result.probability:.3f}, total variation {total_variation(result.image):.3f}")
    curve.plot(np.arange(1, len(result.probabilities) + 1), result.probabilities, color="tab:blue")
    curve.set(xlabel="step", ylabel=f"probability of {visible(result.target)}", ylim=(-0.02, 1.02))
    curve.grid(alpha=0.3)
    fig.suptitle(title)
