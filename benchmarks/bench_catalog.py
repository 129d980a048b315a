"""Catalog reads at scale on SQLite and PostgreSQL: pagination, lookups, audit verification.

For each backend: bulk-insert N runs (two lineage edges each) and N audit records forming a valid
hash chain (SQLAlchemy Core executemany into the catalog tables), then time (median of --repeat,
milliseconds): the first page of 100 runs, a page ~500 pages deep (reached by following
cursors), a page of runs filtered by job, get_run by id, the first page of audit records, a page
filtered by actor, and p.ledger.verify() over all N records. Then the SQLite catalog is copied
to PostgreSQL with ``tarmac catalog copy`` (and the copy rerun, which compares every row).

    python benchmarks/bench_catalog.py [--rows N] [--quick] [--json] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
JOBS = [f"job_{i:02d}" for i in range(20)]
ACTORS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
ACTIONS = ["lake.write", "lake.merge", "run.succeeded", "run.failed", "catalog.tag"]
CHUNK = 10_000


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=100_000, quick_rows=10_000)
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per figure (median)")
    ap.add_argument("--deep", type=int, default=500, help="how many pages in the deep page is")
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args()
    n = c.rows_for(args)
    res = c.Result("catalog", rows=n, repeat=args.repeat, src=c.src_fingerprint())
    for backend in args.backends.split(","):
        if backend == "sqlite":
            bench_backend(res, "sqlite", None, n, args)
        elif backend == "postgresql":
            with pg_schema() as url:
                if url is None:
                    res.figure("postgresql", "unavailable", "", "server not reachable; skipped")
                    continue
                bench_backend(res, "postgresql", url, n, args)
        else:
            raise SystemExit(f"unknown backend {backend!r}")
    res.emit(args.json)


class pg_schema:
    """A fresh schema on the PostgreSQL server, dropped on exit; yields the catalog URL."""

    def __enter__(self) -> str | None:
        from sqlalchemy import create_engine, text

        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        try:
            self.engine = create_engine(PG_SERVER.replace("postgresql://",
                                                          "postgresql+psycopg://"))
            with self.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        except Exception as exc:  # noqa: BLE001 - report and skip
            c.log(f"PostgreSQL unavailable: {exc}")
            self.engine = None
            return None
        return f"{PG_SERVER}?options=-csearch_path%3D{self.name}"

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        if self.engine is not None:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
            self.engine.dispose()


def bench_backend(res: c.Result, backend: str, url: str | None, n: int, args: Any) -> None:
    import tarmac

    with c.workdir(f"catalog-{backend}") as work:
        p = tarmac.open(c.make_project(work / "proj", catalog_url=url))
        c.log(f"{backend}: inserting {n:,} runs, {2 * n:,} edges, {n:,} audit records")
        load_s, (run_ids, t_max) = c.timed(lambda: bulk_load(p, n))
        res.figure(f"{backend}: bulk load", load_s, "s",
                   f"{n:,} runs + {2 * n:,} edges + {n:,} audit records")
        rep = args.repeat

        def ms(fn: Any) -> float:
            return c.median(c.repeat(fn, rep, warmup=2)) * 1000

        first = p.catalog.list_runs(limit=100)
        assert len(first) == 100 and first.items[0].inputs, "runs page looks wrong"
        res.figure(f"{backend}: list_runs first page", ms(lambda: p.catalog.list_runs(limit=100)),
                   "ms", "100 runs with their edges")
        deep = min(args.deep, max(1, n // 100 - 1))
        c.log(f"{backend}: following {deep} cursors")
        cursor, follow_s = None, 0.0
        for _ in range(deep):
            dt, page = c.timed(lambda cur=cursor: p.catalog.list_runs(limit=100, cursor=cur))
            follow_s += dt
            cursor = page.next_cursor
        assert cursor is not None
        res.figure(f"{backend}: list_runs page {deep + 1}",
                   ms(lambda: p.catalog.list_runs(limit=100, cursor=cursor)), "ms",
                   f"walking {deep} pages took {follow_s:.2f} s "
                   f"({follow_s / deep * 1000:.1f} ms/page)")
        res.figure(f"{backend}: list_runs by job", ms(lambda: p.catalog.list_runs(
            job=JOBS[3], limit=100)), "ms", "first page, 1 job of 20")
        ids = random.Random(1).sample(run_ids, rep + 2)
        it = iter(ids * 2)
        res.figure(f"{backend}: get_run", ms(lambda: p.catalog.get_run(next(it))), "ms",
                   "random ids")
        res.figure(f"{backend}: audit first page", ms(lambda: p.ledger.audit(limit=100)), "ms")
        acur = None
        for _ in range(min(deep, max(1, n // 100 - 1))):
            acur = p.ledger.audit(limit=100, cursor=acur).next_cursor
        res.figure(f"{backend}: audit page deep", ms(lambda: p.ledger.audit(
            limit=100, cursor=acur)), "ms")
        res.figure(f"{backend}: audit by actor", ms(lambda: p.ledger.audit(
            actor=ACTORS[2], limit=100)), "ms", "first page, 1 actor of 10")
        res.figure(f"{backend}: audit by actor+since", ms(lambda: p.ledger.audit(
            actor=ACTORS[2], since_us=t_max - 3_600_000_000, limit=100)), "ms",
            "last hour only (~few rows)")

        c.log(f"{backend}: verify")
        times, v = [], None
        for _ in range(3):
            dt, v = c.timed(p.ledger.verify)
            times.append(dt)
        assert v is not None
        vs = c.median(times)
        res.figure(f"{backend}: ledger.verify", vs, "s",
                   f"{v.records:,} records, ok={v.ok}; {v.records / vs:,.0f} records/s")
        res.goal(f"{backend}: verify {n:,} audit records", vs, "s", "< 2", vs < 2 and v.ok)
        p.close()
        if backend == "sqlite":
            bench_copy(res, p.config.catalog, n)


def bench_copy(res: c.Result, source: str, n: int) -> None:
    """`tarmac catalog copy` of the SQLite catalog into PostgreSQL, then the rerun (which
    compares every row and copies nothing)."""
    from tarmac.catalog.copy import copy_catalog

    with pg_schema() as url:
        if url is None:
            res.figure("copy sqlite -> postgresql", "unavailable", "", "server not reachable")
            return
        c.log("copy: sqlite -> postgresql")
        first_s, first = c.timed(lambda: copy_catalog(source, url))
        assert first.verified and first.copied == first.source_rows
        res.figure("copy sqlite -> postgresql", first_s, "s",
                   f"{first.copied:,} rows ({n:,} runs, {2 * n:,} edges, {n:,} audit records), "
                   f"chain verified; {first.copied / first_s:,.0f} rows/s")
        again_s, again = c.timed(lambda: copy_catalog(source, url))
        assert again.copied == 0
        res.figure("copy rerun (all identical)", again_s, "s",
                   f"{again.source_rows:,} rows compared, 0 copied")


def bulk_load(p: Any, n: int) -> tuple[list[str], int]:
    """N runs (+2 edges each) and a valid N-record audit chain, via Core executemany."""
    from sqlalchemy import insert

    from tarmac.catalog import _tables as t
    from tarmac.ledger.chain import GENESIS, canonical, make_record

    rng = random.Random(7)
    t0 = 1_750_000_000_000_000
    step = 60_000_000  # one run per minute
    run_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]
    engine = p.catalog.engine
    for lo in range(0, n, CHUNK):
        runs, edges = [], []
        for i in range(lo, min(n, lo + CHUNK)):
            start = t0 + i * step
            failed = i % 50 == 0
            runs.append({
                "id": run_ids[i], "job": JOBS[i % len(JOBS)],
                "status": "failed" if failed else "succeeded", "actor": ACTORS[i % len(ACTORS)],
                "started_at": start, "ended_at": start + rng.randrange(1_000_000, 50_000_000),
                "error": "ValueError: boom" if failed else None,
                "params": json.dumps({"table": f"t{i % 100}"}), "host": "bench", "pid": 1000 + i,
            })
            edges.append({"run_id": run_ids[i], "role": "input", "dataset": f"t{(i + 1) % 100}",
                          "version": i // 100})
            edges.append({"run_id": run_ids[i], "role": "output", "dataset": f"t{i % 100}",
                          "version": i // 100})
        with engine.begin() as conn:
            conn.execute(insert(t.runs), runs)
            conn.execute(insert(t.lineage_edges), edges)
    prev, seq = GENESIS, 0
    t_max = t0
    for lo in range(0, n, CHUNK):
        recs = []
        for i in range(lo, min(n, lo + CHUNK)):
            seq += 1
            t_max = t0 + i * step + 30_000_000
            details = canonical({"run_id": run_ids[i], "version": i // 100, "rows_added": i % 997})
            r = make_record(seq, t_max, ACTORS[(i * 7) % len(ACTORS)], ACTIONS[i % len(ACTIONS)],
                            f"t{i % 100}", details, prev)
            prev = r.hash
            recs.append({"seq": r.seq, "time": r.time_us, "actor": r.actor, "action": r.action,
                         "target": r.target, "details": r.details, "prev_hash": r.prev_hash,
                         "hash": r.hash})
        with engine.begin() as conn:
            conn.execute(insert(t.audit_log), recs)
    from sqlalchemy import text

    with engine.connect() as conn:  # statistics, as autovacuum/ANALYZE would have them
        conn.execute(text("ANALYZE"))
        conn.commit()
    return run_ids, t_max


if __name__ == "__main__":
    main()
