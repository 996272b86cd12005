"""The evaluation report: plots as PNG files, and the whole report as one self-contained HTML page.

Plots: confusion matrix, ROC / PR, learning curves, errors. matplotlib is
an optional dependency (``pip install "skorchlite[report]"``), imported
only when a plot is drawn. Figures are built with
:class:`matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so
no display is needed and matplotlib's global state (current figure,
backend) is left alone. Every PNG has a fixed size: its figure size
(``FIGSIZES``) times ``DPI`` pixels, whatever the data and whatever
``savefig`` settings the user's rcParams hold.

The page (``DIR/index.html``): ``skorchlite evaluate --report DIR`` and
``skorchlite finetune --report DIR`` write it beside their PNGs
(:func:`evaluation_page`, :func:`finetune_page`). Every image is inlined as
a ``data:`` URI (the plots are the very PNG bytes of the files, thumbnails
are small JPEGs), there is no script and no link outside the page, so it
opens from a USB stick on a machine without network. All text that comes
from the user (labels, paths, parameters) is escaped. A report folder is
written by :mod:`skorchlite.report.folder`, which never removes a file that
no report wrote.
"""

from __future__ import annotations

from ..figures import DPI, FIGSIZES

# The "X as X" imports: public constants, importable from here as before and, as before, not in __all__.
from .gallery import DUPLICATE_THUMBNAIL as DUPLICATE_THUMBNAIL
from .gallery import ERROR_THUMBNAIL as ERROR_THUMBNAIL
from .gallery import ErrorGallery, error_gallery
from .inputs import rank_misclassified
from .markup import format_score
from .pages import evaluation_page, finetune_page
from .plots import (
    plot_confusion_matrix,
    plot_learning_curves,
    plot_misclassified,
    plot_roc_pr,
    report_figures,
    write_report,
)
from .sections import MAX_DUPLICATE_GROUPS as MAX_DUPLICATE_GROUPS
from .sections import RunInfo

__all__ = [
    "DPI",
    "FIGSIZES",
    "ErrorGallery",
    "RunInfo",
    "error_gallery",
    "evaluation_page",
    "finetune_page",
    "format_score",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "plot_misclassified",
    "plot_roc_pr",
    "rank_misclassified",
    "report_figures",
    "write_report",
]
