"""Feature store: training sets vs a hand-written DuckDB ASOF join, materialization, online reads.

(1) training set: ``p.features.training_set(frame, [10 features], timestamp="ts").to_arrow()``
    for entity frames of E and 10*E rows vs the reference: one DuckDB ``ASOF LEFT JOIN`` of the
    frame (registered as Arrow) onto ``read_parquet`` of the lake table's current files, ttl
    applied with a CASE on the event time, no tie handling and no ordering (median of runs,
    interleaved). Checked: one row per entity row, in order; rows whose matched (entity, event
    time) is a correction pair carry the later-created value; every other row equals the
    reference's.
(2) materialization (full) of E entities from an R/5-row and a 2R/5-row table, each in a child
    process: seconds and peak RSS (flat in the table's size is the goal)
(3) online reads in process: p50/p99 of ``p.features.online(view, entities)`` for 1 and 100
    entities x 10 features, SQLite (the project default) and Redis (db 15, its own namespace)
(4) HTTP: ``tarmac serve`` driven by ``benchmarks/_http_load.py``, when both exist

Data (numpy, seeded): E entities (95% have history); R feature rows of 10 features (4 int64,
5 float64, 1 string) over the 90 days before today (UTC), event and created timestamps; 1% of
the rows are corrections: same (entity, event time) as an earlier row, created later, and
``i0`` + 1,000,000 (so a resolved tie is recognisable). View ttl 30 days.

    python benchmarks/bench_features.py [--rows R] [--entities E] [--quick] [--json]
        [--skip training,materialize,online,redis,http] [--repeat N] [--calls N]
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

DAY_US = 86_400_000_000
SPAN_DAYS = 90
TTL_DAYS = 30
HISTORY = 0.95  # share of entities with feature rows
CORRECTIONS = 0.01
MARK = 1_000_000  # added to i0 of a correction
INTS = ["i0", "i1", "i2", "i3"]
FLOATS = ["f0", "f1", "f2", "f3", "f4"]
STRING = "seg"
FEATURES = [*INTS, *FLOATS, STRING]
SEGMENTS = np.array([f"segment_{i:02d}" for i in range(50)])
VIEW = "user_feats"  # over TABLE (R rows): the training set
TABLE = "user_events"
MAT = [("mat_small", "events_small"), ("mat_large", "events_large")]  # (view, table)
ONLINE_VIEW = MAT[0][0]
REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_PROJECT = "bench_features_redis"  # the Redis namespace; only its keys are touched
CASES = ["training", "materialize", "online", "redis", "http"]

DEFINITIONS = '''from tarmac.features import *

user = Entity("user", join_keys=["user_id"])
FEATURES = ([Feature(n, Int64) for n in {ints!r}] + [Feature(n, Float64) for n in {floats!r}]
            + [Feature({string!r}, String)])
'''
VIEW_DEF = ('{var} = FeatureView(name={name!r}, entities=[user], source={table!r}, '
            'timestamp="event_ts", created="created_ts", ttl="{ttl}d", features=FEATURES)\n')


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = c.parser(__doc__.splitlines()[0], default_rows=5_000_000, quick_rows=100_000)
    ap.add_argument("--entities", type=int,
                    help="entities (default 100,000; 5,000 with --quick); entity frames have "
                         "this many and 10x as many rows")
    ap.add_argument("--repeat", type=int, help="timed runs per training set (default 3; 1 quick)")
    ap.add_argument("--calls", type=int,
                    help="timed online calls per case (default 2,000; 500 with --quick)")
    ap.add_argument("--timeout", type=float,
                    help="seconds a training-set child may take before it is stopped (default "
                         "120; 10 with --quick)")
    ap.add_argument("--skip", default="", help=f"comma-separated cases to skip: {','.join(CASES)}")
    args = ap.parse_args()
    rows = c.rows_for(args)
    entities = args.entities or (5_000 if args.quick else 100_000)
    repeat = args.repeat or (1 if args.quick else 3)
    timeout = args.timeout or (10 if args.quick else 120)
    calls = args.calls or (500 if args.quick else 2000)
    skip = {s for s in args.skip.split(",") if s}
    frames = [entities, 10 * entities]
    mat_rows = [max(1000, rows // 5), max(2000, 2 * rows // 5)]
    res = c.Result("features", rows=rows, entities=entities, frames="/".join(map(str, frames)),
                   mat_rows="/".join(map(str, mat_rows)), **c.env_info(),
                   load_1m=round(os.getloadavg()[0], 1))
    end_us = (time.time_ns() // 1000) // DAY_US * DAY_US  # today 00:00 UTC
    start_us = end_us - SPAN_DAYS * DAY_US
    with c.workdir("features") as work:
        project = work / "proj"
        data = setup_project(res, project, rows, entities, mat_rows, start_us)
        import tarmac

        p = tarmac.open(project)
        try:
            if "training" not in skip:
                c.guarded(res, "training", lambda: bench_training(
                    res, work, p, data, frames, repeat, start_us, timeout, full=not args.quick))
            if "materialize" not in skip:
                c.guarded(res, "materialize", lambda: bench_materialize(res, project, data,
                                                                      mat_rows))
            if not {"online", "http"} <= skip and not p.features.online_store.count(ONLINE_VIEW):
                p.features.materialize([ONLINE_VIEW], full=True)  # materialize was skipped
            if "online" not in skip:
                c.guarded(res, "online sqlite", lambda: bench_online(res, p, "sqlite", data,
                                                                   calls))
        finally:
            p.close()
        if "redis" not in skip:
            c.guarded(res, "redis", lambda: bench_redis(res, work, data, mat_rows[0], start_us,
                                                      calls))
        if "http" not in skip:
            c.guarded(res, "http", lambda: bench_http(res, project, data, quick=args.quick))
    res.figure("machine load (1-min average) at the end", round(os.getloadavg()[0], 1), "",
               f"{os.cpu_count()} CPUs; other processes' load inflates wall times, so CPU "
               "seconds are given too")
    res.emit(args.json)



# -- data ----------------------------------------------------------------------------------------


@dataclass
class Generated:
    table: pa.Table
    corrections: pa.Table  # user_id, event_ts, i0 (the later-created value)
    users: int  # distinct entities with rows
    accidental_ties: int  # (entity, event time) pairs tied by chance, not by a correction


def gen_features(n: int, entities: int, *, seed: int, start_us: int) -> Generated:
    """``n`` feature rows over ``entities`` (HISTORY of them have rows) and SPAN_DAYS days; the
    last CORRECTIONS share repeats (entity, event time) of earlier rows, created later."""
    rng = np.random.default_rng(seed)
    known = rng.choice(entities, max(1, int(entities * HISTORY)), replace=False).astype(np.int64)
    n_corr = int(n * CORRECTIONS)
    base = n - n_corr
    uid = known[rng.integers(0, len(known), base)]
    ev = start_us + rng.integers(0, SPAN_DAYS * DAY_US, base)
    cr = ev + rng.integers(0, 3_600_000_000, base)
    pick = rng.choice(base, n_corr, replace=False)
    uid = np.concatenate([uid, uid[pick]])
    ev = np.concatenate([ev, ev[pick]])
    cr = np.concatenate([cr, cr[pick] + rng.integers(1_000_000, DAY_US, n_corr)])
    ints = rng.integers(0, 1000, (len(INTS), n))
    ints[0, base:] += MARK
    floats = rng.random((len(FLOATS), n))
    seg = SEGMENTS[rng.integers(0, len(SEGMENTS), n)]
    ts = pa.timestamp("us", tz="UTC")
    cols: dict[str, Any] = {"user_id": pa.array(uid), "event_ts": pa.array(ev, ts),
                            "created_ts": pa.array(cr, ts)}
    cols.update({name: pa.array(ints[i]) for i, name in enumerate(INTS)})
    cols.update({name: pa.array(floats[i]) for i, name in enumerate(FLOATS)})
    cols[STRING] = pa.array(seg)
    key = uid * (SPAN_DAYS * DAY_US) + (ev - start_us)
    pairs = len(key) - len(np.unique(key))
    corrections = pa.table({"user_id": pa.array(uid[base:]), "event_ts": pa.array(ev[base:], ts),
                            "i0": pa.array(ints[0, base:])})
    return Generated(pa.table(cols), corrections, int(len(np.unique(uid))), pairs - n_corr)


def gen_frame(n: int, entities: int, *, seed: int, start_us: int) -> pa.Table:
    """Entity frame: random entities (some without history), random times in the 90 days."""
    rng = np.random.default_rng(seed)
    return pa.table({"user_id": pa.array(rng.integers(0, entities, n)),
                     "ts": pa.array(start_us + rng.integers(0, SPAN_DAYS * DAY_US, n),
                                    pa.timestamp("us", tz="UTC"))})


@dataclass
class Data:
    entities: int
    main: Generated
    mat_users: list[int]
    known: np.ndarray  # entity ids with rows in the online view's table


def setup_project(res: c.Result, project: Path, rows: int, entities: int, mat_rows: list[int],
                  start_us: int) -> Data:
    import tarmac

    c.make_project(project)
    p = tarmac.open(project)
    try:
        c.log(f"setup: generating {rows:,} feature rows over {entities:,} entities")
        main = gen_features(rows, entities, seed=1, start_us=start_us)
        t, _ = c.timed(lambda: p.lake.write(TABLE, main.table.to_reader(max_chunksize=1_000_000)))
        files = len(p.lake.table(TABLE).file_uris())
        res.figure("setup: lake write of the feature rows", t, "s",
                   f"{rows:,} rows, {files} files, {main.users:,} entities with rows, "
                   f"{main.corrections.num_rows:,} correction pairs, {main.accidental_ties} "
                   "accidental ties")
        mat_users, known = [], np.array([], dtype=np.int64)
        for (_view, table), n in zip(MAT, mat_rows, strict=True):
            g = gen_features(n, entities, seed=2, start_us=start_us)
            p.lake.write(table, g.table.to_reader(max_chunksize=1_000_000))
            mat_users.append(g.users)
            if not len(known):
                known = np.unique(g.table["user_id"].to_numpy())
        views = [(VIEW, TABLE), *MAT]
        write_definitions(project, views)
        t, plan = c.timed(lambda: p.features.apply())
        c.log(f"setup: applied {len(plan.changes)} changes in {t:.2f} s")
    finally:
        p.close()
    return Data(entities, main, mat_users, known)


def write_definitions(project: Path, views: list[tuple[str, str]]) -> None:
    text = DEFINITIONS.format(ints=INTS, floats=FLOATS, string=STRING)
    for view, table in views:
        text += VIEW_DEF.format(var=view, name=view, table=table, ttl=TTL_DAYS)
    (project / "definitions.py").write_text(text)


# -- (1) training sets ---------------------------------------------------------------------------


def reference_sql(files: list[str]) -> str:
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    fresh = f"f.event_ts >= e.ts - INTERVAL {TTL_DAYS} DAY"
    feats = ", ".join(f"CASE WHEN {fresh} THEN f.{n} END AS {n}" for n in FEATURES)
    return (f"SELECT e.user_id, e.ts, {feats} FROM ent e ASOF LEFT JOIN "
            f"read_parquet([{listing}]) f ON e.user_id = f.user_id AND e.ts >= f.event_ts")


class Reference:
    """The hand-written ASOF join, on its own DuckDB (same settings as the lake's)."""

    def __init__(self, files: list[str]) -> None:
        import duckdb

        self.db = duckdb.connect()
        self.db.execute("SET TimeZone = 'UTC'")
        self.db.execute("SET parquet_metadata_cache = true")
        self.sql = reference_sql(files)

    def run(self, frame: pa.Table, sql: str | None = None) -> pa.Table:
        con = self.db.cursor()
        try:
            con.register("ent", frame)
            return con.sql(sql or self.sql).to_arrow_table()
        finally:
            con.close()


def tarmac_training(p: Any, frame: pa.Table) -> pa.Table:
    return p.features.training_set(frame, [f"{VIEW}:{n}" for n in FEATURES],
                                   timestamp="ts").to_arrow()


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads: DuckDB's too
    return r.ru_utime + r.ru_stime


def bench_training(res: c.Result, work: Path, p: Any, data: Data, frames: list[int],
                   repeat: int, start_us: int, timeout: float, *, full: bool) -> None:
    """Each frame size in a child process (killed after ``timeout`` s): tarmac as it is; if
    that does not finish, again with ``asof_loop_join_threshold = 0`` set on the lake's DuckDB
    from the benchmark, so the rest of the figures still say something."""
    ref = Reference(p.lake.table(TABLE).file_uris())
    for n in frames:
        frame = gen_frame(n, data.entities, seed=10 + n, start_us=start_us)
        spec = {"case": "training", "project": str(p.root), "n": n, "entities": data.entities,
                "start_us": start_us, "repeat": repeat}
        c.log(f"training: {n:,} entity rows, tarmac as it is (child, timeout {timeout:.0f} s)")
        as_is = training_child({**spec, "out": str(work / f"ts-{n}.parquet")}, timeout)
        runs = as_is
        if not as_is["done"]:
            c.log(f"training: {n:,} entity rows: no result within {timeout:.0f} s; again with "
                  "asof_loop_join_threshold = 0")
            runs = training_child({**spec, "out": str(work / f"ts-{n}.parquet"),
                                   "threshold0": True}, 30 * timeout)
        report_training(res, n, as_is, runs, timeout, last=n == frames[-1])
        if runs["done"]:
            import pyarrow.parquet as pq

            out = pq.read_table(work / f"ts-{n}.parquet")
            chk = check_training(ref, frame, out, data.main.corrections)
            which = "" if runs is as_is else " (run with asof_loop_join_threshold = 0)"
            res.figure(f"training {n:,}: rows out", out.num_rows, "rows",
                       f"in entity-row order: {chk['in_order']}; with values "
                       f"{chk['with_values']:,}, no history/stale {chk['null_rows']:,}{which}")
            res.figure(f"training {n:,}: correction pairs hit", chk["pairs_hit"], "pairs",
                       f"{chk['rows_hit']:,} entity rows; later-created value in "
                       f"{chk['resolved']:,}; the reference had it in {chk['ref_resolved']:,}")
            res.figure(f"training {n:,}: other rows differing from reference",
                       chk["other_diff"], "rows", "expected 0")
            res.goal(f"training {n:,}: one row per entity row, in order", out.num_rows, "rows",
                     f"= {n:,}", out.num_rows == n and chk["in_order"])
            res.goal(f"training {n:,}: tied rows resolve to the later-created value",
                     chk["resolved"], "rows", f"= {chk['rows_hit']:,} (and 0 other differences)",
                     chk["resolved"] == chk["rows_hit"] and chk["other_diff"] == 0)


def report_training(res: c.Result, n: int, as_is: dict[str, Any], runs: dict[str, Any],
                    timeout: float, *, last: bool) -> None:
    def fmt_runs(key: str) -> str:
        return ", ".join(f"{x:.2f}" for x in runs[key])

    theirs = c.median(runs["ref"]) if runs["ref"] else float("nan")
    if as_is["done"]:
        ours = c.median(as_is["tarmac"])
        ratio = ours / theirs
        res.figure(f"training {n:,}: tarmac", ours, "s",
                   f"{n / ours:,.0f} rows/s; runs {fmt_runs('tarmac')} s; CPU "
                   f"{c.median(runs['tarmac_cpu']):.2f} s; child peak RSS "
                   f"{runs['peak_mib']:,.0f} MiB")
    else:
        ours, ratio = float("inf"), timeout / theirs
        res.figure(f"training {n:,}: tarmac", f"> {timeout:.0f}", "s",
                   f"no result within {timeout:.0f} s ({len(as_is['tarmac'])} runs done): the "
                   "entity frame is registered as a RecordBatchReader (offline.indexed), DuckDB "
                   "estimates it at ~1 row and plans the ASOF join as a nested loop join "
                   "(asof_loop_join_threshold = 64): entity rows x feature rows comparisons")
        res.figure(f"training {n:,}: tarmac, asof_loop_join_threshold = 0",
                   c.median(runs["tarmac"]), "s",
                   f"runs {fmt_runs('tarmac')} s; CPU {c.median(runs['tarmac_cpu']):.2f} s; "
                   f"child peak RSS {runs['peak_mib']:,.0f} MiB; set from the benchmark on the "
                   "lake's DuckDB: what the one-line fix gives")
    res.figure(f"training {n:,}: reference ASOF", theirs, "s",
               f"runs {fmt_runs('ref')} s; CPU {c.median(runs['ref_cpu']):.2f} s")
    if as_is["done"]:
        res.figure(f"training {n:,}: ratio tarmac/reference", ratio, "x",
                   f"CPU {c.median(runs['tarmac_cpu']) / c.median(runs['ref_cpu']):.2f}x")
    else:
        fixed = c.median(runs["tarmac"]) / theirs
        res.figure(f"training {n:,}: ratio tarmac/reference", f"> {ratio:.0f}", "x",
                   f"with asof_loop_join_threshold = 0: {fixed:.2f}x (CPU "
                   f"{c.median(runs['tarmac_cpu']) / c.median(runs['ref_cpu']):.2f}x)")
    if last:
        bound = "" if as_is["done"] else f" (no result in {timeout:.0f} s: a lower bound)"
        res.goal(f"training {n:,}: tarmac / reference ASOF time{bound}", ratio, "x", "<= 1.5",
                 ratio <= 1.5)


def training_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the training case in a child; its runs so far if it is killed at ``timeout``."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    out: dict[str, Any] = {"done": False, "tarmac": [], "tarmac_cpu": [], "ref": [],
                           "ref_cpu": [], "peak_mib": 0.0}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        for key in ("tarmac", "tarmac_cpu", "ref", "ref_cpu"):
            if key in row:
                out[key].append(row[key])
        if row.get("done"):
            out["done"], out["peak_mib"] = True, row["peak_mib"]
    if proc.returncode not in (0, -9):
        sys.stderr.write(stderr)
        raise SystemExit(f"child failed: {spec}")
    return out


