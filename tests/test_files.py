"""skorchlite.files when things go wrong: write_atomic failing midway (a full
disk, short writes, a failed rename or close, a missing folder, Ctrl-C), and
the failure paths of open_regular, read_limited and ContentMemo.

What a failed write_atomic must leave: the target as it was (or absent), no
``.tmp-*`` file, no open descriptor, and the original exception raised.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skorchlite import files
from skorchlite.files import (
    FileTooLargeError,
    NotRegularFileError,
    open_regular,
    read_limited,
    write_atomic,
)
from skorchlite.memo import ContentMemo

PROC_FD = Path("/proc/self/fd")
needs_proc = pytest.mark.skipif(not PROC_FD.is_dir(), reason="counts and names descriptors through /proc/self/fd")

PREVIOUS = b"the previous, complete content\n"
DATA = bytes(range(256)) * 64  # 16 KiB


def descriptors() -> set[str]:
    """The descriptors this process holds open (the listing's own among them, the same each time)."""
    return set(os.listdir(PROC_FD))


def path_of(fd: int | str) -> Path:
    return Path(os.readlink(PROC_FD / str(fd)))


@pytest.fixture(params=["replacing a file", "creating a file"])
def target(request, tmp_path) -> Path:
    """The file to write, holding PREVIOUS or absent, alone in its folder."""
    path = tmp_path / "folder" / "target.bin"
    path.parent.mkdir()
    if request.param == "replacing a file":
        path.write_bytes(PREVIOUS)
    return path


def assert_as_before(target: Path, previous: bytes | None) -> None:
    """``target`` holds ``previous`` (None: absent), and nothing else is in its folder."""
    listing = sorted(p.name for p in target.parent.iterdir())
    if previous is None:
        assert listing == [], listing
    else:
        assert listing == [target.name], listing
        assert target.read_bytes() == previous


def previous_of(target: Path) -> bytes | None:
    return target.read_bytes() if target.exists() else None


def failing_write(monkeypatch, error: BaseException, short_writes: int) -> list[tuple[Path, int]]:
    """``os.write`` writes half of what it is given ``short_writes`` times,
    then raises ``error``; returns the (file, bytes written) of each call."""
    real_write, calls = os.write, []

    def write(fd, data):
        if len(calls) == short_writes:
            calls.append((path_of(fd), 0))
            raise error
        written = real_write(fd, memoryview(data)[: max(1, len(data) // 2)])
        calls.append((path_of(fd), written))
        return written

    monkeypatch.setattr(os, "write", write)
    return calls


# ------------------------------------------------------------- write_atomic fails midway
@needs_proc
@pytest.mark.parametrize("short_writes", [0, 1, 3], ids=["at-once", "after-a-short-write", "after-3-short-writes"])
@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), OSError(errno.EIO, os.strerror(errno.EIO)), KeyboardInterrupt()],
    ids=["full-disk", "io-error", "ctrl-c"],
)
def test_a_write_failing_midway_keeps_the_previous_file(target, monkeypatch, error, short_writes):
    previous, before = previous_of(target), descriptors()
    calls = failing_write(monkeypatch, error, short_writes)
    with pytest.raises(type(error)) as raised:
        write_atomic(target, DATA)
    monkeypatch.undo()
    assert raised.value is error  # the original exception, not one raised while cleaning up
    assert len(calls) == short_writes + 1  # each short write was followed by another
    # Written to a temporary file beside the target (so that the rename is atomic), never to it.
    assert {path.parent for path, _ in calls} == {target.parent.resolve()}
    assert all(path.name.startswith(".tmp-") for path, _ in calls)
    assert_as_before(target, previous)
    assert descriptors() == before


@needs_proc
@pytest.mark.parametrize(
    "error", [OSError(errno.EROFS, os.strerror(errno.EROFS)), KeyboardInterrupt()], ids=["read-only", "ctrl-c"]
)
def test_a_failed_rename_keeps_the_previous_file(target, monkeypatch, error):
    previous, before = previous_of(target), descriptors()
    renamed = []

    def replace(src, dst):
        # What is renamed is complete and closed: no descriptor of ours names it.
        renamed.append((Path(src).read_bytes() == DATA, [fd for fd in descriptors() if _names(fd, src)]))
        raise error

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(type(error)) as raised:
        write_atomic(target, DATA)
    monkeypatch.undo()
    assert raised.value is error
    assert renamed == [(True, [])]
    assert_as_before(target, previous)
    assert descriptors() == before


def _names(fd: str, path) -> bool:
    try:
        return path_of(fd) == Path(path).resolve()
    except OSError:  # the listing's own descriptor, closed since
        return False


@needs_proc
def test_a_failed_close_keeps_the_previous_file(target, monkeypatch):
    """Network filesystems report a failed write when the file is closed."""
    previous, before = previous_of(target), descriptors()
    error = OSError(errno.EIO, os.strerror(errno.EIO))
    real_close, closed = os.close, []

    def close(fd):
        real_close(fd)
        closed.append(fd)
        raise error

    monkeypatch.setattr(os, "close", close)
    with pytest.raises(OSError) as raised:
        write_atomic(target, DATA)
    monkeypatch.undo()
    assert raised.value is error and len(closed) == 1
    assert_as_before(target, previous)
    assert descriptors() == before


@needs_proc
@pytest.mark.parametrize("step", ["close", "unlink"])
@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), KeyboardInterrupt()], ids=["full-disk", "ctrl-c"]
)
def test_an_error_while_cleaning_up_does_not_hide_the_first(target, monkeypatch, error, step):
    """Once a write failed, closing the file can fail too (a network
    filesystem reports the deferred write error), and so can removing it (a
    failing disk is remounted read-only). The first error is the one to
    report, and a Ctrl-C must stay a Ctrl-C: the cache turns an OSError into
    a warning and goes on."""
    previous, before = previous_of(target), descriptors()
    failing_write(monkeypatch, error, short_writes=1)
    real_close = os.close

    def close(fd):
        real_close(fd)  # closed, then the error reported (as Linux does)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def unlink(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(os, step, close if step == "close" else unlink)
    with pytest.raises(type(error)) as raised:
        write_atomic(target, DATA)
    monkeypatch.undo()
    assert raised.value is error
    assert descriptors() == before
    if step == "unlink":  # the temporary file could not be removed
        (stray,) = (p for p in target.parent.iterdir() if p != target)
        assert stray.name.startswith(".tmp-")
        stray.unlink()
    assert_as_before(target, previous)


