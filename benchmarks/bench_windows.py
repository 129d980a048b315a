"""Streaming features: windowed aggregates applied incrementally, against recomputing from scratch.

Spec: 10k entities, three sliding windows (5m, 1h, 1d; tile 5m), five aggregates (count, sum,
mean, max, last), a primary key. Events are ordered by event time with jitter (out of order
within a minute), about 1% exact duplicates. The event clock runs at ``--rate`` events per second
of event time (default 5,000/s).

(1) engine throughput: ``WindowState.apply`` over micro-batches of 1,000 and 10,000 events
    (a warm state: the first ``warm`` events go in first), events/s and ms per batch
    (median, p99), tiles held at the end;
(2) reference, same run and same batches: DuckDB recomputing the touched entities' values at
    the clock from the raw events it keeps (everything within the largest window: no tiles,
    a rescan of the window per batch), ms per batch;
(3) end to end in a project (SQLite online store): for ``--seconds`` of wall time, every
    200 ms a micro-batch of rate/5 events stamped with the wall time they were made is
    written to the lake (the sink's commit) and applied (``StreamingFeatures.apply``, online
    write included): event-to-online latency p50/p99 (the figure ``ApplyStats.latencies``
    gives the runner), and the share of the 200 ms tick the work took.

    python benchmarks/bench_windows.py [--quick] [--json] [--events N] [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

from tarmac.streams.windows import (  # noqa: E402
    Aggregate,
    Window,
    WindowSpec,
    WindowState,
)

ENTITIES = 10_000
T0_US = 1_767_225_600_000_000  # 2026-01-01
TS = pa.timestamp("us", tz="UTC")
PAGES = np.array([f"/page/{i}" for i in range(40)])
SPEC = WindowSpec(
    keys=("user_id",), timestamp="ts", primary_key=("event_id",), tile_seconds=300,
    windows=(Window(300), Window(3600), Window(86_400)),
    aggregates=(Aggregate("count", None, "count", "BIGINT"),
                Aggregate("sum", "amount", "amount_sum", "DOUBLE"),
                Aggregate("mean", "amount", "amount_mean", "DOUBLE"),
                Aggregate("max", "amount", "amount_max", "DOUBLE"),
                Aggregate("last", "page", "page_last", "VARCHAR")))
LATENESS_S = 120

DEFINITIONS = """
from tarmac.features import Entity, StreamFeatureView, agg
user = Entity("user", join_keys=["user_id"])
live = StreamFeatureView(
    name="live", entities=[user], source="events", ttl="2d",
    aggregates=[agg.count(), agg.sum("amount"), agg.mean("amount"), agg.max("amount"),
                agg.last("page")],
    windows=["5m", "1h", "1d"])
"""
SOURCES = """
sources:
  events: {type: stream, topic: events, primary_key: event_id, timestamp: ts,
           allowed_lateness: 2m, columns: {event_id: int, user_id: int, ts: timestamp,
                                           amount: float, page: str}}
"""


def events(n: int, rate: float, rng: np.random.Generator, *, start_id: int = 0,
           t0_us: int = T0_US, jitter_s: int = 60) -> pa.Table:
    """``n`` events at ``rate`` per second of event time from ``t0_us``: a fifth jittered up
    to ``jitter_s`` back (late, out of order), ~1% exact copies of an earlier event."""
    ids = np.arange(start_id, start_id + n, dtype=np.int64)
    t = t0_us + (np.arange(n) / rate * 1e6).astype(np.int64)
    if jitter_s:
        t -= rng.integers(0, jitter_s * 1_000_000, n) * (rng.random(n) < 0.2)
    users = rng.integers(0, ENTITIES, n)
    amount = np.round(rng.gamma(2.0, 20.0, n), 2)
    page = PAGES[rng.integers(0, len(PAGES), n)]
    dup = np.flatnonzero(rng.random(n) < 0.01)
    src = np.maximum(dup - rng.integers(1, 50, len(dup)), 0)
    ids[dup], t[dup], users[dup], amount[dup], page[dup] = (ids[src], t[src], users[src],
                                                             amount[src], page[src])
    return pa.table({"event_id": ids, "user_id": users.astype(np.int64),
                     "ts": pa.array(t, pa.int64()).cast(TS), "amount": amount, "page": page})


def batches(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


class Reference:
    """Recompute from scratch: keep the raw (deduplicated) events of the largest window in
    DuckDB and, per batch, aggregate the touched entities' windows from them."""

    def __init__(self) -> None:
        self.con = duckdb.connect()
        self.con.execute("CREATE TABLE ev (event_id BIGINT, user_id BIGINT, t BIGINT, "
                         "amount DOUBLE, page VARCHAR)")
        self.clock = 0

    def apply(self, batch: pa.Table) -> pa.Table:
        con = self.con
        con.register("b", batch)
        con.execute("INSERT INTO ev SELECT DISTINCT event_id, user_id, epoch_us(ts), amount, "
                    "page FROM b WHERE (event_id, epoch_us(ts)) NOT IN (SELECT (event_id, t) "
                    "FROM ev WHERE t >= (SELECT min(epoch_us(ts)) FROM b))")
        self.clock = max(self.clock, con.execute("SELECT max(epoch_us(ts)) FROM b")
                         .fetchall()[0][0])
        day, hour, five = (self.clock - w * 1_000_000 for w in (86_400, 3_600, 300))
        out = con.sql(
            "SELECT user_id, " + ", ".join(
                f"count(*) FILTER (WHERE t > {lo}) AS c{i}, sum(amount) FILTER (WHERE t > {lo}) "
                f"AS s{i}, avg(amount) FILTER (WHERE t > {lo}) AS m{i}, max(amount) FILTER "
                f"(WHERE t > {lo}) AS x{i}, arg_max(page, t) FILTER (WHERE t > {lo}) AS l{i}"
                for i, lo in enumerate((five, hour, day)))
            + f" FROM ev WHERE t > {day} AND user_id IN (SELECT user_id FROM b) GROUP BY ALL"
        ).to_arrow_table()
        con.unregister("b")
        con.execute(f"DELETE FROM ev WHERE t <= {day - LATENESS_S * 1_000_000}")
        return out


