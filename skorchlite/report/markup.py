"""The page's building blocks: its style, the page around the sections, tables, figures, and escaped text."""

from __future__ import annotations

import base64
import binascii
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..names import visible


def format_score(scores: Sequence[float] | np.ndarray) -> str:
    """``"mean ± std"`` of per-fold scores, to three decimals, as the terminal prints it.

    Examples
    --------
    >>> format_score([0.8, 0.9])
    '0.850 ± 0.050'
    """
    scores = np.asarray(scores, dtype=float)
    return f"{scores.mean():.3f} ± {scores.std():.3f}"


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1240px;
padding:0 24px 48px;color:#1a1a1a;line-height:1.45}
header{border-bottom:2px solid #1f77b4;margin-bottom:8px}
h1{margin:20px 0 4px;font-size:1.6em}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{margin:18px 0 6px;font-size:1.05em}.sub{color:#444;margin:0 0 10px}
nav{font-size:.95em;margin:8px 0 0}nav a{margin-right:14px;white-space:nowrap}
.big{font-size:1.35em}.big strong{font-size:1.15em;color:#0b4f8a}
table{border-collapse:collapse;margin:8px 0;font-size:.93em}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
thead th{background:#f0f3f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
tfoot td,tfoot th{font-weight:600;background:#fafafa}tr.marked td{background:#fff4cc;font-weight:600}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.9em;padding-top:4px}
table.confusion td{text-align:center;min-width:70px}table.confusion td.diag{outline:2px solid #1f77b4}
figure{margin:10px 0}figure.plot img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:14px}
.card{margin:0;border:1px solid #ddd;border-radius:6px;padding:6px;background:#fcfcfc}
.pair{display:flex;gap:4px}.pair img{width:50%;height:auto;object-fit:contain;background:#000}
.wrong{color:#b00020}.p{background:#b00020;color:#fff;border-radius:3px;padding:0 4px;font-size:.85em;white-space:nowrap}
.name{color:#666;font-size:.85em;overflow-wrap:anywhere;margin:0}
.groups{display:flex;flex-wrap:wrap;gap:12px}
.group{border:1px solid #ddd;border-left:4px solid #999;border-radius:4px;padding:4px 8px}
.group h3{margin:2px 0;font-size:.95em}.group.conflict{border-left-color:#b00020;background:#fff5f5}
.group.conflict h3{color:#b00020}
.members{display:flex;flex-wrap:wrap;gap:6px;max-width:600px}.dup{margin:0;width:112px}.dup img{width:110px;height:auto}
.legend{font-size:.9em}.jet{display:inline-block;width:160px;height:12px;vertical-align:middle;
background:linear-gradient(to right,#00007f,#0000ff,#00ffff,#7fff7f,#ffff00,#ff0000,#7f0000)}
.columns{display:flex;flex-wrap:wrap;gap:40px}code{background:#f4f4f4;padding:1px 4px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}dt{font-weight:600}dd{margin:0}
details{margin:8px 0}summary{cursor:pointer;color:#0b4f8a}
.notice{background:#fff8e1;border:1px solid #e0b84c;border-radius:4px;padding:6px 10px;font-size:.93em}
"""


def html_page(
    heading: str, subtitle: str, date: str, sections: Sequence[tuple[str, str, str]], notice: str = ""
) -> str:
    """The whole page: its head and style, a header with a link to each section, the sections.

    Parameters
    ----------
    heading, subtitle, date : str
        The page's title, what it is about, and when it was made.
    sections : sequence of (anchor, title, HTML fragment)
    notice : str, default=""
        An HTML fragment shown boxed under the subtitle, where every reader
        sees it (what the page holds that needs care).

    Returns
    -------
    str
        The HTML document.
    """
    nav = "".join(f'<a href="#{anchor}">{escape(name)}</a>' for anchor, name, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{escape(name)}</h2>{content}</section>' for anchor, name, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # An empty icon: browsers would otherwise ask for /favicon.ico.
        '<link rel="icon" href="data:,">'
        f"<title>{escape(heading)}: {escape(subtitle)}</title><style>{_STYLE}</style></head><body>"
        f'<header><h1>{escape(heading)}</h1><p class="sub">{escape(subtitle)}. Report made {escape(date)}.</p>'
        + (f'<p class="notice" id="notice">{notice}</p>' if notice else "")
        + f"<nav>{nav}</nav></header>{body}</body></html>\n"
    )


def html_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Iterable[int] = (),
    footer: int = 0,
    marked: Sequence[int] = (),
) -> str:
    """An HTML table; ``footer`` last rows go to ``<tfoot>``, ``marked`` rows are highlighted.

    Parameters
    ----------
    header : sequence of str
    rows : iterable of sequences of str
        The cells' text, escaped here.
    numeric : iterable of int, default=()
        The columns aligned as numbers.
    footer : int, default=0
    marked : sequence of int, default=()
        Indices of the body rows to highlight.

    Returns
    -------
    str
    """
    numeric = set(numeric)
    rows = list(rows)

    def row_html(k: int, row: Sequence[str]) -> str:
        cells = "".join(
            f'<td class="num">{escape(cell)}</td>' if c in numeric else f"<td>{escape(cell)}</td>"
            for c, cell in enumerate(row)
        )
        return f'<tr class="marked">{cells}</tr>' if k in marked else f"<tr>{cells}</tr>"

    body = "".join(row_html(k, row) for k, row in enumerate(rows[: len(rows) - footer]))
    foot = "".join(row_html(-1, row) for row in rows[len(rows) - footer :]) if footer else ""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        + (f"<tfoot>{foot}</tfoot>" if foot else "")
        + "</table>"
    )


def html_figure(png: bytes, name: str, alt: str) -> str:
    """A plot inlined as a ``data:`` URI, captioned with ``alt`` and its file ``name``.

    Parameters
    ----------
    png : bytes
        The very bytes of the PNG file beside the page.
    name : str
        That file's name.
    alt : str
        What the plot shows, as its alternative text and caption.

    Returns
    -------
    str
    """
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (
        f'<figure class="plot">{html_img(uri, alt)}<figcaption>{escape(alt)} '
        f"Also in <code>{escape(name)}</code> beside this page.</figcaption></figure>"
    )


def html_img(uri: str, alt: str) -> str:
    """An ``<img>`` of a base64 ``data:`` URI, with its ``width`` and
    ``height`` in pixels (read from the image's header), so the browser
    lays the page out before the images decode and keeps their aspect
    ratio where the style scales them.

    Parameters
    ----------
    uri : str
        ``data:image/...;base64,...``.
    alt : str
        The alternative text, escaped here.

    Returns
    -------
    str

    Examples
    --------
    >>> import base64, io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (30, 20)).save(buffer, format="PNG")
    >>> html_img("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), "a <b>").split('" ', 1)[1]
    'width="30" height="20" alt="a &lt;b&gt;">'
    """
    size = ""
    try:
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1], validate=True))) as image:
            size = f' width="{image.width}" height="{image.height}"'
    except (IndexError, binascii.Error, OSError, ValueError):  # not an image URI: the browser sizes it, as before
        pass
    return f'<img src="{uri}"{size} alt="{escape(alt)}">'


def escape(value: Any) -> str:
    """``str(value)`` escaped for HTML text and attributes, in its visible form.

    Controls and bidirectional overrides are shown as backslash escapes and
    bytes of a name that are not UTF-8 as U+FFFD
    (:func:`skorchlite.names.visible`), so the page always encodes as UTF-8;
    line breaks stay, as the white space they are in HTML.

    Examples
    --------
    >>> escape('<b class="x">')
    '&lt;b class=&quot;x&quot;&gt;'
    >>> escape("caf\\udce9\\u202e")
    'caf�\\\\u202e'
    """
    return html.escape(visible(value, newlines=True), quote=True)


def format_number(value: Any, fmt: str = ".3f") -> str:
    """``value`` formatted with ``fmt``, or a dash where it is missing or not finite.

    Examples
    --------
    >>> format_number(0.12345), format_number(None), format_number(float("nan"))
    ('0.123', '–', '–')
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return format(number, fmt) if np.isfinite(number) else "–"
