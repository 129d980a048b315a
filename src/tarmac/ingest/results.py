"""What ingestion returns: one ``LoadResult`` per stream loaded (in an ``IngestResults`` list),
and the ``LoadProgress`` reports a progress bar receives while a stream loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tarmac.errors import SourceError

__all__ = ["IngestResults", "LoadProgress", "LoadResult"]


@dataclass
class LoadProgress:
    """Where a stream's load is, for progress bars."""

    source: str
    stream: str
    phase: str  # reading | deduplicating | committing | done | failed
    rows_read: int
    bytes_read: int


@dataclass
class LoadResult:
    """What one load of one stream did. ``read == loaded + quarantined + duplicates``."""

    source: str
    stream: str
    table: str
    status: str  # succeeded | unchanged (a full refresh of the same rows) | failed | skipped
    run_id: str | None = None
    load_id: str | None = None
    mode: str = ""
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duplicates: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    files: int = 0
    version: int | None = None
    cursor_before: Any = None
    cursor_after: Any = None
    drift: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # staged loads this run finished
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IngestResults(list[LoadResult]):
    """The results of one ``ingest`` call, one per stream (failed ones included)."""

    @property
    def failed(self) -> list[LoadResult]:
        return [r for r in self if r.status == "failed"]

    def raise_for_errors(self) -> None:
        """Raise ``SourceError`` naming every failed source (for scripts that must stop)."""
        if self.failed:
            raise SourceError("; ".join(f"{r.source}: {r.error}" for r in self.failed))