def training_case(spec: dict[str, Any]) -> None:
    """Child: a warm-up, then ``repeat`` interleaved runs of tarmac and the reference, one JSON
    line per run (so a parent that kills it still has the runs done); tarmac's last result is
    written to ``out``."""
    import pyarrow.parquet as pq

    import tarmac

    p = tarmac.open(spec["project"])
    if spec.get("threshold0"):
        from tarmac.lake.sql import _database

        _database(p.lake).execute("SET GLOBAL asof_loop_join_threshold = 0")
    ref = Reference(p.lake.table(TABLE).file_uris())
    warm = gen_frame(100, spec["entities"], seed=99, start_us=spec["start_us"])
    tarmac_training(p, warm)
    ref.run(warm)
    frame = gen_frame(spec["n"], spec["entities"], seed=10 + spec["n"],
                      start_us=spec["start_us"])
    out = None
    for _ in range(spec["repeat"]):
        cpu = cpu_s()
        t, out = c.timed(lambda: tarmac_training(p, frame))
        print(json.dumps({"tarmac": t, "tarmac_cpu": cpu_s() - cpu}), flush=True)
        cpu = cpu_s()
        t, _ = c.timed(lambda: ref.run(frame))
        print(json.dumps({"ref": t, "ref_cpu": cpu_s() - cpu}), flush=True)
    assert out is not None
    pq.write_table(out, spec["out"])
    p.close()
    print(json.dumps({"done": True, "peak_mib": peak_mib()}), flush=True)


