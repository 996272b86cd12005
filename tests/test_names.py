"""Names as data (issue 24, class 6): the visible, short and CSV forms of
:mod:`skorchlite.names`, for any text a class or file may be named."""

from __future__ import annotations

import ast
import difflib
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skorchlite
from skorchlite.names import ELLIPSIS, REPLACEMENT, columns, csv_bytes, did_you_mean, shorten, shorten_all, visible

# What a hostile or careless name holds: terminal escapes (CSI, OSC 52,
# C1), bidirectional overrides, CR/backspace tricks, math text, legend
# markers, backslashes, and lone surrogates (bytes of a name that are not UTF-8).
TRICKS = [
    "\x1b[2J",
    "\x1b]52;c;aGk=\x07",
    "\x9b31m",
    "\x85",
    "\u202e",
    "\u2066",
    "\u200f",
    "\r",
    "\b",
    "\x7f",
    "\n",
    "\t",
    "\u2028",
    "\ufeff",
    "$x^2$",
    "$\\frac{$",
    "_",
    "\\",
    "\udcff",
    "\udc80",
    "\ud800",
    "\U000e0001",
]
# Any code point, surrogates included, with the tricks over-represented.
ANY_CHAR = st.characters(codec=None, exclude_categories=())
NAMES = st.lists(st.one_of(ANY_CHAR, st.sampled_from(TRICKS)), max_size=40).map("".join)
HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"}


def _unescape(text: str) -> str:
    """The inverse of visible() for a name without surrogates or backslashes."""
    named = {"n": "\n", "r": "\r", "t": "\t"}
    return re.sub(
        r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[nrt])",
        lambda m: named.get(m.group(1)) or chr(int(m.group(1)[1:], 16)),
        text,
    )


@given(NAMES)
@settings(max_examples=300)
def test_visible_holds_nothing_a_terminal_obeys_and_encodes_as_utf8(name):
    shown = visible(name)
    assert not {unicodedata.category(c) for c in shown} & HIDDEN, ascii(shown)
    assert "\x1b" not in shown and "\n" not in shown
    shown.encode("utf-8")  # strict: no lone surrogate is left
    assert visible(shown) == shown  # idempotent: applying it twice is harmless
    # For a figure or a page, line breaks stay and nothing else does.
    lines = visible(name, newlines=True)
    assert lines.split("\n") == [visible(line) for line in name.split("\n")]


@given(NAMES)
def test_visible_is_readable_and_round_trips(name):
    shown = visible(name)
    if name.isprintable():
        assert shown == name  # a plain name, in any script, is shown as it is
    if "\\" not in name:
        expected = "".join(REPLACEMENT if unicodedata.category(c) == "Cs" else c for c in name)
        assert _unescape(shown) == expected


