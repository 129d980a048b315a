"""Write-ahead segment files: naming, framing, reading back, and who owns them.

A segment is an append-only file of frames. A frame is an 8-byte header, the payload's length
and its CRC-32 (both unsigned 32-bit little-endian), then the payload. A crash in the middle of
a ``write`` leaves at most one torn frame at the end of the newest segment; reading stops at the
first frame whose header or CRC does not check out (or whose length is 0: a power loss can
leave a tail of zeros, whose CRC would match), and recovery truncates the file there.

Files live in one folder (``<project>/.tarmac/predictions/`` by default). Each process writing
the log is a *family*: ``<host>-<pid>-<random>.lock``, which the process holds an exclusive
``flock`` on for as long as it runs, and its segments ``<family>-<seq>.wal``. The kernel drops
the lock when the process dies, however it dies (SIGKILL included), so "I can lock this family"
means "its writer is gone, its segments are mine to recover": no pid guessing, no clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct("<II")
MAX_PAYLOAD = 64 * 1024 * 1024  # a header claiming more is a torn or foreign frame
SUFFIX, LOCK_SUFFIX = ".wal", ".lock"
_SEGMENT = re.compile(r"^(?P<family>[A-Za-z0-9_.]+-\d+-[0-9a-f]+)-(?P<seq>\d{8})\.wal$")


def frame(payload: bytes) -> bytes:
    """One payload as a frame: length, CRC-32, bytes."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Frames:
    """The whole frames found in a byte range: their payloads, where the last whole frame
    ends (relative to the range start), and whether bytes after it did not form a frame."""

    payloads: list[bytes]
    end: int
    torn: bool


def parse(data: bytes | memoryview) -> Frames:
    """Split ``data`` into frames, stopping at the first torn or corrupt one."""
    view = memoryview(data)
    payloads: list[bytes] = []
    pos, size, hsize = 0, len(view), HEADER.size
    crc32, unpack = zlib.crc32, HEADER.unpack_from
    while pos + hsize <= size:
        length, crc = unpack(view, pos)
        start, stop = pos + hsize, pos + hsize + length
        if length == 0 or length > MAX_PAYLOAD or stop > size:  # zeros: a power-loss tail
            break
        payload = view[start:stop]
        if crc32(payload) != crc:
            break
        payloads.append(payload.tobytes())
        pos = stop
    return Frames(payloads, pos, pos != size)


def read_frames(path: Path, start: int = 0, stop: int | None = None) -> Frames:
    """The frames of a segment file from byte ``start`` (to ``stop``, or its end)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read() if stop is None else fh.read(stop - start)
    return parse(data)


def new_family() -> str:
    """A fresh family name for this process: host, pid and 32 random bits, so two servers on
    one project (or one host reusing a pid) never share one."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def segment_name(family: str, seq: int) -> str:
    return f"{family}-{seq:08d}{SUFFIX}"


def segment_id(path: Path) -> str:
    """A segment's id (its file name without the suffix): the key of its Delta marker."""
    return path.name.removesuffix(SUFFIX)


def app_id(segment: str) -> str:
    """The application id of the Delta transaction marker that records how many of a
    segment's records the ``predictions`` table holds."""
    return f"predictions:{segment}"


def families(directory: Path) -> dict[str, list[Path]]:
    """Every family with a lock file or a segment in ``directory``, with its segments in order."""
    found: dict[str, list[Path]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.endswith(LOCK_SUFFIX):
                found.setdefault(entry.name.removesuffix(LOCK_SUFFIX), [])
                continue
            m = _SEGMENT.match(entry.name)
            if m:
                found.setdefault(m.group("family"), []).append(Path(entry.path))
    for segs in found.values():
        segs.sort()
    return found


class FamilyLock:
    """The exclusive ``flock`` on a family's lock file: held by its writer while it runs, taken
    by a recoverer once the writer is gone."""

    def __init__(self, directory: Path, family: str) -> None:
        self.path = directory / f"{family}{LOCK_SUFFIX}"
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another live process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        # the file may have been unlinked (by a recoverer cleaning up) between our open and
        # our flock: a lock on a name nobody can find again guards nothing
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self, *, remove: bool) -> None:
        """Drop the lock; with ``remove`` delete the lock file first (no segments are left)."""
        if self.fd is None:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def sync_directory(directory: Path) -> None:
    """fsync a folder so a file just created (or removed) in it survives a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_files(directory: Path) -> Iterator[Path]:
    """All segment files in ``directory`` (any family), oldest sequence first per family."""
    for segs in families(directory).values():
        yield from segs
