"""How user-supplied names (class labels, file and folder paths) are shown.

Names are data: a folder may be called ``ESC[2J`` or ``$x^2$`` or hold bytes
that are not UTF-8, and none of that may clear a terminal, become math in a
figure, markup in a page, or an encoding error that loses a finished run.
Each form is stated once, here:

* the visible form, for terminals, figures and the report page
  (:func:`visible`): every character that a terminal would obey or hide
  (C0 and C1 controls, DEL, bidirectional and other format characters, line
  and paragraph separators, private and unassigned code points) is written
  as a Python backslash escape (``\\x1b``, ``\\u202e``), and a lone surrogate
  (Python's stand-in for a byte of a file name that is not UTF-8) becomes
  U+FFFD, the replacement character. Text without such characters is
  unchanged. The page escapes it for HTML on top
  (:func:`skorchlite.report.markup.escape`), and figures draw it
  without math text or LaTeX (:func:`skorchlite.figures.figure_png`);
* the short form, where space is fixed (:func:`shorten`,
  :func:`shorten_all`): at most ``width`` terminal columns (:func:`columns`:
  a Chinese or Japanese character takes two, a combining accent none), its
  start and end kept around an ellipsis, distinct names kept distinct; and
  padded to a column of a table by :func:`pad`;
* the data form (:func:`csv_bytes`): exact values, a name that is not UTF-8
  keeping the bytes the file system holds.

And how many of a thing there are, in words (:func:`plural`); and a name
that is not one of the choices gets the closest ones as a hint
(:func:`did_you_mean`), worded the same in every message.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "ELLIPSIS",
    "REPLACEMENT",
    "columns",
    "csv_bytes",
    "did_you_mean",
    "pad",
    "plural",
    "shorten",
    "shorten_all",
    "visible",
]

#: What a lone surrogate (an undecodable byte of a file name) is shown as.
REPLACEMENT = "\ufffd"
#: What stands for the middle of a shortened name.
ELLIPSIS = "…"

# Unicode categories a terminal obeys or does not draw: controls (Cc),
# format characters such as the bidirectional overrides (Cf), line and
# paragraph separators (Zl, Zp), private use (Co) and unassigned (Cn).
# Surrogates (Cs) are replaced, not escaped.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cn"})
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Room a tag such as "~12" needs in shorten_all.
_MIN_DISTINCT_WIDTH = 8


def _visible_char(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cs":
        return REPLACEMENT
    if category not in _HIDDEN:
        return char
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(name: Any, newlines: bool = False) -> str:
    """``str(name)`` with nothing a terminal would obey or hide, and no lone surrogate.

    Controls (newline included), bidirectional and other format characters,
    separators, private-use and unassigned code points become backslash
    escapes as Python writes them; lone surrogates, which stand for bytes
    of a file name that are not UTF-8, become U+FFFD. Everything else, any
    script and space, is kept, so a plain name is shown as it is.

    Parameters
    ----------
    name : object
        A class label, a path, or a message quoting them.
    newlines : bool, default=False
        Keep line breaks, for a figure or a page, where a line break only
        breaks a line (a title on two lines, a long ``repr``). A name put
        into such text is made visible first, its own line breaks escaped.

    Returns
    -------
    str
        Safe to print, to draw, and to encode as UTF-8.

    Examples
    --------
    >>> visible("\\x1b[2Jbenign")
    '\\\\x1b[2Jbenign'
    >>> visible("caf\\udce9"), visible("naïve $x^2$")
    ('caf�', 'naïve $x^2$')
    >>> visible("Counts\\n(n = 9)", newlines=True)
    'Counts\\n(n = 9)'
    """
    text = str(name)
    if text.isprintable():  # the common case, and C-fast
        return text
    if newlines:
        return "\n".join(visible(line) for line in text.split("\n"))
    return "".join(_visible_char(char) for char in text)


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes: East Asian wide and
    fullwidth characters two, combining marks and format characters none,
    every other character one.

    Examples
    --------
    >>> columns("benign"), columns("良性"), columns("e\u0301")
    (6, 4, 1)
    """
    if text.isascii():
        return len(text)
    return sum(_char_columns(char) for char in text)