def check_training(ref: Reference, frame: pa.Table, out: pa.Table,
                   corrections: pa.Table) -> dict[str, Any]:
    """Compare tarmac's rows with the reference's (numbered and ordered, not timed)."""
    n = frame.num_rows
    in_order = (out.num_rows == n and out["user_id"].equals(frame["user_id"])
                and out["ts"].cast(pa.int64()).equals(frame["ts"].cast(pa.int64())))
    numbered = frame.append_column("rn", pa.array(np.arange(n, dtype=np.int64)))
    fresh = f"f.event_ts >= e.ts - INTERVAL {TTL_DAYS} DAY"
    cols = ", ".join(f"CASE WHEN {fresh} THEN f.{x} END AS {x}" for x in FEATURES)
    listing = ref.sql.split("read_parquet(", 1)[1].split(") f ON", 1)[0]
    ordered = (f"SELECT e.rn, CASE WHEN {fresh} THEN f.event_ts END AS ev, {cols} FROM ent e "
               f"ASOF LEFT JOIN read_parquet({listing}) f ON e.user_id = f.user_id "
               f"AND e.ts >= f.event_ts")
    con = ref.db.cursor()
    try:
        con.register("ent", numbered)
        con.execute(f"CREATE TEMP TABLE r AS {ordered}")
        con.register("t", out.append_column("rn", numbered["rn"]))
        con.register("corr", corrections)
        differs = " OR ".join(f"t.{x} IS DISTINCT FROM r.{x}" for x in FEATURES)
        row = con.execute(f"""
            WITH j AS (SELECT t.*, r.ev, corr.i0 AS fixed, r.i0 AS ref_i0,
                              corr.user_id IS NOT NULL AS hit, ({differs}) AS differs
                       FROM t JOIN r USING (rn) LEFT JOIN corr
                       ON corr.user_id = t.user_id AND corr.event_ts = r.ev)
            SELECT count(DISTINCT (user_id, ev)) FILTER (WHERE hit),
                   count(*) FILTER (WHERE hit),
                   count(*) FILTER (WHERE hit AND i0 = fixed),
                   count(*) FILTER (WHERE hit AND ref_i0 = fixed),
                   count(*) FILTER (WHERE NOT hit AND differs),
                   count(*) FILTER (WHERE ev IS NOT NULL),
                   count(*) FILTER (WHERE ev IS NULL)
            FROM j""").fetchall()[0]
    finally:
        con.close()
    keys = ["pairs_hit", "rows_hit", "resolved", "ref_resolved", "other_diff", "with_values",
            "null_rows"]
    return {"in_order": in_order, **dict(zip(keys, row, strict=True))}


