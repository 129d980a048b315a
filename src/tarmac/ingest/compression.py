"""Compressed text files: gzip, zstd and bz2, recognised by their first bytes.

The file connector reads ``data.csv.gz`` or ``events.jsonl.zst`` as the text inside, streamed
through Arrow's decompressors (never the whole file in memory for CSV). The content decides,
not the name: a ``.csv`` that is really gzip is decompressed, a ``.csv.gz`` that is plain text
is read as it is. Archives Tarmac does not unpack (zip, xz, 7z) and binary files fail with a
message that says what the file is, instead of loading garbage or nothing.

Example::

    codec = sniff(head)            # 'gzip' | 'zstd' | 'bz2' | None
    stream = decompressed(raw, codec)
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

#: compressions read, by the extension that names them
EXTENSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
#: archives and compressions that are not read, by magic bytes: what to tell the user
_UNREAD = ((b"PK\x03\x04", "a zip archive"), (b"\xfd7zXZ\x00", "an xz file"),
           (b"7z\xbc\xaf\x27\x1c", "a 7z archive"), (b"\x04\x22\x4d\x18", "an lz4 frame"))
HEAD = 16  # bytes enough to recognise every format above


def strip_extension(path: str) -> str:
    """``path`` without a compression extension (``a.csv.gz`` -> ``a.csv``), for the format."""
    lower = path.lower()
    for ext in EXTENSIONS:
        if lower.endswith(ext):
            return path[: -len(ext)]
    return path


def by_extension(path: str) -> str | None:
    """The compression a path's extension names, or None."""
    lower = path.lower()
    return next((codec for ext, codec in EXTENSIONS.items() if lower.endswith(ext)), None)


def sniff(head: bytes) -> str | None:
    """The compression of a file from its first bytes: ``gzip``, ``zstd``, ``bz2`` or None."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bz2"
    return None


def unreadable(head: bytes) -> str | None:
    """What a file is when it is no text Tarmac can read (``a zip archive``, ``binary data``),
    else None."""
    for magic, what in _UNREAD:
        if head.startswith(magic):
            return what
    if b"\x00" in head:  # UTF-16 text has NULs too; it is not a supported encoding either
        return "binary data (NUL bytes)"
    return None


def decompressed(raw: Any, codec: str | None) -> Any:
    """A stream of the text in ``raw`` (an Arrow input stream), decompressed by ``codec``."""
    if codec is None:
        return raw
    return pa.CompressedInputStream(raw, codec)
