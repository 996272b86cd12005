"""The embedding cache: content-addressed vectors on disk.

One cache serves every estimator, clone and process: estimators hold only
the cache *location* (``True``, a path or ``False``), so ``sklearn.clone``,
joblib workers and separate runs all read and write the same files.

Layout::

    <root>/
        <namespace>/               sha256 of the model fingerprint, 32 hex chars
            fingerprint.json       what produced these vectors, for humans
            <key[:2]>/<key>.emb    one embedding per image

A *namespace* holds the vectors of one model: its name is a digest of a
JSON fingerprint (backbone, weights hash, layer, pooling, preprocessing,
dtype, embedding format), so changing any of them starts a fresh namespace
instead of serving stale vectors. A *key* is the 64-hex-digit content digest
of an image; it is validated strictly, since it becomes a file name.

Entry format (never pickle, so a cache file cannot execute code)::

    b"SKLEMB1\\n"               8-byte magic
    uint32 little-endian       dim
    blake2b(payload)           16-byte digest
    payload                    dim float32 little-endian values

Writes go to a ``.tmp-*`` file in the entry's directory and are then renamed
onto the entry with :func:`os.replace`, which is atomic: a reader sees either
no entry or a complete one, even when several processes write the same key.
A read that finds a damaged entry (bad magic, length or checksum) deletes it
and reports a miss, so bad data is never returned. An intact entry of
another width than the ``dim`` asked for (another model's, written by hand
or by a bug) is a miss too: it is moved aside and deleted, with a
:class:`CacheWarning` naming it, and the caller computes the vector again; a
good entry that a writer put in its place meanwhile is put back.

The cache only saves time, so it never costs a result: a cache that cannot be
written (read-only, full disk, a file where its folder should be, no
permission) or read is skipped, with one :class:`CacheWarning` per namespace
and process naming the folder and the fix; vectors are then computed and not
stored, and nothing half-written is left behind.

Processes that embed the same new images at once (``n_jobs``, Dask workers)
share the work through *claims*, which :meth:`CacheNamespace.get_or_compute`
takes, waits for and releases for its caller (which only says how to
compute a row): before computing an entry a process creates
``<key>.claim`` (``O_EXCL``) and holds an exclusive ``flock`` on it until
it releases the claim; the file names its host, pid and process start time for
humans. A process that finds the claim taken computes other images and then
waits for the entry, logging what it waits for after :data:`WAIT_NOTICE`
seconds. A claim counts as abandoned, and is taken over, when it is
of this host and nobody holds its lock (the kernel drops the lock of a
process that died however it died, and a recycled pid holds no lock), when
it is empty, garbled or unreadable (after :data:`_CLAIM_GRACE` seconds, the
time a claim takes to be written), or when it is older than
:data:`CLAIM_TIMEOUT` (the only test for another host's claims, whose locks
a network filesystem may not share). A claim's age is the larger of what its
timestamp says and how long this process has seen that claim file, by its
own monotonic clock: a timestamp in the future (another host's clock) never
makes a wait longer than :data:`CLAIM_TIMEOUT`, nor does a claim that keeps
being replaced, since a wait ends after :data:`CLAIM_TIMEOUT` in all and the
waiting process computes what is still missing. Where the filesystem offers no locks,
a claim of this host is abandoned when its pid is gone or now belongs to a
process started at another time. Claims this process still holds when it
exits (Ctrl-C included) are removed; Ctrl-C is held back for the few
instructions that create or remove a claim and record it.
"""

from __future__ import annotations

# The "X as X" imports: public constants, importable from here as before and, as before, not in __all__.
from .claims import CLAIM_TIMEOUT as CLAIM_TIMEOUT
from .entries import MAX_DIM as MAX_DIM
from .namespace import WAIT_NOTICE as WAIT_NOTICE
from .namespace import CacheNamespace, CacheWarning
from .sharing import Filled, get_or_compute
from .store import EmbeddingCache, default_cache_dir, resolve_cache

__all__ = [
    "CacheNamespace",
    "CacheWarning",
    "EmbeddingCache",
    "Filled",
    "default_cache_dir",
    "get_or_compute",
    "resolve_cache",
]
