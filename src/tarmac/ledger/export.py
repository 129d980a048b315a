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
    """One record as the JSON-lines export writes it (``details`` nested)."""
    return {"seq": rec.seq, "time": iso_time(rec.time_us), "actor": rec.actor,
            "action": rec.action, "target": rec.target, "details": json.loads(rec.details),
            "hash": rec.hash, "prev_hash": rec.prev_hash, "mac": rec.mac, "key_id": rec.key_id}


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
    so a caller knows how far a failed write got) the count and first/last sequence."""
    check_format(fmt)
    tally = tally if tally is not None else Tally()
    if fmt == "jsonl":
        encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        for rec in records:
            out.write(encode(row(rec)) + "\n")
            tally.add(rec.seq)
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for rec in records:
            writer.writerow((rec.seq, iso_time(rec.time_us), rec.actor, rec.action, rec.target,
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
