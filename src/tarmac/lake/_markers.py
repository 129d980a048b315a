"""Delta application-transaction markers: what makes a lake commit idempotent.

A marker ``(app_id, version)`` rides in a Delta commit; the table then remembers, per
application id, the newest version committed. A writer that retries after a crash asks the table
first and skips a commit it already made. One commit may carry several markers (a stream sink
commits several partitions' offsets at once, one marker per partition), and then it counts as
made only if every marker is already at or past its version. If only some are, another commit
covered part of the same work: writing would duplicate that part and skipping would lose the
rest, so the write is refused (``WriteConflictError``) and nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tarmac.errors import UsageError, WriteConflictError

if TYPE_CHECKING:
    from deltalake import DeltaTable, Transaction

Txn = tuple[str, int]  # (application id, version): Delta's idempotent-write marker
Txns = Txn | Sequence[Txn] | None  # one marker, several (one per partition), or none


def markers(txn: Txns) -> tuple[Txn, ...]:
    """``txn`` as a tuple of markers: one ``(app_id, version)``, a sequence of them, or None.

    Every app id must be a non-empty string, every version an int >= 0, and an app id may
    appear once (one commit moves each application to one version)."""
    if txn is None:
        return ()
    if isinstance(txn, tuple) and len(txn) == 2 and isinstance(txn[0], str):
        items: list[object] = [txn]
    elif isinstance(txn, str | bytes) or not isinstance(txn, Sequence):
        raise UsageError(f"invalid transaction marker {txn!r}: expected (app_id, version) or a "
                         "list of them")
    else:
        items = list(txn)
    out: list[Txn] = []
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)
                and item[0] and isinstance(item[1], int) and not isinstance(item[1], bool)
                and item[1] >= 0):
            raise UsageError(f"invalid transaction marker {item!r}: expected (app_id, version) "
                             "with a non-empty app id and a version >= 0")
        out.append((item[0], item[1]))
    apps = [a for a, _ in out]
    repeated = sorted({a for a in apps if apps.count(a) > 1})
    if repeated:
        raise UsageError(f"transaction marker app id(s) given twice in one commit: "
                         f"{', '.join(repeated)}")
    return tuple(out)


def done(dt: DeltaTable | None, txns: tuple[Txn, ...]) -> list[bool]:
    """Per marker: is the table's recorded version for its app id at or past the marker's?"""
    if dt is None:
        return [False] * len(txns)
    out = []
    for app_id, version in txns:
        have = dt.transaction_version(app_id)
        out.append(have is not None and have >= version)
    return out


def check(name: str, dt: DeltaTable | None, txns: tuple[Txn, ...]) -> bool:
    """True if the commit these markers mark is in the table already (skip it), False if none
    of them is (make it); refuses a commit only some of whose markers are applied."""
    if not txns:
        return False
    flags = done(dt, txns)
    if all(flags):
        return True
    if any(flags):
        applied = [f"{a}@{v}" for (a, v), f in zip(txns, flags, strict=True) if f]
        waiting = [f"{a}@{v}" for (a, v), f in zip(txns, flags, strict=True) if not f]
        raise WriteConflictError(
            f"table '{name}' already holds commits at or past marker(s) {', '.join(applied)} "
            f"but not {', '.join(waiting)}: this commit overlaps work another commit made, so "
            "it was refused (writing would duplicate that part, skipping would lose the rest); "
            "nothing was written",
            hint="give one commit only markers that advance together (one per partition, each "
                 "past its last committed version)")
    return False


def transactions(txns: tuple[Txn, ...]) -> list[Transaction] | None:
    """The markers as delta-rs ``Transaction`` objects for a commit (None for none)."""
    if not txns:
        return None
    from deltalake import Transaction

    now = int(time.time() * 1000)
    return [Transaction(app_id, version, now) for app_id, version in txns]
