"""What the catalog hands out: plain frozen dataclasses, a ``Page`` and opaque cursors."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from tarmac.errors import UsageError

T = TypeVar("T")


def now_us() -> int:
    """Now, in integer microseconds since the epoch (the catalog's time unit)."""
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def to_datetime(us: int | None) -> datetime | None:
    """Catalog microseconds -> an aware UTC datetime."""
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list call; pass ``next_cursor`` back to get the next one."""

    items: list[T]
    next_cursor: str | None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]


def all_items(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a paginated list call: ``all_items(lambda c: cat.list_runs(cursor=c))``."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if not (cursor := page.next_cursor):
            return


def encode_cursor(*values: Any) -> str:
    """An opaque, URL-safe cursor from the last row's sort key."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The sort key inside a cursor; a malformed cursor is a ``UsageError``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError
        return values
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"invalid page cursor {cursor!r}: pass back a next_cursor value") from None


@dataclass(frozen=True)
class Column:
    """One column of a dataset as the catalog knows it."""

    name: str
    type: str
    nullable: bool = True
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A lake table's catalog entry: where it is, who owns it, its size and latest version."""

    name: str
    uri: str
    owner: str
    version: int
    rows: int
    bytes: int
    files: int
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    tags: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    last_run_id: str | None = None
    last_actor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["updated_at"] = self.updated_at.isoformat()
        d["tags"] = list(self.tags)
        d["columns"] = [{**asdict(c), "tags": list(c.tags)} for c in self.columns]
        return d


@dataclass(frozen=True)
class DatasetVersion:
    """A dataset at one version: the unit lineage speaks of (``customers@3``)."""

    dataset: str
    version: int | None

    def __str__(self) -> str:
        return self.dataset if self.version is None else f"{self.dataset}@{self.version}"


@dataclass(frozen=True)
class Run:
    """One execution of a job, with what it read and wrote."""

    id: str
    job: str
    status: str
    actor: str
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    params: dict[str, Any]
    host: str
    pid: int
    inputs: tuple[DatasetVersion, ...] = field(default=())
    outputs: tuple[DatasetVersion, ...] = field(default=())

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job": self.job,
            "status": self.status,
            "actor": self.actor,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration_s": self.duration_s,
            "error": self.error,
            "params": self.params,
            "inputs": [str(i) for i in self.inputs],
            "outputs": [str(o) for o in self.outputs],
        }


@dataclass(frozen=True)
class AuditRecord:
    """One link of the tamper-evident audit chain."""

    seq: int
    time_us: int
    actor: str
    action: str
    target: str
    details: str  # canonical JSON, exactly as hashed
    prev_hash: str
    hash: str
    mac: str | None = None  # HMAC-SHA256 of ``hash`` with the audit key; None: unkeyed
    key_id: str | None = None  # which audit key made ``mac``

    @property
    def time(self) -> datetime:
        return to_datetime(self.time_us)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": json.loads(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "mac": self.mac,
            "key_id": self.key_id,
        }