def _char_columns(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _prefix(text: str, room: int) -> str:
    """The longest start of ``text`` that fits in ``room`` columns."""
    used = 0
    for end, char in enumerate(text):
        used += _char_columns(char)
        if used > room:
            return text[:end]
    return text


def pad(text: str, width: int, align: str = ">") -> str:
    """``text`` with spaces to fill ``width`` columns: before it (``">"``,
    right-aligned) or after it (``"<"``).

    Examples
    --------
    >>> pad("良性", 6) + "|", pad("benign", 8, "<") + "|"
    ('  良性|', 'benign  |')
    """
    fill = " " * max(width - columns(text), 0)
    return fill + text if align == ">" else text + fill


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` columns: its start and end around '…'.

    Two thirds of the room go to the start, where names differ most often;
    the end keeps a file's extension or a class's last word.

    Parameters
    ----------
    text : str
    width : int
        At least 1.

    Returns
    -------
    str

    Examples
    --------
    >>> shorten("malignant_with_calcifications", 12)
    'malignan…ons'
    >>> shorten("benign", 12)
    'benign'
    >>> shorten("良性腫瘍の石灰化を伴う", 12)
    '良性腫瘍…う'
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    if columns(text) <= width:
        return text
    room = width - columns(ELLIPSIS)
    tail = room // 3
    return _prefix(text, room - tail) + ELLIPSIS + _prefix(text[::-1], tail)[::-1]


def shorten_all(names: Iterable[Any], width: int) -> list[str]:
    """The visible form of each name in at most ``width`` columns, distinct names kept distinct.

    A name whose visible form fits, and is not also another name's, is kept
    as it is; the others are shortened (:func:`shorten`), and where two
    would then read the same, a tag ``~2``, ``~3``... tells them apart.
    Equal names get equal forms.

    Parameters
    ----------
    names : iterable
        Class labels or paths, in the order wanted.
    width : int
        At least 8, room for a tag.

    Returns
    -------
    list of str
        One per name, in order.

    Examples
    --------
    >>> shorten_all(["cat", "x" * 20 + "1", "x" * 20 + "2"], 10)
    ['cat', 'xxxxxx…xx1', 'xxxxxx…xx2']
    >>> shorten_all(["a" * 20 + "b", "a" * 30 + "b"], 10)
    ['aaaaaa…aab', 'aaaaa…ab~2']
    """
    if width < _MIN_DISTINCT_WIDTH:
        raise ValueError(f"width must be at least {_MIN_DISTINCT_WIDTH} to keep names distinct, got {width}")
    names = list(names)
    distinct = list(dict.fromkeys(names))
    forms = {name: visible(name) for name in distinct}
    readings = Counter(forms.values())
    short = {name: form for name, form in forms.items() if columns(form) <= width and readings[form] == 1}
    taken = set(short.values())
    for name in distinct:
        if name in short:
            continue
        candidate, k = shorten(forms[name], width), 1
        while candidate in taken:  # each k gives another string, so this ends
            k += 1
            tag = f"~{k}"
            candidate = shorten(forms[name], width - len(tag)) + tag
        short[name] = candidate
        taken.add(candidate)
    return [short[name] for name in names]


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``n`` and ``noun``, with an ``s`` (or as ``many``) unless ``n`` is one.

    Examples
    --------
    >>> plural(1, "pair"), plural(3, "duplicate group"), plural(2, "class", "classes")
    ('1 pair', '3 duplicate groups', '2 classes')
    """
    return f"{n} {noun if n == 1 else many or noun + 's'}"


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """CSV of ``rows`` under ``header`` as UTF-8 bytes, every value exact.

    A CSV file is data for programs, so names are not escaped; a file name
    that is not valid UTF-8 keeps its own bytes (as ``os.fsencode`` writes
    it), so the row still names the file.

    Parameters
    ----------
    header : sequence of str
    rows : iterable of sequences

    Returns
    -------
    bytes

    Examples
    --------
    >>> csv_bytes(["path", "label"], [["a\\udcff.png", "cat"]])
    b'path,label\\r\\na\\xff.png,cat\\r\\n'
    """
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8", "surrogateescape")


def did_you_mean(name: Any, choices: Iterable[Any], n: int = 3) -> str:
    """The hint of an error message about ``name``, not one of ``choices``:
    the closest choices (difflib's ratio at least 0.6), at most ``n``.

    Parameters
    ----------
    name : object
        Compared as ``str(name)``.
    choices : iterable
        Compared, and shown, as their ``str``.
    n : int, default=3

    Returns
    -------
    str
        ``" Did you mean 'a', 'b'?"`` (with its leading space, to follow a
        sentence), or ``""`` when no choice is close.

    Examples
    --------
    >>> "Unknown colour 'gren'." + did_you_mean("gren", ["green", "grey", "red"])
    "Unknown colour 'gren'. Did you mean 'green', 'grey'?"
    >>> did_you_mean("blue", ["green", "red"])
    ''
    """
    import difflib

    close = difflib.get_close_matches(str(name), [str(choice) for choice in choices], n=n)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""