def test_visible_examples():
    assert visible("\x1b[2Jbenign") == "\\x1b[2Jbenign"
    assert visible("caf\udce9") == "caf\ufffd"
    assert visible("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert visible("a\nb\r\x08") == "a\\nb\\r\\x08"
    assert visible("$x^2$ _x \\ naïve 猫 ") == "$x^2$ _x \\ naïve 猫 "
    assert visible(3) == "3"


@given(st.text(max_size=300), st.integers(1, 60))
def test_shorten_is_bounded_and_keeps_start_and_end(text, width):
    """Bounded in terminal columns (a wide character takes two)."""
    short = shorten(text, width)
    assert columns(short) <= width
    if columns(text) <= width:
        assert short == text
    else:
        head, _, tail = short.partition(ELLIPSIS)
        assert text.startswith(head) and text.endswith(tail) and columns(head) >= columns(tail)


@given(st.lists(st.one_of(NAMES, st.text(min_size=30, max_size=300)), max_size=30), st.integers(8, 40))
@settings(max_examples=200)
def test_shorten_all_is_bounded_and_keeps_distinct_names_distinct(names, width):
    # Long names that differ only in the middle, or only in undecodable bytes.
    names = names + [f"{'a' * 50}{k}{'z' * 50}" for k in range(3)] + ["x\udcff", "x\udcfe"]
    short = shorten_all(names, width)
    assert all(columns(s) <= width for s in short)
    assert len(set(short)) == len(set(names))  # distinct stay distinct, equal stay equal
    for name, s in zip(names, short, strict=True):
        assert visible(s) == s
        if columns(visible(name)) <= width and sum(visible(n) == visible(name) for n in set(names)) == 1:
            assert s == visible(name)  # a name that fits is kept whole


def test_csv_keeps_exact_values_and_the_bytes_of_names_that_are_not_utf8():
    data = csv_bytes(["path", "label"], [["dir/a\udcff.png", "\x1b[2J"]])
    assert data == b"path,label\r\ndir/a\xff.png,\x1b[2J\r\n"


# -- did you mean (issue 25, point 5: one helper, worded once) -----------------------
@settings(max_examples=100, deadline=None)
@given(name=st.text(max_size=12), choices=st.lists(st.text(max_size=12), max_size=8))
def test_did_you_mean_hints_exactly_when_a_choice_is_close(name, choices):
    hint = did_you_mean(name, choices)
    close = [c for c in choices if difflib.SequenceMatcher(None, name, c).ratio() >= 0.6]
    assert bool(hint) == bool(close)
    if hint:
        assert hint.startswith(" Did you mean ") and hint.endswith("?") and "\n" not in hint
    if name in choices:  # the exact name is the closest of all
        assert hint.startswith(f" Did you mean {name!r}")


def test_did_you_mean_finds_a_typo_and_stays_quiet_far_away():
    assert did_you_mean("resnt18", ["resnet18", "resnet50", "vit_b_16"]) == " Did you mean 'resnet18', 'resnet50'?"
    assert did_you_mean(3, [1, 2, 33]) == " Did you mean '33'?"
    assert did_you_mean("zebra", ["cat", "dog"]) == ""


def test_no_other_module_words_a_did_you_mean():
    """Every "did you mean" comes from names.did_you_mean: no module but
    names.py asks difflib for close matches."""
    package = Path(skorchlite.__file__).parent
    found = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name != "names.py"
        and any(
            isinstance(node, (ast.Import, ast.ImportFrom))
            and "difflib" in {getattr(node, "module", None), *(a.name for a in node.names)}
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    assert not found, found


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.text(alphabet=st.sampled_from("ab良性腫瘍\u0301é—x1 "), max_size=30), min_size=1, max_size=6),
    width=st.integers(8, 30),
)
def test_short_names_fit_their_columns_and_stay_distinct(names, width):
    """A Chinese or Japanese character takes two terminal columns, a combining accent none: a width is columns."""
    short = shorten_all(names, width)
    assert all(columns(form) <= width for form in short)
    assert len(set(short)) == len(set(names))


def test_a_table_of_wide_names_lines_up():
    from skorchlite.cli.evaluate import _format_confusion_matrix

    table = _format_confusion_matrix(
        np.array(["良性", "malignant", "正常な組織"]), np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    )
    assert len({columns(line) for line in table.splitlines()}) == 1, table


def test_predicted_paths_in_any_script_line_up(tmp_path, capsys):
    """skorchlite predict pads its paths by terminal columns."""
    from skorchlite.cli import predict

    class Model:
        classes_ = np.array(["a", "b"])

        def predict_proba(self, X):
            return np.tile([0.25, 0.75], (len(X), 1))

    args = type(
        "Args",
        (),
        {"model": "m.pt", "trust_pickle": False, "trust": None, "images": ["良性画像.png", "x.png"], "csv": False},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict, "_load_model", lambda path, trust_pickle, trusted: Model())
        assert predict.predict_command(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and len({columns(line) for line in lines}) == 1, lines
