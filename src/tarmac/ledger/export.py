"""Audit records written out for a SIEM: JSON lines or CSV, streamed from the catalog.

One record per line (``jsonl``) or per row (``csv``, with a header), with the fields a
collector needs to index them and to re-check the chain: ``seq``, ``time`` (ISO-8601 UTC to the
microsecond), ``actor``, ``action``, ``target``, ``details``, ``hash``, ``prev_hash``, ``mac``
and ``key_id``. In JSON lines ``details`` is a nested object; in CSV it is the canonical JSON
text exactly as hashed. Records are read a page at a time (``Catalog.iter_audit``), so a log of
millions of records is exported in constant memory.

``Ledger.export`` is the governed entry point (``read:audit``, recorded as ``audit.export``);
``write_records`` is the formatting alone.

Example::

    with open("audit.jsonl", "w") as fh:
        write_records(p.catalog.iter_audit(since_us=t0), fh, "jsonl").count
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from tarmac.catalog import AuditRecord
from tarmac.errors import UsageError, echo

FORMATS = ("jsonl", "csv")
COLUMNS = ("seq", "time", "actor", "action", "target", "details", "hash", "prev_hash", "mac",
           "key_id")
EXPORT_ACTION = "audit.export"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AuditExport:
    """What an export wrote: how many records, the first and last sequence numbers, the
    filters it was given, where it went (a file path, or a stream's name) and whether it went
    through (a stream that broke part-way, such as a closed pipe, is recorded as
    ``complete: false`` with the records written so far)."""

    count: int
    first_seq: int | None
    last_seq: int | None
    format: str
    since_us: int | None
    until_us: int | None
    actor: str | None
    action: str | None
    destination: str
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "count": self.count, "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "format": self.format, "since": iso_time(self.since_us),
                "until": iso_time(self.until_us), "actor": self.actor, "action": self.action,
                "destination": self.destination}


def iso_time(us: int | None) -> str | None:
    """Catalog microseconds as ISO-8601 UTC, exact to the microsecond (``...Z``)."""
    if us is None:
        return None
    when = _EPOCH + timedelta(microseconds=us)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_format(fmt: str) -> str:
    """``fmt`` if it is an export format, else a ``UsageError`` naming it."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {echo(str(fmt))!r}: expected one of {', '.join(FORMATS)}")
    return fmt


def row(rec: AuditRecord) -> dict[str, Any]:
    """One record as the JSON-lines export writes it, as a dict (``details`` nested when it
    is strict JSON, else its text: see ``write_records``)."""
    return {"seq": rec.seq, "time": iso_time(rec.time_us), "actor": rec.actor,
            "action": rec.action, "target": rec.target,
            "details": json.loads(rec.details) if _strict(rec.details) else rec.details,
            "hash": rec.hash, "prev_hash": rec.prev_hash, "mac": rec.mac, "key_id": rec.key_id}


def _strict(text: str) -> bool:
    """Whether ``text`` is strict JSON (no NaN or Infinity, which Python's json writes)."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _line(rec: AuditRecord, times: _Seconds) -> str:
    """One JSON line. ``details`` is embedded as the exact text that was hashed (so integers
    of any size stay exact) when it is strict JSON, else as a JSON string of that text."""
    details = orjson.Fragment(rec.details) if _strict(rec.details) else rec.details
    return orjson.dumps({
        "seq": rec.seq, "time": times.iso(rec.time_us), "actor": rec.actor,
        "action": rec.action, "target": rec.target, "details": details, "hash": rec.hash,
        "prev_hash": rec.prev_hash, "mac": rec.mac, "key_id": rec.key_id,
    }).decode("utf-8") + "\n"


class _Seconds:
    """``iso_time`` for records in time order: the date and time to the second are formatted
    once per second, not once per record (most records share their second with the last)."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._prefix = ""

    def iso(self, us: int) -> str:
        second, micro = divmod(us, 1_000_000)
        if second != self._second:
            when = _EPOCH + timedelta(seconds=second)
            self._second, self._prefix = second, when.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{micro:06d}Z"


@dataclass
class Tally:
    """How far a ``write_records`` got: records written, first and last sequence numbers."""

    count: int = 0
    first: int | None = None
    last: int | None = None

    def add(self, seq: int) -> None:
        self.count += 1
        self.last = seq
        if self.first is None:
            self.first = seq


def write_records(records: Iterable[AuditRecord], out: IO[str], fmt: str,
                  tally: Tally | None = None) -> Tally:
    """Write ``records`` to ``out`` as ``fmt``; returns (and keeps ``tally`` up to date with,
    so a caller knows how far a failed write got) the count and first/last sequence.

    Every JSON line is strict JSON: ``details`` is nested as the exact canonical text that was
    hashed, unless that text is not strict JSON (a NaN or an infinity in it, or an edit outside
    Tarmac), when it is a JSON string holding that text."""
    check_format(fmt)
    tally = tally if tally is not None else Tally()
    times = _Seconds()
    if fmt == "jsonl":
        for rec in records:
            out.write(_line(rec, times))
            tally.add(rec.seq)
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for rec in records:
            writer.writerow((rec.seq, times.iso(rec.time_us), rec.actor, rec.action, rec.target,
                             rec.details, rec.hash, rec.prev_hash, rec.mac or "",
                             rec.key_id or ""))
            tally.add(rec.seq)
    return tally


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[tuple[IO[str], Path]]:
    """A temporary file beside ``path`` (mode 0600), yielded with its path; removed if the
    block raises, so nothing partial is ever left at ``path`` (the caller renames it there).
    A folder that is missing or not writable is a ``UsageError`` naming ``path``."""
    folder = path.parent
    if path.is_dir():
        raise UsageError(f"-o {echo(str(path), 300)!r}: is a folder; expected a file path")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        raise UsageError(f"-o {echo(str(path), 300)!r}: cannot write there "
                         f"({exc.strerror or exc})") from None
    staged = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh, staged
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


__all__ = ["COLUMNS", "EXPORT_ACTION", "FORMATS", "AuditExport", "Tally", "check_format",
           "iso_time", "row", "staged_file", "write_records"]
