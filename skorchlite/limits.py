"""Bounds on sizes that every entry point applies, each stated once with its reason.

Light on purpose (no imports): the command line's parser reads it without
loading torch.
"""

from __future__ import annotations

__all__ = ["MAX_IMAGE_SIZE", "MAX_IMAGE_SIZE_REASON"]

#: The largest ``image_size`` (side in pixels) an estimator, a model file or
#: the command line takes.
MAX_IMAGE_SIZE = 1024

#: Why: the backbones were trained at 224 to 600 pixels, and a larger side
#: costs memory as its square (at 30,000 Pillow refuses to make the image).
MAX_IMAGE_SIZE_REASON = "above 1024 pixels one batch needs many GB of memory"