# -- (2) materialization -------------------------------------------------------------------------


def bench_materialize(res: c.Result, project: Path, data: Data, mat_rows: list[int]) -> None:
    outs = []
    for (view, _table), n, users in zip(MAT, mat_rows, data.mat_users, strict=True):
        c.log(f"materialize: {view} ({n:,} rows, {users:,} entities) in a child process")
        out = run_child({"case": "materialize", "project": str(project), "view": view})
        outs.append(out)
        res.figure(f"materialize {n:,} rows: seconds", out["seconds"], "s",
                   f"{out['entities']:,} entities (expected {users:,}), read {out['rows']:,} "
                   f"rows, {out['batches']} batches; online writes {out['online_write']:.2f} s, "
                   f"feature stats {out['stats']:.2f} s")
        res.figure(f"materialize {n:,} rows: peak RSS", out["peak_mib"], "MiB",
                   f"+{out['peak_mib'] - out['baseline_mib']:.0f} MiB over the "
                   f"{out['baseline_mib']:.0f} MiB after opening the project")
        ok = out["entities"] == users and out["rows"] == n
        res.goal(f"materialize {n:,} rows: all entities written", out["entities"], "entities",
                 f"= {users:,}", ok)
    small, large = outs
    res.goal(f"materialize {data.entities:,} entities from {mat_rows[0]:,} rows",
             small["seconds"], "s", "<= 5", small["seconds"] <= 5)
    ratio = large["peak_mib"] / small["peak_mib"]
    growth = (large["peak_mib"] - large["baseline_mib"]) / max(
        1.0, small["peak_mib"] - small["baseline_mib"])
    res.figure("materialize: peak RSS ratio large/small", ratio, "x",
               f"{mat_rows[1]:,} vs {mat_rows[0]:,} rows; growth over baseline {growth:.2f}x")
    res.goal(f"materialize: peak RSS {mat_rows[1]:,} / {mat_rows[0]:,} rows", ratio, "x",
             "<= 1.3", ratio <= 1.3)