@needs_proc
def test_a_missing_folder_is_an_error_that_creates_nothing(tmp_path):
    before = descriptors()
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "target.bin", DATA)
    assert list(tmp_path.iterdir()) == []
    assert descriptors() == before


@needs_proc
def test_a_target_that_is_a_folder_is_left_alone(tmp_path):
    folder = tmp_path / "target"
    folder.mkdir()
    (folder / "inside").write_bytes(PREVIOUS)
    before = descriptors()
    with pytest.raises(IsADirectoryError):
        write_atomic(folder, DATA)
    assert [p.name for p in tmp_path.iterdir()] == ["target"]
    assert [p.name for p in folder.iterdir()] == ["inside"] and (folder / "inside").read_bytes() == PREVIOUS
    assert descriptors() == before


@needs_proc
def test_data_that_is_not_bytes_is_refused_without_a_trace(target):
    previous, before = previous_of(target), descriptors()
    with pytest.raises(TypeError):
        write_atomic(target, "text, not bytes")
    assert_as_before(target, previous)
    assert descriptors() == before


# ------------------------------------------------------------- short writes then success
@needs_proc
@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=5000) | st.binary(min_size=1, max_size=64).map(lambda b: b * 300),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=12),
    existed=st.booleans(),
)
def test_any_sequence_of_short_writes_writes_exactly_the_data(data, sizes, existed):
    """``os.write`` may write less than asked (a signal, a nearly full disk);
    the next call is asked for the rest, from where it stopped."""
    real_write, calls = os.write, []

    def write(fd, chunk):
        written = real_write(fd, memoryview(chunk)[: sizes[len(calls) % len(sizes)]])
        calls.append((bytes(chunk), written))
        return written

    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        target = Path(folder, "target.bin")
        if existed:
            target.write_bytes(PREVIOUS)
        before = descriptors()
        patch.setattr(os, "write", write)
        write_atomic(target, data)
        patch.undo()
        assert target.read_bytes() == data
        assert [p.name for p in Path(folder).iterdir()] == ["target.bin"]
        assert descriptors() == before
    rest = data
    for asked, written in calls:
        assert asked == rest and written > 0
        rest = rest[written:]
    assert rest == b""


# ------------------------------------------------------------- open_regular refusals
def _raise(error: BaseException):
    raise error


def _alarm(signum, frame):
    raise TimeoutError("open_regular blocked")


