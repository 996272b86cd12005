"""Claims: which process computes an entry, so that processes share new work.

A claim is ``<key>.claim``, created with ``O_EXCL`` and held under an
exclusive ``flock`` until released; see :mod:`skorchlite.cache` for when one
counts as abandoned.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

try:
    import fcntl
except ImportError:  # Windows: no flock, claims are judged by age alone
    fcntl = None  # type: ignore[assignment]

_OWNER = re.compile(r"(\S+) (\d+)(?: (\S+))?")  # host, pid, start time (older claims lack it)

#: Seconds after which a claim counts as abandoned whoever holds it. A claim
#: lives from shortly before its image is decoded until its entry is written,
#: a few batches; this bounds the wait when a process on another host dies.
#: A claim's age is the larger of what its timestamp says and how long this
#: process has seen it (its own monotonic clock, from the first look at that
#: claim file and content): a clock of another host set ahead, or a
#: timestamp in the future, never stretches a wait beyond this.
CLAIM_TIMEOUT = 600.0
#: A claim file is created empty, then locked and filled: an empty one this
#: young may still be being written; an older one is abandoned.
_CLAIM_GRACE = 2.0


# Claims this process holds: path -> its open, locked file. One lock guards
# every claim file operation of the process, so a thread never judges a
# claim another thread is creating.
class _Held(NamedTuple):
    fd: int
    inode: tuple[int, int]
    pid: int
    thread: int


class Holder(NamedTuple):
    """Who holds a claim: its owner as the claim file names it, its age in
    seconds, and whether the calling thread holds it."""

    owner: str
    age: float
    mine: bool


_held: dict[Path, _Held] = {}
_claims_lock = threading.Lock()
# Claims of others this process has looked at: path -> (inode, content,
# monotonic time at which that claim was, as judged by _age, zero seconds old).
_seen: dict[Path, tuple[tuple[int, int], str, float]] = {}


def take(path: Path) -> bool:
    """Claim the entry whose claim file is ``path`` for the calling thread.

    Parameters
    ----------
    path : Path
        ``<key>.claim`` beside the entry; its folder must exist.

    Returns
    -------
    bool
        ``True`` if the calling thread holds the claim now (or held it
        already); ``False`` if another live process or thread does.

    Raises
    ------
    OSError
        When the claim file cannot be created or written.
    """
    with _interrupts_deferred(), _claims_lock:
        # Three tries: a claim may be taken over or vanish between looks.
        for _ in range(3):
            holder = _holder(path, take_over=True)
            if holder is not None:
                return holder.mine
            held = _create_claim(path)
            if held is not None:
                _held[path] = held
                return True
    return False


def release(path: Path) -> None:
    """Remove the claim at ``path`` if this process holds it; leave others alone.

    Parameters
    ----------
    path : Path
    """
    with _interrupts_deferred(), _claims_lock:
        held = _held.get(path)
        if held is not None and held.pid == os.getpid():
            _drop(path, held)


def holder_of(path: Path) -> Holder | None:
    """Who holds the claim at ``path``, without taking over an abandoned one.

    Parameters
    ----------
    path : Path

    Returns
    -------
    Holder or None
        ``None`` when no one does: no claim, or an abandoned one.
    """
    with _claims_lock:
        return _holder(path, take_over=False)


def forget(paths: Iterable[Path]) -> None:
    """Stop timing the claims at ``paths``: the caller waits for them no more.

    Parameters
    ----------
    paths : iterable of Path
    """
    with _claims_lock:
        for path in paths:
            _seen.pop(path, None)


def _age(path: Path, info: os.stat_result, owner: str) -> float:
    """The age of the claim at ``path``, open with ``info`` and content
    ``owner``: the larger of what its timestamp says (by the clock of the
    host that wrote it) and how long this process has seen that inode with
    that content (by its own monotonic clock). Never less than this process
    judged it before, so a wall clock that jumps back cannot revive a claim.
    Call with :data:`_claims_lock` held."""
    now, inode = time.monotonic(), _inode(info)
    first = _seen.get(path)
    seen = now - first[2] if first is not None and first[:2] == (inode, owner) else 0.0
    age = max(time.time() - info.st_mtime, seen)
    _seen[path] = (inode, owner, now - age)
    return age


def _inode(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _same_file(path: Path, inode: tuple[int, int]) -> bool:
    try:
        return _inode(os.stat(path)) == inode
    except OSError:
        return False


def _start_time(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), or ``"-"`` where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "-"
    return stat.rpartition(")")[2].split()[19]  # field 22; the name before ")" may hold spaces


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()} {_start_time(os.getpid())}"


def _create_claim(path: Path) -> _Held | None:
    """Create the claim at ``path``, locked and naming this process; ``None``
    if it exists by now. Call with :data:`_claims_lock` held."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileExistsError:
        return None
    try:
        if fcntl is not None:
            # Blocks only while another process looks at this new claim.
            with contextlib.suppress(OSError):  # a filesystem without locks
                fcntl.flock(fd, fcntl.LOCK_EX)
        inode = _inode(os.fstat(fd))
        if not _same_file(path, inode):  # judged abandoned and removed before we locked it
            os.close(fd)
            return None
        owner = (_owner() + "\n").encode()
        if os.write(fd, owner) != len(owner):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    except BaseException:
        if _same_file(path, _inode(os.fstat(fd))):
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)
        raise
    return _Held(fd, inode, os.getpid(), threading.get_ident())


