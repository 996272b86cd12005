"""Figure plumbing shared by the report plots and :mod:`skorchlite.inspect`.

Each figure gets its own Agg canvas (no pyplot, no display, no global
state) and is rendered at exactly its size in inches times :data:`DPI`
pixels, whatever the user's matplotlib settings, then written atomically.
matplotlib is needed only here (the ``skorchlite[report]`` extra).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
from PIL import Image

from .files import write_atomic
from .names import visible

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

__all__ = ["DPI", "figure_png", "new_figure", "require_matplotlib", "save_figure"]

#: Pixels per inch of every PNG skorchlite draws.
DPI = 100
_INSTALL = 'Plots need matplotlib: pip install "skorchlite[report]"'


def require_matplotlib() -> None:
    """Raise ImportError, saying how to install it, unless matplotlib can draw.

    Examples
    --------
    >>> require_matplotlib()
    """
    try:
        # The package first: ``matplotlib.figure`` may be cached in
        # sys.modules even where the package itself is unavailable.
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as err:
        raise ImportError(_INSTALL) from err


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure of ``size`` inches on its own Agg canvas.

    Raises
    ------
    ImportError
        When matplotlib is not installed, saying how to install it.

    Examples
    --------
    >>> fig = new_figure((2.0, 1.0))
    >>> fig.get_size_inches().tolist(), fig.dpi
    ([2.0, 1.0], 100)
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as an RGB PNG of exactly its size times :data:`DPI` pixels.

    The canvas is rendered and encoded by Pillow rather than ``savefig``,
    whose size follows the user's rcParams (``savefig.bbox = "tight"``).

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> Image.open(io.BytesIO(figure_png(new_figure((2.0, 1.0))))).size
    (200, 100)
    """
    _literal_text(fig)
    # The constrained layout converges in two passes: the first sizes tick
    # labels it could not measure before (long class names, turned upright).
    fig.draw_without_rendering()
    fig.canvas.draw()
    canvas = cast("FigureCanvasAgg", fig.canvas)  # new_figure's canvas
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write the figure's PNG (:func:`figure_png`) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    write_atomic(path, figure_png(fig))
    return path


def _literal_text(fig: Figure) -> None:
    """Draw each text of ``fig`` as the very characters it holds.

    Labels, titles and legends hold names (a class called ``$x^2$`` or
    ``50%_a&b``): no math text, no LaTeX (whatever the user's rcParams say),
    and no character a font cannot draw or an encoder refuses. The numbers
    matplotlib's own number formatters write on the ticks keep their math
    text, which is how some of them write exponents; tick labels we set
    (``set_ticklabels``: class names) are literal.
    """
    from matplotlib.text import Text
    from matplotlib.ticker import LogFormatter, LogitFormatter, ScalarFormatter

    numbers: set[Text] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            numbers.add(axis.offsetText)
            for ticks, formatter in [
                (axis.get_major_ticks(), axis.get_major_formatter()),
                (axis.get_minor_ticks(), axis.get_minor_formatter()),
            ]:
                if isinstance(formatter, (ScalarFormatter, LogFormatter, LogitFormatter)):
                    numbers.update(label for tick in ticks for label in (tick.label1, tick.label2))
    for text in fig.findobj(Text):
        assert isinstance(text, Text)  # for mypy: findobj is typed as returning any artist
        text.set_usetex(False)
        if text not in numbers:
            text.set_parse_math(False)
            text.set_text(visible(text.get_text(), newlines=True))
