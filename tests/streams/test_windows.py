"""Windowed aggregates: the incremental state equals the batch query, which equals the definition.

The property test plays a stream sink: events arrive in random order (late within the allowed
lateness, out of order, exact copies and conflicting copies of earlier events), the ones the
sink would quarantine as too late are dropped, the rest are committed in random micro-batches
and applied. After every batch the values the state handed out (kept the way the online store
keeps them: the newest evaluation time wins) equal the batch query's latest row per entity,
and at the end every row of the batch query equals a brute-force evaluation of the documented
definition at that time, and between evaluation times the definition does not change. A
restart (a new state rebuilt from the committed rows of its horizon) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tarmac.streams.windows import (
    AS_OF,
    Aggregate,
    Window,
    WindowSpec,
    WindowState,
    batch_sql,
    default_tile,
    window_text,
)

S = 1_000_000
TS = pa.timestamp("us", tz="UTC")
TILE = 60
LATENESS = 120
SPEC = WindowSpec(
    keys=("user",), timestamp="ts", primary_key=("id",), tile_seconds=TILE,
    windows=(Window(60), Window(180), Window(120, tumbling=True)),
    aggregates=(Aggregate("count", None, "count", "BIGINT"),
                Aggregate("sum", "amount", "amount_sum", "DOUBLE"),
                Aggregate("mean", "amount", "amount_mean", "DOUBLE"),
                Aggregate("min", "amount", "amount_min", "DOUBLE"),
                Aggregate("max", "amount", "amount_max", "DOUBLE"),
                Aggregate("last", "page", "page_last", "VARCHAR"),
                Aggregate("distinct", "page", "page_distinct", "BIGINT"),
                Aggregate("sum", "qty", "qty_sum", "BIGINT")))
NAMES = [name for name, _a, _w in SPEC.features]
AMOUNTS = [None, 1.0, 2.5, -3.0, 10.0, 0.25]  # dyadic: sums are exact in any order


@dataclass(frozen=True)
class Event:
    id: int
    user: int
    t: int  # seconds
    amount: float | None
    page: str | None
    qty: int | None


def table(events: list[Event]) -> pa.Table:
    return pa.table({
        "id": pa.array([e.id for e in events], pa.int64()),
        "user": pa.array([e.user for e in events], pa.int64()),
        "ts": pa.array([e.t * S for e in events], pa.int64()).cast(TS),
        "amount": pa.array([e.amount for e in events], pa.float64()),
        "page": pa.array([e.page for e in events], pa.string()),
        "qty": pa.array([e.qty for e in events], pa.int64()),
    })


@st.composite
def streams(draw: Any) -> tuple[list[list[Event]], int]:
    """Micro-batches of events as a sink commits them, and a batch index to restart at."""
    n = draw(st.integers(1, 40))
    events: list[Event] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["new", "new", "new", "copy", "conflict", "moved"]))
        if kind != "new" and events:
            old = draw(st.sampled_from(events))
            if kind == "copy":
                events.append(old)
                continue
            user = draw(st.integers(1, 3)) if kind == "moved" else old.user
            events.append(Event(old.id, user, old.t, draw(st.sampled_from(AMOUNTS)),
                                draw(st.sampled_from([None, "a", "b", "c"])), old.qty))
            continue
        events.append(Event(draw(st.integers(0, 15)), draw(st.integers(1, 3)),
                            draw(st.integers(0, 900)), draw(st.sampled_from(AMOUNTS)),
                            draw(st.sampled_from([None, "a", "b", "c"])),
                            draw(st.sampled_from([None, 1, 2, 7]))))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=6))))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True) if a < b]
    # the sink: an event older than the newest committed one minus the lateness is quarantined
    committed: list[list[Event]] = []
    newest: int | None = None
    for batch in batches:
        kept = [e for e in batch if newest is None or e.t >= newest - LATENESS]
        if kept:
            committed.append(kept)
            newest = max([newest or 0, *(e.t for e in kept)])
    return committed, draw(st.integers(0, len(committed)))


def batch_rows(events: list[Event]) -> list[dict[str, Any]]:
    lake = table(events)  # noqa: F841 - read by DuckDB below
    return duckdb.sql(batch_sql(SPEC, "lake") + " ORDER BY user, ts").to_arrow_table().to_pylist()


def latest(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in rows:  # ordered by time within each user
        out[r["user"]] = r
    return out


def values_of(row: dict[str, Any]) -> dict[str, Any]:
    return {n: row[n] for n in NAMES}


# -- the definition, by brute force ------------------------------------------------------------


def counted(events: list[Event]) -> list[Event]:
    """Events that count: per (id, user, time) the copy with the smallest DuckDB hash of the
    aggregated values."""
    t = table(events)  # noqa: F841
    hashes = duckdb.sql("SELECT hash(amount, page, qty) AS h FROM t").to_arrow_table()
    best: dict[tuple[int, int, int], tuple[int, Event]] = {}
    for e, h in zip(events, hashes.column("h").to_pylist(), strict=True):
        key = (e.id, e.user, e.t)
        if key not in best or h < best[key][0]:
            best[key] = (h, e)
    return [e for _h, e in best.values()]


def start(w: Window, t: int) -> int:
    if w.tumbling:
        return t // w.seconds * w.seconds
    return (t // TILE - w.seconds // TILE + 1) * TILE


def definition(events: list[Event], user: int, at: int) -> dict[str, Any]:
    """Every feature of ``user`` at ``at`` seconds, straight from the module's docstring."""
    out: dict[str, Any] = {}
    for name, a, w in SPEC.features:
        ev = [e for e in events if e.user == user and start(w, at) <= e.t <= at]
        vals = [getattr(e, a.column) for e in ev] if a.column else []
        present = [v for v in vals if v is not None]
        if a.fn == "count":
            out[name] = len(ev)
        elif a.fn == "sum":
            out[name] = sum(present) if present else 0
        elif a.fn == "mean":
            out[name] = sum(present) / len(present) if present else None
        elif a.fn == "min":
            out[name] = min(present, default=None)
        elif a.fn == "max":
            out[name] = max(present, default=None)
        elif a.fn == "last":
            pairs = [(e.t, e.page) for e in ev if e.page is not None]
            out[name] = max(pairs)[1] if pairs else None
        else:
            out[name] = len(set(present))
    return out