# -- (3) online ----------------------------------------------------------------------------------


def entity_lists(data: Data, size: int, count: int, seed: int) -> list[list[dict[str, int]]]:
    rng = np.random.default_rng(seed)
    ids = data.known[rng.integers(0, len(data.known), (count, size))]
    return [[{"user_id": int(u)} for u in row] for row in ids]


def latencies(fn: Any, calls: list[Any], warmup: int) -> np.ndarray:
    for arg in calls[:warmup]:
        fn(arg)
    out = np.empty(len(calls) - warmup)
    clock = time.perf_counter_ns
    for i, arg in enumerate(calls[warmup:]):
        t = clock()
        fn(arg)
        out[i] = clock() - t
    return out / 1e6  # ms


def bench_online(res: c.Result, p: Any, backend: str, data: Data, calls: int) -> None:
    goals = {("sqlite", 1): 0.3, ("sqlite", 100): 2.0, ("redis", 1): 1.0}
    warmup = 200
    for size in (1, 100):
        lists = entity_lists(data, size, calls + warmup, seed=size)
        probe = p.features.online(ONLINE_VIEW, lists[0])
        present = sum(1 for st in probe.status for v in st.values() if v == "present")
        c.log(f"online {backend}: {size} entities x {len(probe.features)} features, "
              f"{calls:,} calls")
        ms = latencies(lambda ents: p.features.online(ONLINE_VIEW, ents), lists, warmup)
        p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
        res.figure(f"online {backend} {size} entity x {len(probe.features)}: p50", float(p50),
                   "ms", f"{calls:,} calls after {warmup} warm-up; first call: {present} of "
                         f"{size * len(probe.features)} values present")
        res.figure(f"online {backend} {size} entity x {len(probe.features)}: p99", float(p99),
                   "ms", f"max {ms.max():.2f} ms")
        target = goals.get((backend, size))
        if target is not None:
            res.goal(f"online {backend}: {size} entities, p99", float(p99), "ms",
                     f"<= {target}", p99 <= target)


