"""Get or compute: vectors read from a namespace, or computed once, by one process.

The claim protocol of the package (:mod:`skorchlite.cache`) seen from the
caller's side: :func:`get_or_compute` reads what a namespace holds, claims
each missing key just before the caller computes it, leaves the keys another
process claimed to that process and reads them once written, waits a bounded
time (:meth:`CacheNamespace.wait`) and computes what is still missing. The
caller only says how to compute rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

if TYPE_CHECKING:
    from .namespace import CacheNamespace

__all__ = ["Batch", "Compute", "Filled", "get_or_compute"]

#: What ``compute`` yields for each batch: the rows computed (indices into
#: the keys), the key of the content each row was computed from (another
#: than the one asked for when the content changed since it was keyed), and
#: the vectors, shape ``(len(rows), dim)``.
Batch = tuple[Sequence[int], Sequence[str], np.ndarray]
#: Computes the rows it is given, in order, as :data:`Batch` es. The rows
#: come as a lazy iterator: each is claimed just before it is handed over.
Compute = Callable[[Iterator[int]], Iterable[Batch]]


class Filled(NamedTuple):
    """Where the rows of one :func:`get_or_compute` came from.

    Rows that repeat the key of an earlier row (duplicates) are counted in
    none of these: they share that row's vector.
    """

    #: Rows read from the namespace at once.
    cached: int
    #: Rows computed by ``compute``.
    computed: int
    #: Rows that other processes computed meanwhile: read after a claim or a wait.
    shared: int


def get_or_compute(
    namespace: CacheNamespace | None,
    keys: Sequence[str],
    compute: Compute,
    out: np.ndarray,
    progress: Callable[[int], Any] | None = None,
) -> Filled:
    """Fill ``out[i]`` with the vector of ``keys[i]``: stored, or computed once.

    Each distinct key is computed at most once, here or by another process
    that claimed it (:meth:`CacheNamespace.claim`); what is computed here is
    stored. A row whose content turns out to have changed since it was keyed
    (``compute`` names another key for it) is stored under the key of what
    was computed, and the rows that repeated its old key are computed on
    their own. A failed ``compute`` releases the claims it held, so that
    other processes compute those rows.

    Parameters
    ----------
    namespace : CacheNamespace or None
        ``None``: nothing read or stored, each distinct key computed here.
    keys : sequence of str
        One content key per row of ``out``.
    compute : callable
        ``compute(rows)`` yields :data:`Batch` es for the rows of an
        iterator; called only when something is to be computed.
    out : ndarray of shape (len(keys), dim)
    progress : callable or None, default=None
        ``progress(total)`` returns a bar (``update(n)``, ``close()``) over
        the distinct keys to compute or wait for.

    Returns
    -------
    Filled

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skorchlite.cache import EmbeddingCache
    >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "demo"})
    >>> keys = ["ab" * 32, "cd" * 32, "ab" * 32]
    >>> def compute(rows):
    ...     rows = list(rows)
    ...     yield rows, [keys[row] for row in rows], np.array([[float(row)] for row in rows])
    >>> out = np.empty((3, 1), dtype=np.float32)
    >>> get_or_compute(ns, keys, compute, out), out.ravel().tolist()
    (Filled(cached=0, computed=2, shared=0), [0.0, 1.0, 0.0])
    >>> get_or_compute(ns, keys, compute, out)
    Filled(cached=3, computed=0, shared=0)
    """
    if out.ndim != 2 or len(out) != len(keys):
        raise ValueError(f"out must have one row per key ({len(keys)}), got shape {out.shape}.")
    # An entry becomes None where compute finds the content changed since.
    known: list[str | None] = list(keys)
    cached = namespace.get_many(keys, dim=out.shape[1]) if namespace is not None else [None] * len(keys)
    rows_of: dict[str | None, list[int]] = {}
    for i, (key, vector) in enumerate(zip(keys, cached, strict=True)):
        if vector is not None:
            out[i] = vector
        else:
            rows_of.setdefault(key, []).append(i)
    work = _Work(namespace, known, compute, out, progress)
    # Each distinct key is computed once, duplicates share it.
    todo = [rows[0] for rows in rows_of.values()]
    computed = work.fill(todo) if todo else 0
    # A row whose content changed since it was keyed no longer stands for
    # its duplicates: those are computed on their own.
    stale = [row for rows in rows_of.values() if known[rows[0]] is None for row in rows[1:]]
    for rows in rows_of.values():
        if known[rows[0]] is not None:
            out[rows[1:]] = out[rows[0]]
    if stale:
        computed += work.fill(stale)
    missed = sum(map(len, rows_of.values()))
    return Filled(len(keys) - missed, computed, len(todo) + len(stale) - computed)


class _Work:
    """The rows of one :func:`get_or_compute` call still to compute."""

    def __init__(
        self,
        namespace: CacheNamespace | None,
        keys: list[str | None],
        compute: Compute,
        out: np.ndarray,
        progress: Callable[[int], Any] | None,
    ):
        self.namespace, self.keys, self.compute, self.out, self.progress = namespace, keys, compute, out, progress

    def fill(self, todo: list[int]) -> int:
        """Fill ``out[todo]``; returns how many rows ``compute`` computed.

        With a namespace, each row is claimed just before ``compute`` takes
        it: rows that another process claimed are left to it and read once
        written, or computed here after one wait (so that waits stay
        bounded) if that process gives them up.
        """
        namespace, keys, out = self.namespace, self.keys, self.out
        bar = self.progress(len(todo)) if self.progress is not None else None
        held: dict[int, str] = {}
        computed = 0

        def advance(n: int) -> None:
            if bar is not None:
                bar.update(n)

        def claimed(rows: list[int], others: list[int] | None) -> Iterator[int]:
            for row in rows:
                key = keys[row]
                if namespace is None or key is None:
                    yield row
                    continue
                held[row] = key  # first: a Ctrl-C just after claim() still releases it
                if not namespace.claim(key):
                    del held[row]
                    if others is None:  # waited for once already: computed here, so waits stay bounded
                        yield row
                    else:
                        others.append(row)
                elif (vector := namespace.get(key, dim=out.shape[1])) is not None:
                    # Written by another process between our read and our claim.
                    namespace.release(held.pop(row))
                    out[row] = vector
                    advance(1)
                else:
                    yield row

        try:
            waited = False
            while todo:
                others: list[int] = []
                for rows, computed_keys, vectors in self.compute(claimed(todo, None if waited else others)):
                    out[rows] = vectors
                    computed += len(rows)
                    for row, key, vector in zip(rows, computed_keys, vectors, strict=True):
                        if key != keys[row]:
                            keys[row] = None
                        if namespace is not None:
                            namespace.put(key, vector)
                            if row in held:
                                namespace.release(held.pop(row))
                    advance(len(rows))
                todo = []
                if others:
                    assert namespace is not None  # for mypy: only claims defer rows
                    waited = True
                    vectors_of_others = namespace.wait([cast("str", keys[row]) for row in others], out.shape[1])
                    for row, vector in zip(others, vectors_of_others, strict=True):
                        if vector is None:  # its claim was given up: ours to compute
                            todo.append(row)
                        else:
                            out[row] = vector
                            advance(1)
        finally:
            if bar is not None:
                bar.close()
            for key in held.values():  # a failed batch: let other processes compute these
                assert namespace is not None  # for mypy: only claims are held
                namespace.release(key)
        return computed
