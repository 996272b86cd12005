"""Adversarial examples: how little it takes to change a prediction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from ..figures import new_figure, save_figure
from ..images import check_images
from ..names import visible
from ..validation import Interval, StrOptions, check_params
from .explainable import one_image, output_paths, resolve_model
from .sizes import FIGSIZES

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["ATTACK_METHODS", "AdversarialExample", "AttackMethod", "adversarial_accuracy", "adversarial_example"]

#: ``method`` of an attack: projected gradient descent, or the fast gradient sign method.
AttackMethod = Literal["pgd", "fgsm"]
ATTACK_METHODS: tuple[str, ...] = get_args(AttackMethod)

#: The arguments both attacks take, and the constraints of each.
_ATTACK_CONSTRAINTS: dict[str, list[Any]] = {
    "eps": [Interval(Real, 0, 1, closed="both")],
    "steps": [Interval(Integral, 1, None, closed="left")],
    "step_size": [Interval(Real, 0, None, closed="right"), None],
    "method": [StrOptions(ATTACK_METHODS)],
    "quantize": ["boolean"],
    "image_size": [Interval(Integral, 1, None, closed="left"), None],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
}


@dataclass(frozen=True)
class AdversarialExample:
    """The result of :func:`adversarial_example`.

    All images are at the network's input resolution (the centre crop of
    the model's preprocessing), float32 of shape (S, S, 3) in [0, 1].

    Attributes
    ----------
    image : ndarray
        The adversarial image.
    original : ndarray
        The crop of the input image the network sees.
    perturbation : ndarray
        ``image - original``; every value is within ``[-eps, eps]``.
    original_label, label : object
        The predicted class before and after.
    original_probability, probability : float
        Their probabilities.
    target : object or None
        The class a targeted attack aimed for.
    eps : float
        The L-infinity budget.
    method : str
        ``"pgd"`` or ``"fgsm"``.
    """

    image: np.ndarray
    original: np.ndarray
    perturbation: np.ndarray
    original_label: Any
    original_probability: float
    label: Any
    probability: float
    target: Any
    eps: float
    method: str

    @property
    def success(self) -> bool:
        """The prediction became ``target``, or for an untargeted attack
        anything other than ``original_label``."""
        return bool(self.label == self.target) if self.target is not None else bool(self.label != self.original_label)

    @property
    def image_uint8(self) -> np.ndarray:
        """``image`` as uint8 RGB. With ``quantize=True`` (the default)
        this is exact: the attack was made on the 8-bit grid."""
        return np.rint(self.image * 255).astype(np.uint8)


def _check_attack(caller: str, **values: Any) -> tuple[float, int, float]:
    """``eps``, ``steps`` and the step size, checked as ``caller`` takes them."""
    check_params(
        values,
        _ATTACK_CONSTRAINTS,
        caller,
        notes={"eps": "Pixels are in [0, 1] units: 2/255 is two grey levels."},
    )
    eps, steps, step_size = float(values["eps"]), int(values["steps"]), values["step_size"]
    # What a constraint cannot say: below one grey level only float images can change.
    if values["quantize"] and 0 < eps < 1 / 255 - 1e-9:
        raise ValueError(
            f"eps={eps:g} is below one grey level (1/255): an 8-bit image cannot change by that little. "
            f"Use eps >= 1/255, or quantize=False for a float image."
        )
    if values["method"] == "fgsm":
        return eps, 1, eps
    if step_size is None:
        # Madry et al.'s rule of thumb: room to cross the ball and come back.
        return eps, steps, 2.5 * eps / steps
    return eps, steps, float(step_size)


def _attack(
    net: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    targeted: bool,
    eps: float,
    steps: int,
    step_size: float,
    quantize: bool,
) -> torch.Tensor:
    """Projected sign-gradient steps from ``x`` (FGSM is one step of size
    eps): away from ``labels``, or towards them when ``targeted``. The
    perturbation stays in the L-infinity ball of radius ``eps`` and the
    image in [0, 1]."""
    if eps == 0:
        return x
    direction = -1.0 if targeted else 1.0
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(net(x + delta), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + direction * step_size * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    if not quantize:
        return x + delta
    # Onto the 8-bit grid (the original crop is on it: decoded bytes / 255),
    # rounding towards the original where rounding would leave the ball.
    levels = np.floor(eps * 255 + 1e-6)
    steps_255 = torch.round(delta * 255).clamp(-levels, levels)
    return ((torch.round(x * 255) + steps_255).clamp(0, 255)) / 255


def adversarial_example(
    model: Any,
    image: Any,
    target: Any = None,
    *,
    eps: float = 2 / 255,
    steps: int = 10,
    step_size: float | None = None,
    method: AttackMethod = "pgd",
    quantize: bool = True,
    path: str | os.PathLike | None = None,
    image_size: int | None = None,
    device: str | torch.device = "auto",
) -> AdversarialExample:
    """An L-infinity-bounded perturbation that changes the model's prediction.

    The image is decoded, resized and centre-cropped as the model's
    preprocessing says; the attack works on that crop in [0, 1] pixel
    space, with the model's mean/std normalisation inside the
    differentiated graph, so ``eps`` is in pixel units whatever the model
    (2/255 is two grey levels). Every pixel of the result stays in [0, 1]
    and within ``eps`` of the original.

    ``method="fgsm"`` takes one step of size ``eps`` along the sign of the
    gradient (Goodfellow et al., 2015); ``"pgd"`` takes ``steps`` steps of
    ``step_size`` from the original image, projecting back into the ball
    after each (Madry et al., 2018).

    Parameters
    ----------
    model : str, FineTuneClassifier or Pipeline
        A backbone name (ImageNet classes) or a fitted model, as for
        :func:`grad_cam`.
    image : path, PIL image or array
        One image.
    target : class label or None, default=None
        ``None``: untargeted, move away from the predicted class. A class
        (for ImageNet an index or a category name): make the model predict
        it.
    eps : float, default=2/255
        Largest change of any pixel, in [0, 1] units.
    steps : int, default=10
        PGD steps (FGSM takes one).
    step_size : float or None, default=None
        PGD step; ``None`` is ``2.5 * eps / steps``.
    method : {"pgd", "fgsm"}, default="pgd"
    quantize : bool, default=True
        Round the result onto the 8-bit grid (within ``eps``), so that
        ``image_uint8``, and a PNG of it, is the adversarial image exactly
        and predicts ``label``. Needs ``eps >= 1/255``.
    path : str, path-like or None, default=None
        Write a PNG: original, perturbation (stretched to be visible) and
        adversarial image, with their predictions.
    image_size, device
        As for :func:`grad_cam`: the input side for a backbone name, and
        ``"auto"`` (CUDA when available) or a device.

    Returns
    -------
    AdversarialExample

    See Also
    --------
    adversarial_accuracy : Accuracy under this attack, as a robustness score.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.inspect import adversarial_example
    >>> image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> result = adversarial_example("efficientnet_lite0", image, eps=4 / 255, steps=3, image_size=64)
    >>> bool(np.abs(result.perturbation).max() <= 4 / 255 + 1e-6), result.image.shape
    (True, (64, 64, 3))
    """
    eps, steps, step_size = _check_attack(
        "adversarial_example",
        eps=eps,
        steps=steps,
        step_size=step_size,
        method=method,
        quantize=quantize,
        image_size=image_size,
    )
    explainable = resolve_model(model, image_size, device)
    samples = one_image(image)
    destination = output_paths(path, samples, "adversarial")
    net = explainable.net
    device = next(net.parameters()).device
    _, x = explainable.load(samples, device)
    with torch.inference_mode():
        before = net(x).softmax(1)[0]
    original = int(before.argmax())
    goal = None if target is None else explainable.class_index(target)
    labels = torch.tensor([original if goal is None else goal], device=device)
    adversarial = _attack(
        net, x, labels, targeted=goal is not None, eps=eps, steps=steps, step_size=step_size, quantize=quantize
    )
    with torch.inference_mode():
        after = net(adversarial).softmax(1)[0]
    new = int(after.argmax())
    classes = explainable.classes
    image_out = adversarial[0].permute(1, 2, 0).float().cpu().numpy()
    original_out = x[0].permute(1, 2, 0).float().cpu().numpy()
    result = AdversarialExample(
        image=image_out,
        original=original_out,
        perturbation=image_out - original_out,
        original_label=classes[original],
        original_probability=float(before[original]),
        label=classes[new],
        probability=float(after[new]),
        target=None if goal is None else classes[goal],
        eps=eps,
        method=method,
    )
    if destination is not None:
        fig = new_figure(FIGSIZES["adversarial"])
        _draw(fig, result, explainable.name)
        save_figure(fig, destination[0])
    return result


def adversarial_accuracy(
    model: Any,
    X: Any,
    y: Any,
    eps: float = 2 / 255,
    *,
    method: AttackMethod = "pgd",
    steps: int = 10,
    step_size: float | None = None,
    quantize: bool = True,
    image_size: int | None = None,
    batch_size: int = 16,
    device: str | torch.device = "auto",
) -> float:
    """Accuracy on adversarial versions of ``X``: a robustness score.

    Each image is attacked as by :func:`adversarial_example`, untargeted,
    away from its true label ``y``; the score is the fraction still
    classified as ``y``. ``eps=0`` gives the clean accuracy of the same
    network (without test-time augmentation).

    Parameters
    ----------
    model : str, FineTuneClassifier or Pipeline
        A backbone name (ImageNet classes) or a fitted model, as for
        :func:`grad_cam`.
    X : sequence of images
        Paths, PIL images or arrays.
    y : array-like of shape (n_samples,)
        True labels (for ImageNet, indices or category names).
    eps : float, default=2/255
        Largest change of any pixel, in [0, 1] units.
    method, steps, step_size, quantize
        As for :func:`adversarial_example`.
    batch_size : int, default=16
        Images attacked together.
    image_size, device
        As for :func:`grad_cam`.

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.inspect import adversarial_accuracy
    >>> X = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    >>> score = adversarial_accuracy("efficientnet_lite0", X, ["goldfish", "tabby"], eps=2 / 255, steps=2, image_size=64)
    >>> 0 <= score <= 1
    True
    """
    eps, steps, step_size = _check_attack(
        "adversarial_accuracy",
        eps=eps,
        steps=steps,
        step_size=step_size,
        method=method,
        quantize=quantize,
        image_size=image_size,
        batch_size=batch_size,
    )
    batch_size = int(batch_size)
    explainable = resolve_model(model, image_size, device)
    samples = check_images(X)
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y, dtype=object)
    if y.ndim != 1 or len(y) != len(samples):
        raise ValueError(f"y must hold one label per image: X has {len(samples)} images, y has shape {y.shape}.")
    truth = np.array([explainable.class_index(label) for label in y.tolist()])
    net = explainable.net
    device = next(net.parameters()).device
    correct = 0
    for rows, _, x in explainable.batches(samples, batch_size, device):
        labels = torch.as_tensor(truth[rows], device=device)
        adversarial = _attack(
            net, x, labels, targeted=False, eps=eps, steps=steps, step_size=step_size, quantize=quantize
        )
        with torch.inference_mode():
            correct += int((net(adversarial).argmax(1) == labels).sum())
    return correct / len(samples)


def _draw(fig: Figure, result: AdversarialExample, name: str) -> None:
    original, noise, adversarial = fig.subplots(1, 3)
    scale = max(result.eps, 1e-12)
    panels = [
        (original, result.original, f"original: {visible(result.original_label)} ({result.original_probability:.2f})"),
        (
            noise,
            0.5 + result.perturbation / (2 * scale),
            f"perturbation, x{0.5 / scale:.0f} (eps = {result.eps * 255:.3g}/255)",
        ),
        (adversarial, result.image, f"adversarial: {visible(result.label)} ({result.probability:.2f})"),
    ]
    for ax, pixels, title in panels:
        ax.imshow(np.clip(pixels, 0, 1))
        ax.set_title(title, fontsize="medium")
        ax.set_axis_off()
    kind = "untargeted" if result.target is None else f"targeted at {visible(result.target)}"
    fig.suptitle(f"{visible(name)}: {result.method.upper()}, {kind}")
