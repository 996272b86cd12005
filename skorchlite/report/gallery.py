"""Images inlined in the page: thumbnails and Grad-CAM overlays as JPEG ``data:`` URIs, and the errors' gallery."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..figures import overlay_heatmap, thumbnail
from ..images import check_images, load_rgb
from .inputs import rank_misclassified

# Longest side, in pixels, of an error thumbnail and of a duplicate's.
ERROR_THUMBNAIL = 200
DUPLICATE_THUMBNAIL = 110
# Small images (8x8 digits) are enlarged to at least this side, pixels kept sharp.
MIN_THUMBNAIL = 96
_JPEG_QUALITY = 82


@dataclass
class ErrorGallery:
    """The misclassified images a page shows, ranked, with their overlays.

    Attributes
    ----------
    indices : ndarray of int
        Every misclassified sample, most confident first.
    confidence : ndarray or None
        The probability of each one's predicted class.
    thumbnails : list of str
        ``data:`` URIs of the first ``len(thumbnails)`` images.
    overlays : list of str or None
        Their Grad-CAM overlays (``None`` when the model has none).
    note : str
        Why there are no overlays, or what they show.
    """

    indices: np.ndarray
    confidence: np.ndarray | None
    thumbnails: list[str]
    overlays: list[str] | None
    note: str


def error_gallery(
    X: Any,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: np.ndarray,
    explain: Any = None,
    n: int = 40,
    note: str = "",
) -> ErrorGallery:
    """Rank the errors and draw the first ``n``, with Grad-CAM overlays.

    Parameters
    ----------
    X : images
        One per label.
    y_true, y_pred : ndarray
        True and predicted labels.
    proba : ndarray or None
        Predicted probabilities, to rank the errors.
    classes : ndarray
        The columns of ``proba``.
    explain : callable, optional
        ``explain(rows, targets) -> list of heatmaps``: the Grad-CAM heatmap
        of each row for its predicted class, on the image's own pixel grid.
        ``None`` draws no overlay and shows ``note`` instead.
    n : int
        Most errors drawn.
    note : str
        What the overlays show, or why there are none.
    """
    samples = check_images(X)
    indices, confidence = rank_misclassified(y_true, y_pred, proba, classes)
    shown = indices[:n].tolist()
    images = [load_rgb(samples[i], i) for i in shown]
    thumbnails = [thumbnail(image, ERROR_THUMBNAIL, MIN_THUMBNAIL) for image in images]
    overlays = None
    if explain is not None and shown:
        heatmaps = explain(shown, [y_pred[i] for i in shown])
        overlays = [jpeg_uri(overlay_heatmap(thumb, heat)) for thumb, heat in zip(thumbnails, heatmaps, strict=True)]
    return ErrorGallery(indices, confidence, [jpeg_uri(thumb) for thumb in thumbnails], overlays, note)


def jpeg_uri(image: Image.Image) -> str:
    """``image`` as a JPEG ``data:`` URI, to inline in the page.

    Parameters
    ----------
    image : PIL.Image.Image

    Returns
    -------
    str
    """
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