def _drop(path: Path, held: _Held) -> None:
    """Remove a claim of this process. Call with :data:`_claims_lock` held."""
    del _held[path]
    if _same_file(path, held.inode):  # not if taken over after CLAIM_TIMEOUT
        with contextlib.suppress(OSError):
            os.unlink(path)
    os.close(held.fd)


def _holder(path: Path, take_over: bool) -> Holder | None:
    """Who holds the claim at ``path``; ``None`` when no one does: no claim, or
    an abandoned one (removed when ``take_over``). Call with
    :data:`_claims_lock` held."""
    try:
        inode = _inode(os.stat(path))
    except FileNotFoundError:
        _seen.pop(path, None)
        return None
    except OSError:
        return None  # cannot be judged, so not waited for
    for held in _held.values():
        # Checked before opening: closing any descriptor of a file drops the
        # process's POSIX locks on it, which NFS uses to emulate flock.
        if held.inode == inode:
            return Holder("this process", 0.0, held.thread == threading.get_ident())
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            _abandon(path, inode, take_over)  # unreadable: no owner to wait for
            return None
    try:
        info = os.fstat(fd)
        owner = os.read(fd, 256).decode(errors="replace").strip()
        age = _age(path, info, owner)
        if _inode(info) == inode and age <= CLAIM_TIMEOUT and _alive(fd, owner, age):
            return Holder(owner or "a process writing its claim", age, False)
        if _inode(info) != inode:
            return Holder(owner, age, False)  # replaced meanwhile: look again later
        _abandon(path, inode, take_over)  # before closing, so still under our lock
        if take_over:
            _seen.pop(path, None)
        return None
    finally:
        os.close(fd)


def _abandon(path: Path, inode: tuple[int, int], take_over: bool) -> None:
    if take_over and _same_file(path, inode):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _alive(fd: int, owner: str, age: float) -> bool:
    """Whether the claim open as ``fd`` has a live holder."""
    locked = _locked_by_another(fd)
    if locked:
        return True
    match = _OWNER.fullmatch(owner)
    if match is None:  # empty or garbled: being written, or left by a process that failed to
        return age < _CLAIM_GRACE
    host, pid, started = match.groups()
    if host != socket.gethostname():
        return True  # its lock may not reach this host: CLAIM_TIMEOUT decides
    if locked is False:
        return False  # the kernel released its holder's lock: that process is gone
    return _process_alive(int(pid), started)


def _locked_by_another(fd: int) -> bool | None:
    """Whether another open file holds the claim's lock (``False``: this call
    took it); ``None`` where the filesystem has no locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    return False


def _process_alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` of this host, started at ``started``, still
    runs: for filesystems without locks."""
    if pid == os.getpid():
        return False  # this process's own claims are in _held: that pid was an earlier process's
    # Signal 0 probes a pid on POSIX only (on Windows it would send CTRL_C_EVENT).
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        pass
    # A pid reused by a later process (after a container restart, say).
    now = _start_time(pid)
    return started in (None, "-") or now == "-" or now == started


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while a claim file and its record change together.

    Python raises ``KeyboardInterrupt`` in the main thread only, at any
    instruction; this one defers it to the end of the block.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, caught[0])
        elif caught and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


@atexit.register
def _release_all() -> None:
    """Remove the claims this process still holds (after Ctrl-C, say)."""
    with _claims_lock:
        for path, held in list(_held.items()):
            if held.pid == os.getpid():
                _drop(path, held)


def _forget_claims_in_child() -> None:
    # A forked child shares the parent's locks through the descriptors it
    # inherits: closing them lets the parent's claims die with the parent.
    for held in _held.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _held.clear()
    _claims_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_claims_lock.acquire, after_in_parent=_claims_lock.release, after_in_child=_forget_claims_in_child
    )