# -- the property ------------------------------------------------------------------------------


def run(committed: list[list[Event]], restart_at: int | None) -> Iterator[
        tuple[list[Event], dict[int, tuple[int, dict[str, Any]]], WindowState]]:
    """Apply the batches; yield (committed so far, online view, state) after each."""
    lake: list[Event] = []
    state = WindowState(SPEC, lateness_seconds=LATENESS)
    online: dict[int, tuple[int, dict[str, Any]]] = {}

    def fetch(lo: int, hi: int) -> pa.Table:
        return table([e for e in lake if lo <= e.t * S < hi])

    for i, batch in enumerate(committed):
        if i == restart_at and state.clock_us is not None:
            since = state.horizon_start_us()
            state.close()
            state = WindowState(SPEC, lateness_seconds=LATENESS)
            state.apply(table([e for e in lake if e.t * S >= since]), fetch, values=False)
        lake.extend(batch)
        update = state.apply(table(batch), fetch)
        for row in update.values.to_pylist():
            stored = online.get(row["user"])
            if stored is None or row[AS_OF] >= stored[0]:  # the online store's rule
                online[row["user"]] = (row[AS_OF], values_of(row))
        yield lake, online, state
    state.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_streaming_equals_batch_equals_the_definition(case: tuple[list[list[Event]], int]
                                                      ) -> None:
    committed, restart_at = case
    lake: list[Event] = []
    for lake, online, state in run(committed, restart_at):
        want = latest(batch_rows(lake))
        got = {u: (as_of, vals) for u, (as_of, vals) in online.items()}
        assert got == {u: (int(r["ts"].timestamp() * S), values_of(r)) for u, r in want.items()}
        # the state holds what it has not forgotten, as handed out; what it forgot is empty
        snap = {r["user"]: (r[AS_OF], values_of(r)) for r in state.snapshot().to_pylist()}
        assert snap == {u: v for u, v in got.items() if u in snap}
        for u in set(got) - set(snap):
            assert not any(got[u][1][n] for n in NAMES), got[u]
    if not lake:
        return
    rows = batch_rows(lake)
    events = counted(lake)
    clock = max(e.t for e in lake)
    for r in rows:
        at = int(r["ts"].timestamp())
        assert at <= clock
        assert values_of(r) == definition(events, r["user"], at), (r["user"], at)
    # nothing changes between evaluation times: the definition at any second equals the
    # latest evaluation row at or before it
    for user in {e.user for e in events}:
        times = [(int(r["ts"].timestamp()), r) for r in rows if r["user"] == user]
        for at in range(min(t for t, _ in times), clock + 1, 7):
            before = [r for t, r in times if t <= at][-1]
            assert values_of(before) == definition(events, user, at), (user, at)


def test_restart_equals_never_stopping() -> None:
    events = [Event(i, i % 3, 30 * i + (i % 4) * 7, AMOUNTS[i % 6], "abc"[i % 3], i % 5)
              for i in range(40)]
    batches = [events[i:i + 7] for i in range(0, 40, 7)]
    straight = [dict(online) for _lake, online, _s in run(batches, None)]
    restarted = [dict(online) for _lake, online, _s in run(batches, 3)]
    assert straight == restarted
    assert straight[-1]  # something was computed