@pytest.fixture
def within_5s():
    """A call that blocks (a FIFO waiting for a writer) fails instead of hanging the suite."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path / "loop"


def _five_bytes(tmp_path: Path) -> Path:
    (tmp_path / "five").write_bytes(b"12345")
    return tmp_path / "five"


@needs_proc
@pytest.mark.parametrize(
    "make, max_bytes, error, code, message",
    [
        (_fifo, None, NotRegularFileError, errno.EINVAL, "this is a FIFO"),
        (lambda tmp_path: Path("/dev/null"), None, NotRegularFileError, errno.EINVAL, "this is a character device"),
        (lambda tmp_path: tmp_path, None, IsADirectoryError, errno.EISDIR, "this is a directory"),
        (_five_bytes, 4, FileTooLargeError, errno.EFBIG, "the file holds 5 bytes, over the limit of 4 bytes"),
        (lambda tmp_path: tmp_path / "missing", None, FileNotFoundError, errno.ENOENT, "No such file"),
        (_loop, None, OSError, errno.ELOOP, "symbolic links"),
        (lambda tmp_path: f"{tmp_path}/a\0b", None, OSError, errno.EINVAL, "the path contains a NUL byte"),
    ],
    ids=["fifo", "device", "directory", "too-large", "missing", "symlink-loop", "nul-byte"],
)
def test_open_regular_refuses_with_the_path_and_closes_what_it_opened(
    tmp_path, within_5s, make, max_bytes, error, code, message
):
    path = make(tmp_path)
    before = descriptors()
    with pytest.raises(error, match=message) as raised:
        open_regular(path, max_bytes)
    assert raised.value.errno == code and os.fspath(raised.value.filename) == os.fspath(path)
    assert descriptors() == before


def test_open_regular_accepts_a_file_of_exactly_max_bytes(tmp_path):
    with open_regular(_five_bytes(tmp_path), max_bytes=5) as file:
        assert os.get_blocking(file.fileno()) and file.read() == b"12345"


@needs_proc
@pytest.mark.parametrize("where", ["fstat", "set_blocking", "fdopen"])
@pytest.mark.parametrize("error", [OSError(errno.EIO, "fails"), KeyboardInterrupt()], ids=["oserror", "ctrl-c"])
def test_open_regular_closes_the_descriptor_when_interrupted(tmp_path, monkeypatch, where, error):
    path = _five_bytes(tmp_path)
    before = descriptors()
    monkeypatch.setattr(os, where, lambda *args: _raise(error))
    with pytest.raises(type(error)) as raised:
        open_regular(path)
    monkeypatch.undo()
    assert raised.value is error
    assert descriptors() == before


# ------------------------------------------------------------- read_limited refusals
class Endless(io.RawIOBase):
    """Zeros without end, as /dev/zero or a FIFO that keeps writing; counts what it hands out."""

    def __init__(self):
        self.handed = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.handed > 64 << 20:
            raise AssertionError("read on and on: over 64 MiB of an endless stream")
        buffer[:] = bytes(len(buffer))
        self.handed += len(buffer)
        return len(buffer)


@pytest.mark.parametrize("max_bytes", [0, 1, 5 << 20])
def test_read_limited_stops_an_endless_stream_one_byte_past_the_limit(max_bytes):
    stream = Endless()
    with pytest.raises(FileTooLargeError, match=f"over the limit of {max_bytes} bytes") as raised:
        read_limited(stream, max_bytes)
    assert raised.value.errno == errno.EFBIG
    assert stream.handed == max_bytes + 1


def test_read_limited_refuses_a_file_that_grew_after_it_was_opened(tmp_path):
    path = _five_bytes(tmp_path)
    with open_regular(path, max_bytes=5) as file:  # the size is checked here
        with open(path, "ab") as writer:
            writer.write(b"6")
        with pytest.raises(FileTooLargeError, match="over the limit of 5 bytes"):
            read_limited(file, 5)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=40), max_bytes=st.integers(0, 45), chunk=st.integers(1, 9))
def test_read_limited_returns_all_or_refuses_reading_at_most_one_byte_more(data, max_bytes, chunk):
    file = io.BytesIO(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "_CHUNK", chunk)  # chunk boundaries everywhere
        if len(data) <= max_bytes:
            assert read_limited(file, max_bytes) == data
        else:
            with pytest.raises(FileTooLargeError):
                read_limited(file, max_bytes)
            assert file.tell() == max_bytes + 1
    assert read_limited(io.BytesIO(data)) == data


# ------------------------------------------------------------- ContentMemo misses
def _aged(path: Path, seconds: float) -> int:
    mtime = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(mtime, mtime))
    return mtime


def test_content_memo_forgets_a_file_that_can_still_change_unseen(tmp_path):
    """Within 2 s of its mtime a file can change again without its mtime
    moving (FAT's 2 s granularity, "racy git"): its digest is not kept."""
    path = _five_bytes(tmp_path)
    memo = ContentMemo(maxsize=4)
    with open_regular(path) as file:
        memo.put(file, "just written")  # mtime: now
        assert memo.get(file) is None
        mtime = _aged(path, 3600)
        memo.put(file, "at the edge", hashed_at=mtime + ContentMemo.RACY_NS)
        assert memo.get(file) is None
        memo.put(file, "old enough", hashed_at=mtime + ContentMemo.RACY_NS + 1)
        assert memo.get(file) == "old enough"


def test_content_memo_misses_a_file_replaced_with_the_same_size_and_mtime(tmp_path):
    path = _five_bytes(tmp_path)
    mtime = _aged(path, 3600)
    memo = ContentMemo(maxsize=4)
    with open_regular(path) as file:
        memo.put(file, "first")
        assert memo.get(file) == "first"
    (tmp_path / "new").write_bytes(b"54321")
    os.utime(tmp_path / "new", ns=(mtime, mtime))  # as cp -p would
    os.replace(tmp_path / "new", path)
    with open_regular(path) as file:
        assert memo.get(file) is None


def test_content_memo_evicts_the_oldest_entry_first(tmp_path):
    memo = ContentMemo(maxsize=2)
    paths = [tmp_path / name for name in "abc"]
    for path in paths:
        path.write_bytes(path.name.encode())
        _aged(path, 3600)
        with open_regular(path) as file:
            memo.put(file, path.name)
    digests = []
    for path in paths:
        with open_regular(path) as file:
            digests.append(memo.get(file))
    assert digests == [None, "b", "c"]
