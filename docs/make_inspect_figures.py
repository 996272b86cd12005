"""Regenerate the pictures of docs/inspect.md from the photographs that ship
with scikit-image:

    .venv/bin/python docs/make_inspect_figures.py

Every PNG is written by a function of skorchlite.inspect (fixed size, no
display needed), then resampled and stored with a 256-colour palette
to keep the repository small. Takes about a minute on two CPU cores.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from skorchlite.inspect import adversarial_example, class_visualization, feature_maps, grad_cam, total_variation

OUT = Path(__file__).resolve().parent / "images"


def skimage_photo(name: str) -> Path:
    # Located without importing scikit-image, which is slow to import.
    spec = importlib.util.find_spec("skimage")
    return Path(spec.submodule_search_locations[0], "data", name)


def side_by_side(left: Path, right: Path) -> np.ndarray:
    """A 256 x 256 image with one photograph squeezed into each half."""
    halves = [Image.open(path).convert("RGB") for path in (left, right)]
    halves = [image.crop(_centre_square(image)).resize((128, 256), Image.BILINEAR) for image in halves]
    canvas = Image.new("RGB", (256, 256))
    canvas.paste(halves[0], (0, 0))
    canvas.paste(halves[1], (128, 0))
    return np.asarray(canvas)


def _centre_square(image: Image.Image) -> tuple[int, int, int, int]:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return left, top, left + side, top + side


def shrink(path: Path, scale: float = 0.65, dither: bool = True) -> None:
    """Smaller for the repository: resampled and stored with 256 colours,
    dithered where heatmaps must keep their smooth gradients."""
    with Image.open(path) as image:
        size = (round(image.width * scale), round(image.height * scale))
        small = image.convert("RGB").resize(size, Image.LANCZOS)
    palette = small.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    mode = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
    small.quantize(palette=palette, dither=mode).save(path, optimize=True)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    cat, coffee = skimage_photo("chelsea.png"), skimage_photo("coffee.png")
    written = []

    feature_maps(cat, "efficientnet_lite0", "_stem_act", k=8, path=OUT / "inspect_feature_maps.png")
    written.append(OUT / "inspect_feature_maps.png")

    result = grad_cam("efficientnet_lite0", [cat], path=OUT / "inspect_grad_cam_cat.png")
    print(f"chelsea: predicted {result.predicted[0]} ({result.predicted_probability[0]:.3f})")
    written += result.paths
    both = side_by_side(coffee, cat)
    for target in ("tabby", "espresso"):
        result = grad_cam("efficientnet_lite0", [both], target, path=OUT / f"inspect_grad_cam_{target}.png")
        heatmap = result.heatmaps[0]
        print(
            f"coffee | cat, Grad-CAM of {target}: {heatmap[:, 128:].sum() / heatmap.sum():.0%} of it on the right half"
        )
        written += result.paths

    for tv_weight, name in ((1000, "inspect_class_goldfish.png"), (0, "inspect_class_goldfish_no_tv.png")):
        result = class_visualization(
            "efficientnet_lite0", "goldfish", steps=200, tv_weight=tv_weight, random_state=0, path=OUT / name
        )
        print(
            f"goldfish, tv_weight={tv_weight}: p = {result.probability:.3f}, "
            f"total variation {total_variation(result.image):.2f}"
        )
        written.append(OUT / name)

    for target, name in ((None, None), ("golden retriever", "inspect_adversarial.png")):
        result = adversarial_example("efficientnet_lite0", cat, target, eps=2 / 255, steps=20, path=name and OUT / name)
        print(
            f"PGD eps=2/255 {'untargeted' if target is None else 'to ' + target}: {result.original_label} "
            f"({result.original_probability:.3f}) -> {result.label} ({result.probability:.3f}), "
            f"max |delta| = {np.abs(result.perturbation).max() * 255:.2f}/255"
        )
        if name:
            written.append(OUT / name)

    for path in written:
        # Noise-like pictures (channels, perturbations) compress poorly: smaller, undithered.
        noisy = path.name in ("inspect_feature_maps.png", "inspect_adversarial.png")
        shrink(path, scale=0.6 if noisy else 0.65, dither=not noisy)
        print(f"{path.relative_to(OUT.parent.parent)}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