def test_duplicates_late_rows_and_counts() -> None:
    state = WindowState(SPEC, lateness_seconds=LATENESS)
    first = [Event(1, 1, 100, 1.0, "a", 1), Event(2, 1, 110, 2.0, "b", 2),
             Event(1, 1, 100, 1.0, "a", 1)]  # an exact copy in the same batch
    update = state.apply(table(first))
    assert (update.rows, update.applied, update.duplicates, update.replaced) == (3, 2, 1, 0)
    assert sorted(update.event_us.tolist()) == [100 * S, 110 * S]
    assert update.values.to_pylist()[0]["count_3m"] == 2
    again = state.apply(table([Event(2, 1, 110, 2.0, "b", 2)]))  # a copy in a later batch
    assert (again.applied, again.duplicates) == (0, 1)
    assert again.values.num_rows == 0  # nothing changed, nothing to write
    far = state.apply(table([Event(3, 2, 10_000, 1.0, "a", 1)]))
    late = state.apply(table([Event(4, 2, 10, 1.0, "a", 1)]))
    assert (late.applied, late.too_late) == (0, 1)  # 10 s is long before 10,000 s - lateness
    # the clock moved past every tile of user 1: its windows emptied, at the boundary times
    user1 = {r["user"]: r for r in far.values.to_pylist()}[1]
    assert user1["count_3m"] == 0 and user1["amount_sum_3m"] == 0
    assert user1["amount_mean_3m"] is None and user1["page_distinct_3m"] == 0
    assert user1[AS_OF] == (1 + 3) * TILE * S  # tile 1 (60-120 s) left the 3m window at 240 s
    skipped = state.apply(pa.table({
        "id": pa.array([5, 6], pa.int64()), "user": pa.array([None, 1], pa.int64()),
        "ts": pa.array([10_001 * S, None], pa.int64()).cast(TS),
        "amount": pa.array([1.0, 1.0]), "page": ["a", "a"], "qty": pa.array([1, 1])}))
    assert (skipped.skipped, skipped.applied, skipped.clock_us) == (2, 0, 10_001 * S)
    state.close()


def test_a_conflicting_copy_needs_fetch() -> None:
    state = WindowState(SPEC, lateness_seconds=LATENESS)
    a, b = Event(1, 1, 100, 1.0, "a", 1), Event(1, 1, 100, 2.0, "b", 1)
    state.apply(table([a]))
    winner = counted([a, b])[0]
    if winner == b:
        with pytest.raises(ValueError, match="needs fetch"):
            state.apply(table([b]))
    else:
        assert state.apply(table([b])).duplicates == 1
    state.close()


def test_the_state_forgets_old_tiles() -> None:
    state = WindowState(SPEC, lateness_seconds=LATENESS)
    for i in range(20):  # a minute per batch, 20 users
        state.apply(table([Event(i * 100 + u, u, i * 60 + u, 1.0, "a", 1) for u in range(20)]))
    # the largest window (3 tiles) + lateness (2 tiles) + 1, and the current tile
    assert state.cells <= 20 * (3 + 2 + 2)
    assert state.entities == 20
    state.close()


def test_window_names_tiles_and_bad_specs() -> None:
    assert [window_text(s) for s in (30, 60, 300, 5400, 3600, 86_400, 90_000)] == \
        ["30s", "1m", "5m", "90m", "1h", "1d", "25h"]
    assert Window(86_400, tumbling=True).name == "1d_tumbling"
    assert default_tile([300, 3600, 86_400]) == 300
    assert WindowSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="not a positive multiple of the tile"):
        WindowSpec(("u",), "ts", (Aggregate("count", None, "count", "BIGINT"),),
                   (Window(90),), tile_seconds=60)
    with pytest.raises(ValueError, match="tiles"):
        WindowSpec(("u",), "ts", (Aggregate("count", None, "count", "BIGINT"),),
                   (Window(86_400 * 30),), tile_seconds=60)
    with pytest.raises(ValueError, match="repeat"):
        WindowSpec(("u",), "ts", (Aggregate("count", None, "n", "BIGINT"),
                                  Aggregate("sum", "x", "n", "DOUBLE")),
                   (Window(60),), tile_seconds=60)
    with pytest.raises(ValueError, match="unknown aggregate"):
        Aggregate("median", "x", "x_median", "DOUBLE")
    with pytest.raises(ValueError, match="lack column"):
        WindowState(SPEC).apply(pa.table({"user": [1]}))