def redis_reachable() -> str | None:
    try:
        import redis
    except ImportError:
        return "the redis package is not installed"
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip
        return f"{REDIS_URL} not reachable ({type(exc).__name__})"
    return None


def bench_redis(res: c.Result, work: Path, data: Data, rows: int, start_us: int,
                calls: int) -> None:
    import tarmac

    why = redis_reachable()
    if why:
        res.figure("online redis", "skipped", "", why)
        return
    project = work / "redis-proj"
    tarmac.init(project, name=REDIS_PROJECT)
    cfg = project / "tarmac.yaml"
    lines = [f"online_store: {REDIS_URL}" if ln.startswith("online_store:") else ln
             for ln in cfg.read_text().splitlines()]
    cfg.write_text("\n".join(lines) + "\n")
    p = tarmac.open(project)
    view, table = MAT[0]
    try:
        g = gen_features(rows, data.entities, seed=2, start_us=start_us)  # same as the SQLite's
        p.lake.write(table, g.table.to_reader(max_chunksize=1_000_000))
        write_definitions(project, [MAT[0]])
        p.features.apply()
        p.features.online_store.clear(view)  # an interrupted run's keys (our namespace only)
        c.log(f"redis: materializing {view} ({rows:,} rows)")
        t, (r,) = c.timed(lambda: p.features.materialize([view], full=True))
        res.figure(f"redis: materialize {rows:,} rows", t, "s",
                   f"{r.entities:,} entities, namespace {REDIS_PROJECT} in db 15")
        bench_online(res, p, "redis", data, calls)
    finally:
        try:
            p.features.online_store.clear(view)
        finally:
            p.close()
            shutil.rmtree(project, ignore_errors=True)


