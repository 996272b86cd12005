"""Decoded pixels made 8-bit RGB, as :func:`skorchlite.images.load_rgb`
returns every sample: deep (16-bit, 32-bit, float) images scaled or
clipped to 0-255, transparency composited onto white."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["check_finite", "deep_to_uint8", "to_rgb"]


def check_finite(pixels: np.ndarray, name: str) -> None:
    """Raise a ValueError naming ``name`` when ``pixels`` hold NaN or infinity."""
    if not np.isfinite(pixels).all():
        raise ValueError(f"{name}: the pixels contain NaN or infinite values.")


def to_rgb(image: Image.Image, name: str) -> Image.Image:
    """``image`` as 8-bit RGB, the way a viewer shows it: deep images
    through :func:`deep_to_uint8`, transparency composited onto white, any
    other mode converted by Pillow; ``name`` names the sample in errors.

    Examples
    --------
    >>> to_rgb(Image.new("LA", (2, 2), (0, 0)), "sample 0").getpixel((0, 0))
    (255, 255, 255)
    """
    if image.mode == "F" or image.mode.startswith("I"):
        image = Image.fromarray(deep_to_uint8(image, name))
    if image.mode == "RGB" and not image.has_transparency_data:
        return image
    try:
        if image.has_transparency_data:
            # Onto white, as image viewers and browsers show transparency; black
            # would turn dark strokes on a transparent background invisible.
            white = Image.new("RGBA", image.size, "white")
            return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
        return image.convert("RGB")
    except ValueError as err:  # e.g. premultiplied "La", which Pillow converts to nothing
        raise ValueError(f"{name}: Pillow cannot convert mode {image.mode!r} to RGB ({err}).") from err


def deep_to_uint8(image: Image.Image, name: str) -> np.ndarray:
    """8-bit grey pixels of a 16/32-bit integer ('I;16', 'I') or float ('F') image.

    Examples
    --------
    >>> deep_to_uint8(Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)), "sample 0")
    array([[  0, 255]], dtype=uint8)
    """
    # One private copy, then in place: large deep images stay at a few
    # bytes per pixel instead of several int64 temporaries.
    pixels = np.array(image)
    if image.mode == "F":
        check_finite(pixels, name)
        # Floats at most 1 are [0, 1] intensities; anything else is 0-255.
        if pixels.max() <= 1:
            pixels *= 255
        np.clip(pixels, 0, 255, out=pixels)
        return np.rint(pixels, out=pixels).astype(np.uint8)
    # Scaled, not clipped, so the full 16-bit range maps onto 0-255; exact
    # integer rounding of x * 255 / 65535 (no ties: 65535 is odd; the
    # largest intermediate, 65535 * 255 + 32767, fits in 32 bits).
    if pixels.dtype.kind == "i":
        np.clip(pixels, 0, 65535, out=pixels)
    wide = pixels.astype(np.uint32)
    wide *= 255
    wide += 32767
    wide //= 65535
    return wide.astype(np.uint8)
