"""The online store's contract: the ``OnlineStore`` base every backend implements, the
view-name rule shared by all backends, and ``open_online_store`` (a URL to its backend, looked
up in ``config.BACKENDS``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

from tarmac.config import open_backend
from tarmac.errors import UsageError

ReadResult = list[list[tuple[int, bytes] | None]]


class OnlineStore(ABC):
    """Latest feature values per (view, entity key), with a checkpoint per view."""

    url: str  # redacted URL, for messages

    @abstractmethod
    def write_batch(self, view: str, keys: list[str], event_us: list[int],
                    payloads: list[bytes], *, checkpoint: str | None = None) -> int:
        """Upsert in one atomic step: a record is replaced only if the incoming event time is >=
        the stored one (so replaying a batch, or a late older row, never regresses a value).
        `checkpoint` (an opaque JSON string of the caller) is stored for `view` in the SAME atomic
        step: after a crash, either the batch and its checkpoint are both there or neither.
        Returns the number of records written (replaced or new)."""

    @abstractmethod
    def read(self, requests: list[tuple[str, list[str]]]) -> ReadResult:
        """For each (view, keys): per key (event_us, payload) or None if absent, in the order
        asked. One round trip for Redis, one query per view for SQLite (the serving hot path)."""

    @abstractmethod
    def checkpoint(self, view: str) -> str | None:
        """The checkpoint stored with the last batch of `view`, or None."""

    @abstractmethod
    def clear(self, view: str) -> None:
        """Drop all records and the checkpoint of a view."""

    @abstractmethod
    def count(self, view: str) -> int:
        """How many records `view` holds."""

    @abstractmethod
    def views(self) -> list[str]:
        """Views that have records or a checkpoint, sorted."""

    def present(self) -> bool:
        """Whether the store's data is there (a SQLite file that exists and is the one this
        store opened); a server's store is always present when it answers."""
        return True

    @abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailableError if the store cannot be reached."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _check_batch(self, view: str, keys: list[str], event_us: list[int],
                     payloads: list[bytes]) -> None:
        """Refuse a malformed batch before anything is written."""
        _check_view(view, self.url)
        if not len(keys) == len(event_us) == len(payloads):
            raise UsageError(
                f"online store {self.url}: batch for view {view!r} has {len(keys)} keys, "
                f"{len(event_us)} event times and {len(payloads)} payloads; nothing was written",
                hint="pass one event time and one payload per key",
            )


def _check_view(view: str, url: str) -> None:
    """View names become part of Redis keys: no ':' (it separates the parts) and no leading '_'
    (reserved for the store's own keys), on every backend so a project can switch backends."""
    if not isinstance(view, str) or not view or ":" in view or view[0] == "_":
        raise UsageError(
            f"online store {url}: bad view name {view!r}",
            hint="a view name is non-empty, has no ':' and does not start with '_'",
        )


def open_online_store(url: str, *, namespace: str, root: Path,
                      create: bool = True) -> OnlineStore:
    """The online store behind `url`: ``sqlite:///relative/or/absolute.db`` (relative to `root`;
    the parent folder is created) or ``redis://host:port/db``. ``create=False`` (readers): a
    SQLite file that does not exist is created by the first write, never by a read.
    `namespace` (the project name) prefixes Redis keys so two projects can share one Redis:
    ``tarmac:{namespace}:{view}:{key}``. A SQLite file belongs to one project, so the
    namespace is not stored there."""
    store: OnlineStore = open_backend("online_store", url, namespace=namespace, root=root,
                                      create=create)
    return store