# -- (4) HTTP ------------------------------------------------------------------------------------


def serve_available() -> str | None:
    """None if ``tarmac serve`` and ``_http_load.load`` exist, else why not."""
    if not (Path(__file__).resolve().parent / "_http_load.py").exists():
        return "benchmarks/_http_load.py does not exist yet"
    try:
        import _http_load
    except Exception as exc:  # noqa: BLE001
        return f"benchmarks/_http_load.py does not import ({type(exc).__name__}: {exc})"
    if not callable(getattr(_http_load, "load", None)):
        return "benchmarks/_http_load.py has no load()"
    proc = subprocess.run([str(Path(sys.executable).parent / "tarmac"), "serve", "--help"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return "`tarmac serve` does not exist in the CLI yet"
    return None


def serve_workers() -> int | str:
    """How many workers ``tarmac serve`` starts by default (asked of the code when it says)."""
    for module in ("tarmac.serving.server", "tarmac.cli._serve"):
        try:
            return int(__import__(module, fromlist=["default_workers"]).default_workers())
        except (ImportError, AttributeError):
            continue
    return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_http(res: c.Result, project: Path, data: Data, *, quick: bool) -> None:
    why = serve_available()
    if why:
        res.figure("http", "skipped", "", why)
        return
    import urllib.request

    import _http_load

    workers = serve_workers()
    port = free_port()
    url = f"http://127.0.0.1:{port}/features"
    cmd = [str(Path(sys.executable).parent / "tarmac"), "serve", "--port", str(port)]
    c.log(f"http: {' '.join(cmd[1:])} in {project}")
    server = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        if not wait_port(port, server, 30):
            err = server.stderr.read() if server.poll() is not None and server.stderr else ""
            last = err.strip().splitlines()[-1] if err.strip() else ""
            res.figure("http", "failed", "", f"the server did not listen on {port} within 30 s"
                       + (f": {last}" if last else ""))
            return
        user = int(data.known[0])
        body = json.dumps({"features": ONLINE_VIEW, "entities": [{"user_id": user}]}).encode()
        answer = json.loads(urllib.request.urlopen(urllib.request.Request(
            url, body, {"Content-Type": "application/json"}), timeout=10).read())
        present = sum(v == "present" for r in answer["results"] for v in r["status"].values())
        seconds = 2 if quick else 10
        _http_load.load(url, body, concurrency=1, seconds=1)  # warm-up
        one = _http_load.load(url, body, concurrency=1, seconds=seconds)
        eight = _http_load.load(url, body, concurrency=8, seconds=seconds)
        for label, out in (("concurrency 1", one), ("concurrency 8", eight)):
            res.figure(f"http {label}: p50 / p99 / max", f"{out['p50_ms']:.2f} / "
                       f"{out['p99_ms']:.2f} / {out['max_ms']:.1f}", "ms",
                       f"{out['rps']:,.0f} req/s, {out['errors']} errors, {seconds} s; "
                       f"1 entity x {len(answer['features'])} features, {present} present; "
                       f"{workers} workers (default)")
        res.goal("http: concurrency 1, p99", one["p99_ms"], "ms", "<= 1.5",
                 one["p99_ms"] <= 1.5 and not one["errors"])
        res.goal("http: concurrency 8, req/s (with p99 <= 20 ms)", eight["rps"], "req/s",
                 ">= 2,000", eight["rps"] >= 2000 and eight["p99_ms"] <= 20
                 and not eight["errors"])
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_port(port: int, proc: subprocess.Popen[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# -- children ------------------------------------------------------------------------------------


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    return c.run_child(__file__, spec)


def peak_mib() -> float:
    """This process's peak resident set. VmHWM, not ``ru_maxrss``: Linux carries the parent's
    high-water mark over fork + exec into ``ru_maxrss``, so a child of a big parent (this one
    holds the generated tables) would report the parent's size."""
    return c.mib(c.proc_status_kib("VmHWM"))


def child(spec: dict[str, Any]) -> None:
    """Materialize one view in a fresh process; prints seconds, counts and peak RSS as JSON."""
    if spec.get("case") == "training":
        training_case(spec)
        return
    import tarmac
    import tarmac.features.materialize as mat
    from tarmac.features.online import SqliteOnlineStore

    p = tarmac.open(spec["project"])
    p.features.registered()
    p.features.online_store.ping()
    probe = c.Probe()
    probe.patch(SqliteOnlineStore, "write_batch", "online_write")
    probe.patch(mat, "feature_stats", "stats")
    baseline = c.mib(c.proc_status_kib("VmRSS"))
    t, (r,) = c.timed(lambda: p.features.materialize([spec["view"]], full=True))
    phases = probe.take()
    p.close()
    print(json.dumps({"seconds": t, "baseline_mib": baseline, "peak_mib": peak_mib(),
                      "rows": r.rows, "entities": r.entities, "batches": r.batches,
                      "online_write": phases.get("online_write", 0.0),
                      "stats": phases.get("stats", 0.0), "pid": os.getpid()}))


if __name__ == "__main__":
    main()
