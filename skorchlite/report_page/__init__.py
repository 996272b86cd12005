"""The report as one self-contained HTML page (``DIR/index.html``).

``skorchlite evaluate --report DIR`` and ``skorchlite finetune --report DIR``
write it beside their PNGs. Every image is inlined as a ``data:`` URI (the
plots are the very PNG bytes of the files, thumbnails are small JPEGs),
there is no script and no link outside the page, so it opens from a USB
stick on a machine without network. All text that comes from the user
(labels, paths, parameters) is escaped.
"""

from __future__ import annotations

# The "X as X" imports: public constants, importable from here as before and, as before, not in __all__.
from .blocks import format_score
from .gallery import DUPLICATE_THUMBNAIL as DUPLICATE_THUMBNAIL
from .gallery import ERROR_THUMBNAIL as ERROR_THUMBNAIL
from .gallery import ErrorGallery, error_gallery
from .pages import evaluation_page, finetune_page
from .sections import MAX_DUPLICATE_GROUPS as MAX_DUPLICATE_GROUPS
from .sections import RunInfo

__all__ = ["ErrorGallery", "RunInfo", "error_gallery", "evaluation_page", "finetune_page", "format_score"]
