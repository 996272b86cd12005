"""The report page's names, as they were imported before the page moved into :mod:`skorchlite.report`.

``from skorchlite.report_page import evaluation_page`` keeps working; new
code imports from :mod:`skorchlite.report`.
"""

from __future__ import annotations

from .report import DUPLICATE_THUMBNAIL as DUPLICATE_THUMBNAIL
from .report import ERROR_THUMBNAIL as ERROR_THUMBNAIL
from .report import MAX_DUPLICATE_GROUPS as MAX_DUPLICATE_GROUPS
from .report import ErrorGallery, RunInfo, error_gallery, evaluation_page, finetune_page, format_score

__all__ = ["ErrorGallery", "RunInfo", "error_gallery", "evaluation_page", "finetune_page", "format_score"]
