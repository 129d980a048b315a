"""Ingestion throughput and memory against raw pyarrow/ADBC + write_deltalake, and the survey.

(1) CSV -> lake: an N-row, 12-column CSV (cached in bench-data/) loaded by a ``file`` source
    (mode append, no key) with ``p.ingest`` vs ``pyarrow.csv.open_csv`` streamed into
    ``deltalake.write_deltalake``; and the peak RSS of the same load at N/5 rows (flat is the goal)
(2) PostgreSQL -> lake: an N/2-row table (schema ``bench``, kept between runs) loaded by a ``sql``
    source vs ADBC ``SELECT *`` -> ``fetch_record_batch()`` -> ``write_deltalake``
(3) incremental: the same kind of table (N rows) with ``primary_key: id, cursor: updated_at``:
    a full load, then 1% new rows inserted and loaded again (goal: < 10% of the full load's time)
(4) ``survey()`` of the demo company (large; small with --quick), tickets served over HTTP

Every load runs in its own child process, so peak RSS (``ru_maxrss``) is per case.

    python benchmarks/bench_ingest.py [--rows N] [--quick] [--json] [--skip pg,survey]
"""

from __future__ import annotations

import json
import resource
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "bench"
CSV_DIR = c.BENCH_DATA / "ingest-csv"
CASES = ["csv", "pg", "incremental", "survey"]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = c.parser(__doc__.splitlines()[0], default_rows=10_000_000, quick_rows=200_000)
    ap.add_argument("--pg-rows", type=int, help="rows of the PostgreSQL table (default rows/2)")
    ap.add_argument("--inc-rows", type=int,
                    help="rows of the incremental case's table (default rows)")
    ap.add_argument("--survey-size", choices=["small", "medium", "large"],
                    help="demo company size for the survey (default large; small with --quick)")
    ap.add_argument("--skip", default="", help=f"comma-separated cases to skip: {','.join(CASES)}")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile tarmac's loads; stats go to bench-data/profile-*.prof")
    args = ap.parse_args()
    n = c.rows_for(args)
    pg_rows = args.pg_rows or max(1000, n // 2)
    inc_rows = args.inc_rows or n
    small = max(1000, n // 5)
    survey_size = args.survey_size or ("small" if args.quick else "large")
    skip = {s for s in args.skip.split(",") if s}
    res = c.Result("ingest", csv_rows=n, pg_rows=pg_rows, inc_rows=inc_rows,
                   survey_size=survey_size, **c.env_info())
    with c.workdir("ingest") as work:
        if "csv" not in skip:
            bench_csv(res, work, n, small, args.profile)
        pg_up = pg_reachable()
        for case, fn, rows in (("pg", bench_pg, pg_rows), ("incremental", bench_incremental,
                                                             inc_rows)):
            if case in skip:
                continue
            if not pg_up:
                res.figure(f"{case}: PostgreSQL", "unavailable", "",
                           "127.0.0.1:5432 not reachable; skipped")
                continue
            fn(res, work, rows, args.profile)
        if "survey" not in skip:
            bench_survey(res, work, survey_size)
    res.emit(args.json)


# -- (1) CSV -------------------------------------------------------------------------------------


def bench_csv(res: c.Result, work: Path, n: int, small: int, profile: bool) -> None:
    path = csv_file(n)
    size_mib = path.stat().st_size / 2**20
    res.figure("csv: file", size_mib, "MiB", f"{n:,} rows x 12 columns, {path.name}")
    c.log(f"csv: reference open_csv -> write_deltalake, {n:,} rows")
    ref = run_child({"case": "csv_ref", "csv": str(path), "out": str(work / "csv-ref")})
    shutil.rmtree(work / "csv-ref", ignore_errors=True)
    c.log(f"csv: p.ingest, {n:,} rows")
    ours = run_child({"case": "csv_ours", "csv": str(path), "project": str(work / "csv-proj"),
                      "profile": profile})
    shutil.rmtree(work / "csv-proj", ignore_errors=True)
    report_pair(res, "csv", n, ours, ref, expect=n)

    small_path = csv_file(small)
    c.log(f"csv: p.ingest, {small:,} rows (memory vs size)")
    low = run_child({"case": "csv_ours", "csv": str(small_path),
                     "project": str(work / "csv-proj-small")})
    shutil.rmtree(work / "csv-proj-small", ignore_errors=True)
    rss_ratio = ours["peak_mib"] / low["peak_mib"]
    res.figure(f"csv: tarmac peak RSS at {small:,} rows", low["peak_mib"], "MiB",
               f"+{low['peak_mib'] - low['baseline_mib']:.0f} MiB over the "
               f"{low['baseline_mib']:.0f} MiB baseline; {low['seconds']:.2f} s")
    res.figure(f"csv: tarmac peak RSS at {n:,} rows", ours["peak_mib"], "MiB",
               f"+{ours['peak_mib'] - ours['baseline_mib']:.0f} MiB over the "
               f"{ours['baseline_mib']:.0f} MiB baseline")
    res.figure("csv: peak RSS ratio large/small", rss_ratio, "x", f"{n:,} vs {small:,} rows")
    res.goal(f"csv: peak RSS {n:,} / {small:,} rows", rss_ratio, "x", "<= 1.5",
             rss_ratio <= 1.5)


def csv_file(n: int) -> Path:
    """The benchmark CSV of ``n`` rows, written once (streamed, batch by batch) and cached."""
    import pyarrow.csv as pacsv

    CSV_DIR.mkdir(parents=True, exist_ok=True)
    path = CSV_DIR / f"events_{n}.csv"
    if path.exists():
        return path
    c.log(f"writing {path} ({n:,} rows, once)")
    tmp = path.with_suffix(".tmp")
    t = time.perf_counter()
    with pacsv.CSVWriter(str(tmp), c.SCHEMA) as writer:
        for batch in c.gen_batches(n):
            writer.write_batch(batch)
    tmp.rename(path)
    c.log(f"wrote {path.stat().st_size / 2**20:,.0f} MiB in {time.perf_counter() - t:.0f} s")
    return path


# -- (2) PostgreSQL ------------------------------------------------------------------------------


def bench_pg(res: c.Result, work: Path, n: int, profile: bool) -> None:
    table = pg_table(n)
    c.log(f"pg: reference ADBC SELECT * -> write_deltalake, {n:,} rows")
    ref = run_child({"case": "pg_ref", "table": table, "out": str(work / "pg-ref")})
    shutil.rmtree(work / "pg-ref", ignore_errors=True)
    c.log(f"pg: p.ingest, {n:,} rows")
    ours = run_child({"case": "pg_ours", "table": table, "project": str(work / "pg-proj"),
                      "profile": profile})
    shutil.rmtree(work / "pg-proj", ignore_errors=True)
    report_pair(res, "pg", n, ours, ref, expect=n)


def pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


def pg_connect() -> Any:
    import adbc_driver_postgresql.dbapi as adbc

    return adbc.connect(PG_URL, autocommit=True)


def pg_table(n: int) -> str:
    """``bench.events_N``: N rows of the benchmark schema, primary key ``id``, an index on
    ``updated_at``; created once (binary COPY through ADBC) and kept while its rows match."""
    name = f"events_{n}"
    qualified = f"{PG_SCHEMA}.{name}"
    with pg_connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
        cur.execute(f"SELECT to_regclass('{qualified}') IS NOT NULL")
        exists = cur.fetchone()[0]
        if exists:
            cur.execute(f"DELETE FROM {qualified} WHERE id >= {n}")  # an interrupted rerun
            cur.execute(f"SELECT count(*), max(id) FROM {qualified}")
            count, top = cur.fetchone()
            if count == n and top == n - 1:
                return name
            c.log(f"{qualified} has {count:,} rows, not {n:,}: recreating it")
            cur.execute(f"DROP TABLE {qualified}")
        c.log(f"creating {qualified} ({n:,} rows, once)")
        t = time.perf_counter()
        reader = pa.RecordBatchReader.from_batches(c.SCHEMA, c.gen_batches(n))
        cur.adbc_ingest(name, reader, mode="create", db_schema_name=PG_SCHEMA)
        cur.execute(f"ALTER TABLE {qualified} ADD PRIMARY KEY (id)")
        cur.execute(f"CREATE INDEX ON {qualified} (updated_at)")
        cur.execute(f"VACUUM ANALYZE {qualified}")
        c.log(f"created {qualified} in {time.perf_counter() - t:.0f} s")
    return name


# -- (3) incremental -----------------------------------------------------------------------------


def bench_incremental(res: c.Result, work: Path, n: int, profile: bool) -> None:
    table = pg_table(n)
    qualified = f"{PG_SCHEMA}.{table}"
    project = work / "inc-proj"
    spec = {"table": table, "project": str(project), "profile": profile}
    if float32_bug():
        res.figure("incremental: workaround", "score: float", "",
                   "declared: a stored contract turns float32 into float64 (contract.py "
                   "type_name/parse_type), so the second load would fail to merge")
    c.log(f"incremental: full load of {n:,} rows (primary key id, cursor updated_at)")
    full = run_child({**spec, "case": "inc_full", "init": True})
    added = max(1, n // 100)
    try:
        with pg_connect() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT max(updated_at) FROM {qualified}")
            newest = cur.fetchone()[0]
            top_us = int(pa.scalar(newest, pa.timestamp("us", tz="UTC")).value)
            batch = c.gen_batch(added, n, np.random.default_rng(7))
            ts = pa.array(top_us + 1_000_000 + np.arange(added, dtype=np.int64),
                          pa.timestamp("us", tz="UTC"))
            batch = batch.set_column(11, "updated_at", ts)
            t = time.perf_counter()
            cur.adbc_ingest(table, batch, mode="append", db_schema_name=PG_SCHEMA)
            c.log(f"incremental: inserted {added:,} rows in {time.perf_counter() - t:.1f} s")
        c.log("incremental: second load")
        inc = run_child({**spec, "case": "inc_delta", "init": False})
    finally:
        with pg_connect() as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {qualified} WHERE id >= {n}")
            cur.execute(f"VACUUM ANALYZE {qualified}")
        shutil.rmtree(project, ignore_errors=True)
    share = inc["seconds"] / full["seconds"]
    res.figure("incremental: full load", n / full["seconds"], "rows/s",
               f"{full['seconds']:.2f} s, loaded {full['rows_loaded']:,}, peak RSS "
               f"{full['peak_mib']:.0f} MiB" + check(full["rows_loaded"], n))
    add_phases(res, "incremental: full", full)
    res.figure("incremental: second load", inc["seconds"], "s",
               f"{added:,} new rows inserted; read {inc['rows_read']:,}, loaded "
               f"{inc['rows_loaded']:,}, duplicates {inc['duplicates']:,}; peak RSS "
               f"{inc['peak_mib']:.0f} MiB")
    add_phases(res, "incremental: second", inc)
    res.figure("incremental: time share", share * 100, "%", "second load / full load")
    res.goal(f"incremental: 1% new rows of {n:,}, share of the full load's time", share * 100,
             "%", "< 10", share < 0.10)
    res.goal("incremental: rows_loaded = rows inserted", inc["rows_loaded"], "rows",
             f"= {added:,}", inc["rows_loaded"] == added)


# -- (4) survey ----------------------------------------------------------------------------------


def bench_survey(res: c.Result, work: Path, size: str) -> None:
    import tarmac.ingest.survey as survey_module

    if not hasattr(survey_module, "survey"):
        res.figure("survey", "skipped", "", "tarmac.ingest.survey has no survey() yet")
        return
    data = c.BENCH_DATA / f"demo-{size}"
    stamp = data / "generated.json"
    if not stamp.exists():
        from tarmac.demo import generate

        c.log(f"survey: generating the {size} demo company into {data} (once)")
        shutil.rmtree(data, ignore_errors=True)
        t = time.perf_counter()
        sources = generate(data, size=size, seed=0)
        stamp.write_text(json.dumps(sources.summary() if hasattr(sources, "summary") else {},
                                    default=str))
        c.log(f"survey: generated in {time.perf_counter() - t:.0f} s")
    c.log(f"survey: {size} demo company")
    out = run_child({"case": "survey", "data": str(data / "data"),
                     "project": str(work / "survey-proj")})
    shutil.rmtree(work / "survey-proj", ignore_errors=True)
    reach = sum(1 for s in out["sources"] if s["status"] == "reachable")
    res.figure("survey: seconds", out["seconds"], "s",
               f"{len(out['sources'])} sources, {reach} reachable, {out['gaps']} gaps; "
               f"peak RSS {out['peak_mib']:.0f} MiB")
    for s in out["sources"]:
        res.figure(f"  survey {s['name']}", s["seconds"], "s",
                   f"{s['status']}; {s['rows']}" + (f"; {s['error']}" if s["error"] else ""))
    res.goal(f"survey of the {size} demo company", out["seconds"], "s", "< 30",
             out["seconds"] < 30)


# -- reporting -----------------------------------------------------------------------------------


def check(got: int, want: int) -> str:
    return "" if got == want else f" (EXPECTED {want:,})"


def report_pair(res: c.Result, label: str, n: int, ours: dict[str, Any], ref: dict[str, Any], *,
                expect: int) -> None:
    ratio = ref["seconds"] / ours["seconds"]
    res.figure(f"{label}: reference", n / ref["seconds"], "rows/s",
               f"{ref['seconds']:.2f} s, peak RSS {ref['peak_mib']:.0f} MiB "
               f"(+{ref['peak_mib'] - ref['baseline_mib']:.0f}), {ref['files']} files"
               + check(ref["rows"], expect))
    res.figure(f"{label}: tarmac p.ingest", n / ours["seconds"], "rows/s",
               f"{ours['seconds']:.2f} s, peak RSS {ours['peak_mib']:.0f} MiB "
               f"(+{ours['peak_mib'] - ours['baseline_mib']:.0f}), {ours['files']} files, "
               f"bytes_read {ours['bytes_read'] / 2**20:,.0f} MiB"
               + check(ours["rows_loaded"], expect))
    add_phases(res, label, ours)
    res.figure(f"{label}: ratio reference s / tarmac s", ratio, "x")
    res.goal(f"{label}: throughput tarmac/reference", ratio, "x", ">= 0.7", ratio >= 0.7)


PHASES = [  # (label, key): seconds inside the load, from the child's probe
    ("connector read (derived)", "connector"),
    ("contract check", "contract"),
    ("staged Parquet writes", "stage_write"),
    ("  of which file statistics", "stats"),
    ("plan (dedup, restage, close files)", "plan"),
    ("  of which DuckDB dedup", "dedup"),
    ("commit (Delta + catalog)", "apply"),
    ("  of which lake.write merge", "lake_write"),
]


def add_phases(res: c.Result, label: str, out: dict[str, Any]) -> None:
    ph = out["phases"]
    for name, key in PHASES:
        if ph.get(key):
            calls = int(ph.get(f"{key}#calls", 0))
            res.figure(f"  {label} {name}", ph[key], "s", f"{calls} calls" if calls > 1 else "")


# -- children ------------------------------------------------------------------------------------


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    return c.run_child(__file__, spec)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(spec: dict[str, Any]) -> None:
    """One case in a fresh process; prints seconds, rows and peak RSS as JSON (last line)."""
    case = spec["case"]
    if case == "csv_ref":
        out = ref_load(spec, "csv")
    elif case == "pg_ref":
        out = ref_load(spec, "pg")
    elif case == "survey":
        out = survey_child(spec)
    else:
        out = ours_load(spec)
    out["peak_mib"] = peak_mib()
    print(json.dumps(out, default=str))


def ref_load(spec: dict[str, Any], kind: str) -> dict[str, Any]:
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    from deltalake import DeltaTable, write_deltalake

    from tarmac.ingest.files import CSV_BLOCK

    if kind == "pg":
        import adbc_driver_postgresql.dbapi as adbc
    baseline = c.mib(c.proc_status_kib("VmRSS"))
    t = time.perf_counter()
    if kind == "csv":  # same block size as tarmac's reader: like for like
        reader = pacsv.open_csv(spec["csv"], read_options=pacsv.ReadOptions(block_size=CSV_BLOCK))
        write_deltalake(spec["out"], reader, mode="append")
    else:
        with adbc.connect(PG_URL) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {PG_SCHEMA}.{spec['table']}")
            write_deltalake(spec["out"], cur.fetch_record_batch(), mode="append")
    seconds = time.perf_counter() - t
    actions = pa.table(DeltaTable(spec["out"]).get_add_actions(flatten=True))
    return {"seconds": seconds, "baseline_mib": baseline, "files": actions.num_rows,
            "rows": int(pc.sum(actions["num_records"]).as_py() or 0)}


def ours_load(spec: dict[str, Any]) -> dict[str, Any]:
    import tarmac

    project = Path(spec["project"])
    case = spec["case"]
    if case == "csv_ours":
        source = {"type": "file", "path": spec["csv"], "mode": "append"}
    elif case == "pg_ours":
        source = {"type": "sql", "url": PG_URL, "tables": [spec["table"]], "schema": PG_SCHEMA,
                  "mode": "append"}
    else:
        source = {"type": "sql", "url": PG_URL, "tables": [spec["table"]], "schema": PG_SCHEMA,
                  "primary_key": "id", "cursor": "updated_at"}
        if float32_bug():  # see float32_bug: without this the second load cannot merge
            source["columns"] = {"score": "float"}
    if spec.get("init", True):
        c.make_project(project)
        cfg = project / "tarmac.yaml"
        declared = "sources: " + json.dumps({"src": source})
        text = cfg.read_text()  # the scaffold's sources are a commented example: append
        cfg.write_text(text.replace("sources: {}", declared) if "sources: {}" in text
                       else text.rstrip("\n") + "\n" + declared + "\n")
    p = tarmac.open(project)
    probe = load_probe()
    baseline = c.mib(c.proc_status_kib("VmRSS"))
    prof = None
    if spec.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    results = p.ingest(["src"])
    seconds = time.perf_counter() - t
    if prof is not None:
        prof.disable()
        prof.dump_stats(str(c.BENCH_DATA / f"profile-{case}.prof"))
    phases = probe.take()
    probe.restore()
    p.close()
    (r,) = results
    if r.status == "failed":
        raise SystemExit(f"load failed: {r.error}")
    read_loop = phases.get("read_loop", 0.0)
    phases["connector"] = read_loop - sum(phases.get(k, 0.0) for k in (
        "contract", "stage_write", "reject"))
    return {"seconds": seconds, "load_seconds": r.seconds, "baseline_mib": baseline,
            "rows_read": r.rows_read, "rows_loaded": r.rows_loaded,
            "duplicates": r.duplicates, "quarantined": r.rows_quarantined,
            "bytes_read": r.bytes_read, "files": len(p.lake.latest(r.table).file_uris()),
            "phases": phases}


def float32_bug() -> bool:
    """True while a stored contract reads float32 back as float64 (``type_name`` gives
    "float", which ``parse_type`` maps to double): a later load of a PostgreSQL ``real`` column
    then fails to merge. The incremental case declares ``score: float`` (double) meanwhile."""
    from tarmac.ingest.contract import parse_type, type_name

    return parse_type(type_name(pa.float32())) != pa.float32()


def load_probe() -> c.Probe:
    """Times the loader's phases by wrapping its functions (src/ is not modified)."""
    import tarmac.ingest.load as load
    from tarmac.ingest.contract import Contract
    from tarmac.lake import lake as lake_mod
    from tarmac.lake.staging import Stager, Stats

    probe = c.Probe()
    probe.patch(load._StreamLoad, "_read", "read_loop")
    probe.patch(load._StreamLoad, "_reject", "reject")
    probe.patch(load._StreamLoad, "_plan", "plan")
    probe.patch(load._StreamLoad, "_dedup", "dedup")
    probe.patch(load._StreamLoad, "_apply", "apply")
    probe.patch(Contract, "check", "contract")
    probe.patch(Stager, "write", "stage_write")
    probe.patch(Stats, "add", "stats")
    probe.patch(lake_mod.Lake, "write", "lake_write")
    return probe


def survey_child(spec: dict[str, Any]) -> dict[str, Any]:
    import tarmac
    from tarmac.demo import TicketsServer
    from tarmac.demo.story import PROJECT_FILE
    from tarmac.ingest.survey import survey
    from tarmac.project import scaffold

    data = Path(spec["data"])
    project = Path(spec["project"])
    scaffold(project, name="kestrel")  # files only: the catalog is the demo project's own
    with TicketsServer(data / "tickets.json") as api:
        text = (PROJECT_FILE.replace("sqlite:///data/", f"sqlite:///{data}/")
                .replace('path: "data/', f'path: "{data}/')
                .replace("http://127.0.0.1:8765/tickets", api.url))
        (project / "tarmac.yaml").write_text(text)
        p = tarmac.open(project)
        t = time.perf_counter()
        report = survey(p)
        seconds = time.perf_counter() - t
        p.close()
    sources = []
    for s in report.sources:
        rows = ", ".join(f"{st.name}: {fmt_rows(st)}" for st in s.streams)
        sources.append({"name": s.name, "status": s.status, "seconds": s.seconds,
                        "error": s.error, "rows": rows})
    return {"seconds": seconds, "sources": sources, "gaps": len(report.gaps)}


def fmt_rows(stream: Any) -> str:
    total = getattr(stream, "rows", getattr(stream, "total_rows", None))
    if not isinstance(total, int):
        return "? rows"
    estimated = getattr(stream, "rows_estimated", getattr(stream, "estimated", False))
    return f"{'~' if estimated else ''}{total:,} rows"


if __name__ == "__main__":
    main()
