"""Figure plumbing shared by the report and :mod:`skorchlite.inspect`.

Each figure gets its own Agg canvas (no pyplot, no display, no global
state) and is rendered at exactly its size in inches (:data:`FIGSIZES`)
times :data:`DPI` pixels, whatever the user's matplotlib settings, then
written atomically. matplotlib is needed only here (the
``skorchlite[report]`` extra). Images shown small (:func:`thumbnail`) and
Grad-CAM heatmaps over their image (:data:`HEATMAP_CMAP`,
:data:`HEATMAP_ALPHA`, :func:`overlay_heatmap`) look the same in every
figure and on the report page.
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

__all__ = [
    "DPI",
    "FIGSIZES",
    "HEATMAP_ALPHA",
    "HEATMAP_CMAP",
    "figure_png",
    "new_figure",
    "overlay_heatmap",
    "require_matplotlib",
    "save_figure",
    "thumbnail",
]

#: Pixels per inch of every PNG skorchlite draws.
DPI = 100
#: Size in inches (width, height) of each figure skorchlite draws, by name:
#: the report's plots (:mod:`skorchlite.report`), then those of
#: :mod:`skorchlite.inspect`. The PNG is this times :data:`DPI` pixels.
FIGSIZES: dict[str, tuple[float, float]] = {
    "confusion_matrix": (12.0, 5.5),
    "roc_pr": (12.0, 5.5),
    "learning_curves": (9.0, 8.0),
    "misclassified": (12.0, 10.0),
    "grad_cam": (10.0, 4.6),
    "feature_maps": (10.0, 8.0),
    "class_visualization": (10.0, 4.6),
    "adversarial": (12.0, 4.6),
}
#: The colour map and opacity of a Grad-CAM heatmap drawn over its image.
HEATMAP_CMAP = "jet"
HEATMAP_ALPHA = 0.45
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
    >>> fig.get_size_inches().round(6).tolist(), fig.dpi
    ([2.0, 1.0], 100)
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A millionth of a pixel over: the canvas takes int(inches * DPI) pixels,
    # and 4.6 * 100 is 459.99999999999994 where matplotlib 3.7 keeps it so.
    width, height = ((round(side * DPI) + 1e-6) / DPI for side in size)
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white", layout="constrained")
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


def thumbnail(image: Image.Image, side: int, min_side: int = 0) -> Image.Image:
    """A copy of ``image`` at most ``side`` pixels long.

    Parameters
    ----------
    image : PIL.Image.Image
    side : int
        Longest side of the thumbnail, in pixels.
    min_side : int, default=0
        A smaller image (an 8x8 digit) is enlarged to at least this longest
        side, by a whole factor, its pixels kept sharp.

    Returns
    -------
    PIL.Image.Image

    Examples
    --------
    >>> thumbnail(Image.new("RGB", (400, 200)), 100).size
    (100, 50)
    >>> thumbnail(Image.new("RGB", (8, 8)), 100, min_side=96).size
    (96, 96)
    """
    image = image.copy()
    image.thumbnail((side, side))
    if max(image.size) < min_side:
        scale = -(-min_side // max(image.size))
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return image


def overlay_heatmap(image: Image.Image, heatmap: np.ndarray) -> Image.Image:
    """``image`` under ``heatmap``, coloured as :func:`skorchlite.inspect.grad_cam` draws it.

    Parameters
    ----------
    image : PIL.Image.Image
        The image as shown, e.g. a :func:`thumbnail`.
    heatmap : ndarray of shape (H, W)
        Values in [0, 1] on the original image's pixel grid, resized here to
        ``image`` (bilinear, or nearest when enlarged, as the thumbnail's
        pixels are).

    Returns
    -------
    PIL.Image.Image
        An RGB image of ``image``'s size.

    Examples
    --------
    >>> overlay_heatmap(Image.new("RGB", (4, 2)), np.ones((2, 4))).getpixel((0, 0))
    (57, 0, 0)
    """
    from matplotlib import colormaps

    resample = Image.Resampling.NEAREST if image.width > heatmap.shape[1] else Image.Resampling.BILINEAR
    heat = np.asarray(Image.fromarray(heatmap.astype(np.float32), "F").resize(image.size, resample))
    colours = colormaps[HEATMAP_CMAP](np.clip(heat, 0, 1))[..., :3] * 255
    blended = (1 - HEATMAP_ALPHA) * np.asarray(image.convert("RGB"), dtype=np.float64) + HEATMAP_ALPHA * colours
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")


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
