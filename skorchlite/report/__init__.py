"""Evaluation plots as PNG files: confusion matrix, ROC / PR, learning curves, errors.

matplotlib is an optional dependency (``pip install "skorchlite[report]"``),
imported only when a plot is drawn. Figures are built with
:class:`matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so
no display is needed and matplotlib's global state (current figure,
backend) is left alone. Every PNG has a fixed size: its figure size
(``FIGSIZES``) times ``DPI`` pixels, whatever the data and whatever
``savefig`` settings the user's rcParams hold.
"""

from __future__ import annotations

from ..figures import DPI
from .drawing import FIGSIZES
from .inputs import rank_misclassified
from .plots import (
    plot_confusion_matrix,
    plot_learning_curves,
    plot_misclassified,
    plot_roc_pr,
    report_figures,
    write_report,
)

__all__ = [
    "DPI",
    "FIGSIZES",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "plot_misclassified",
    "plot_roc_pr",
    "rank_misclassified",
    "report_figures",
    "write_report",
]