def bench_engine(res: c.Result, n: int, warm: int, rate: float) -> None:
    rng = np.random.default_rng(7)
    warm_rows = events(warm, rate, rng)
    timed_rows = events(n, rate, rng, start_id=warm, t0_us=T0_US + int(warm / rate * 1e6))
    for size in (1_000, 10_000):
        state = WindowState(SPEC, lateness_seconds=LATENESS_S)
        ref = Reference()
        for b in batches(warm_rows, 200_000):
            state.apply(b, values=False)
            ref.apply(b)
        mine: list[float] = []
        theirs: list[float] = []
        for b in batches(timed_rows, size):
            t = time.perf_counter()
            state.apply(b)
            mine.append(time.perf_counter() - t)
            t = time.perf_counter()
            ref.apply(b)
            theirs.append(time.perf_counter() - t)
        total, ref_total = sum(mine), sum(theirs)
        res.figure(f"apply, batches of {size:,}: throughput", round(timed_rows.num_rows / total),
                   "events/s", f"median {c.median(mine) * 1000:.1f} ms, p99 "
                   f"{np.percentile(mine, 99) * 1000:.1f} ms per batch; {state.cells:,} tiles "
                   f"held for {state.entities:,} entities")
        raw = ref.con.execute("SELECT count(*) FROM ev").fetchall()[0][0]
        res.figure(f"reference (recompute from raw events), batches of {size:,}",
                   round(timed_rows.num_rows / ref_total), "events/s",
                   f"median {c.median(theirs) * 1000:.1f} ms per batch over {raw:,} raw events "
                   f"kept (a full 1d window at {rate:,.0f}/s would be "
                   f"{int(rate * 86_400):,}; the tiles stay <= {ENTITIES * 290:,})")
        per_k = c.median(mine) * 1000 * 1_000 / size
        res.figure(f"apply cost per 1k events (batches of {size:,})", round(per_k, 1), "ms",
                   f"reference {c.median(theirs) * 1000 * 1_000 / size:.1f} ms; "
                   f"ratio {c.median(mine) / c.median(theirs):.2f}x")
        state.close()
        ref.con.close()


def bench_end_to_end(res: c.Result, seconds: float, rate: float) -> None:
    import tarmac
    from tarmac.project import scaffold

    root = c.BENCH_DATA / "windows"
    shutil.rmtree(root, ignore_errors=True)
    scaffold(root, name="benchwindows")
    (root / "tarmac.yaml").write_text((root / "tarmac.yaml").read_text() + SOURCES)
    (root / "definitions.py").write_text(DEFINITIONS)
    p = tarmac.open(root)
    try:
        p.features.apply()
        live = p.features.streaming
        live.start("events")
        rng = np.random.default_rng(11)
        per_tick = int(rate / 5)
        lat: list[np.ndarray] = []
        busy: list[float] = []
        applied = 0
        next_id = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            tick = time.perf_counter()
            now = int(time.time() * 1_000_000)
            batch = events(per_tick, rate, rng, start_id=next_id, t0_us=now - 200_000,
                           jitter_s=0)
            next_id += per_tick
            p.lake.write("events", batch)  # the sink's commit
            stats = live.apply("events", batch)
            lat.append(stats.latencies())
            applied += stats.applied
            spent = time.perf_counter() - tick
            busy.append(spent)
            time.sleep(max(0.0, 0.2 - spent))
        all_lat = np.concatenate(lat)
        p50, p99 = np.percentile(all_lat, 50), np.percentile(all_lat, 99)
        res.figure("end to end: event -> online latency", round(float(p99), 3), "s p99",
                   f"p50 {p50:.3f} s over {applied:,} events at {rate:,.0f}/s, {ENTITIES:,} "
                   "entities, 3 windows (includes the event's own wait for its 200 ms batch "
                   "and the lake commit)")
        res.figure("end to end: work per 200 ms tick", round(c.median(busy) * 1000, 1), "ms",
                   f"p99 {np.percentile(busy, 99) * 1000:.0f} ms (lake commit + apply + "
                   "online write)")
        res.goal("event -> online p99", round(float(p99), 3), "s", "<= 1 s", p99 <= 1.0)
    finally:
        p.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, < 20 s")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rows", "--events", dest="events", type=int, default=None,
                    help="timed events in (1) (default 200,000; 30,000 with --quick)")
    ap.add_argument("--rate", type=float, default=5_000.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=None,
                    help="wall time of (3) (default 20; 4 with --quick)")
    args = ap.parse_args()
    n = args.events or (30_000 if args.quick else 200_000)
    warm = 100_000 if args.quick else 3_000_000  # 20 s / 10 min of event time
    seconds = args.seconds or (4.0 if args.quick else 20.0)
    res = c.Result("windows", events=n, warm=warm, rate=args.rate, entities=ENTITIES,
                   windows="5m,1h,1d", aggregates="count,sum,mean,max,last")
    c.log(f"engine: {warm:,} warm events, then {n:,} timed")
    bench_engine(res, n, warm, args.rate)
    c.log(f"end to end: {seconds:.0f} s at {args.rate:,.0f} events/s")
    bench_end_to_end(res, seconds, args.rate)
    res.emit(args.json)


if __name__ == "__main__":
    main()
