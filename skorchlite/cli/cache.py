"""``skorchlite cache info|prune``: what the embedding cache holds, and making it smaller."""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from ..names import visible

# Units of --max-size (powers of 1024, as du -h shows them; KB, KiB, k alike)
# and of --older-than.
_SIZES = {"": 1, "b": 1, **{u + b: 1 << (10 * (i + 1)) for i, u in enumerate("kmgt") for b in ("", "b", "ib")}}
_AGES = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _scaled(text: str, units: dict[str, int], what: str) -> float:
    """A number followed by one of ``units`` (a space between allowed), scaled;
    else an argparse error naming ``what`` is expected."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*", text, re.IGNORECASE)
    scale = units.get(match[2].lower()) if match else None
    if match is None or scale is None:
        raise argparse.ArgumentTypeError(f"expected {what}, got {visible(repr(text))}")
    value = float(match[1]) * scale
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"too large, got {visible(repr(text))}")
    return value


def parse_size(text: str) -> int:
    """``--max-size``: bytes, or a number with K, M, G or T (powers of 1024).

    Examples
    --------
    >>> parse_size("500M"), parse_size("1.5 GiB"), parse_size("0")
    (524288000, 1610612736, 0)
    """
    return int(_scaled(text, _SIZES, "a size such as 500M or 2G"))


def parse_age(text: str) -> float:
    """``--older-than``: seconds, or a number with s, m, h, d or w.

    Examples
    --------
    >>> parse_age("30d"), parse_age("12h"), parse_age("90")
    (2592000.0, 43200.0, 90.0)
    """
    return _scaled(text, _AGES, "an age such as 30d, 12h or 90m")


def human_size(n_bytes: int) -> str:
    """``n_bytes`` as ``du -h`` would say it, in powers of 1024.

    Examples
    --------
    >>> human_size(0), human_size(1536), human_size(5 * 2**30)
    ('0 B', '1.5 KiB', '5.0 GiB')
    """
    value, unit = float(n_bytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{n_bytes} B" if unit == "B" else f"{value:.1f} {unit}"


def cache_folder(option: bool | str) -> Path:
    """The folder ``--cache`` names (``True``: the default one).

    Parameters
    ----------
    option : bool or str
        ``args.cache``: ``True``, or the folder given.

    Returns
    -------
    Path
    """
    from ..cache import default_cache_dir

    return Path(option).expanduser() if isinstance(option, str) else default_cache_dir()


def describe_folder(option: bool | str) -> str:
    """Where the cache is, and what chose it, for messages."""
    if isinstance(option, str):
        return f"{visible(cache_folder(option))} (--cache)"
    chosen = "set by SKORCHLITE_CACHE" if os.environ.get("SKORCHLITE_CACHE") else "the default"
    return f"{visible(cache_folder(option))} ({chosen})"


def cache_command(args: argparse.Namespace) -> int:
    """``skorchlite cache info|prune``: the cache's folder, entries and size;
    or entries removed down to ``--max-size`` or older than ``--older-than``.

    Runs on the parsed command line (:func:`skorchlite.cli.build_parser`)
    and returns the exit status, as every verb does.
    """
    from ..cache import EmbeddingCache
    from .errors import CommandError

    cache = EmbeddingCache(cache_folder(args.cache))
    if args.action == "prune":
        if args.max_size is None and args.older_than is None:
            raise CommandError("cache prune needs --max-size SIZE or --older-than AGE (or both)")
        removed, freed = cache.prune(max_size=args.max_size, older_than=args.older_than)
        print(f"Removed {removed} {'entry' if removed == 1 else 'entries'} ({human_size(freed)}).")
    elif args.max_size is not None or args.older_than is not None:
        raise CommandError("--max-size and --older-than are for cache prune")
    entries, size = cache.size()
    print(f"Folder: {describe_folder(args.cache)}")
    print(f"Models: {cache.n_namespaces()} (a folder each)")
    print(f"Entries: {entries} ({human_size(size)})")
    return 0
