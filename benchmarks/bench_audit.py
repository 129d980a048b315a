"""Audit appends per second, one lock per record vs batched, on SQLite and PostgreSQL.

  single       p.ledger.commit per record: one catalog transaction (audit lock, head read, hash,
               insert) per record, what every lake write pays today
  batched      p.ledger.append of --batch records: one lock, one head read, one multi-row insert
  per batch    p.ledger.commit_batch over --batch ids: ONE record standing for the batch (count +
               SHA-256 of the ids), how prediction-log flushes and stream micro-batches append;
               counted in events/s
  reference    raw DB-API executemany of the same precomputed rows into a copy of the audit
               table, --batch rows per transaction: the ceiling for the batched path
  lake write   the catalog's share of one tiny p.lake.write (time inside Catalog.write),
               which the batched paths must not grow
  export       p.ledger.export of the whole trail to a file, JSON lines and CSV (keyset pages
               of 5,000, one JSON object per record); reference: one raw cursor over the
               audit table writing each row as a JSON array, no paging and no ISO times

Runs against whichever tarmac is imported, so ``PYTHONPATH=<older checkout>/src`` measures the
"before" (the batched figures are skipped where the ledger has no ``append``).

    python benchmarks/bench_audit.py [--rows N] [--batch B] [--quick] [--json]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from bench_catalog import pg_schema  # noqa: E402


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=5000, quick_rows=1000)
    ap.add_argument("--batch", type=int, default=500, help="records per batched append")
    ap.add_argument("--writes", type=int, default=None,
                    help="tiny lake writes timed (default 100; 30 with --quick)")
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args()
    n = c.rows_for(args)
    writes = args.writes or (30 if args.quick else 100)
    res = c.Result("audit", records=n, batch=args.batch, writes=writes,
                   src=c.src_fingerprint())
    for backend in args.backends.split(","):
        if backend == "sqlite":
            bench_backend(res, "sqlite", None, n, args.batch, writes)
        elif backend == "postgresql":
            with pg_schema() as url:
                if url is None:
                    res.figure("postgresql", "unavailable", "", "server not reachable; skipped")
                    continue
                bench_backend(res, "postgresql", url, n, args.batch, writes)
        else:
            raise SystemExit(f"unknown backend {backend!r}")
    res.emit(args.json)


def bench_backend(res: c.Result, backend: str, url: str | None, n: int, batch: int,
                  writes: int) -> None:
    import tarmac
    from tarmac.ledger import Ledger

    with c.workdir(f"audit-{backend}") as work:
        p = tarmac.open(c.make_project(work / "proj", catalog_url=url))
        for i in range(5):  # warm-up: connections, statement caches
            p.ledger.commit("bench.warmup", "warm", {"i": i})

        c.log(f"{backend}: {n:,} single appends")
        single_s, _ = c.timed(lambda: [p.ledger.commit("bench.note", f"target_{i % 10}",
                                                       {"i": i, "note": "x" * 40})
                                       for i in range(n)])
        single = n / single_s
        res.figure(f"{backend}: single appends", single, "records/s",
                   f"{single_s * 1e6 / n:.0f} us per record, one transaction each")

        if hasattr(Ledger, "append"):
            from tarmac.ledger import AuditEntry

            c.log(f"{backend}: {n:,} appends in batches of {batch}")

            def batched() -> None:
                for start in range(0, n, batch):
                    p.ledger.append([AuditEntry("bench.note", f"target_{i % 10}",
                                                {"i": i, "note": "x" * 40})
                                     for i in range(start, min(n, start + batch))])

            batched_s, _ = c.timed(batched)
            rate = n / batched_s
            res.figure(f"{backend}: batched appends", rate, "records/s",
                       f"batches of {batch}; {rate / single:.1f}x single")
            res.goal(f"{backend}: batched vs single appends", rate / single, "x", ">= 5",
                     rate / single >= 5)

            ids = [f"req-{i:012d}" for i in range(n)]
            c.log(f"{backend}: {n:,} events through commit_batch, {batch} per record")

            def per_batch() -> None:
                for start in range(0, n, batch):
                    p.ledger.commit_batch("bench.flush", "predictions", ids[start:start + batch])

            per_batch_s, _ = c.timed(per_batch)
            res.figure(f"{backend}: commit_batch", n / per_batch_s, "events/s",
                       f"one record per {batch} ids (count + sha256)")

            ref = reference(p, n, batch)
            res.figure(f"{backend}: reference raw executemany", ref, "records/s",
                       f"same rows, {batch} per transaction, no chain; batched reaches "
                       f"{rate / ref:.0%} of it")
        else:
            res.figure(f"{backend}: batched appends", "n/a", "",
                       "this version of the ledger has no append")

        overhead = lake_write_overhead(p, writes)
        res.figure(f"{backend}: catalog share of a tiny lake write", overhead, "ms",
                   f"median over {writes} writes (time inside Catalog.write)")
        for fmt in ("jsonl", "csv"):
            out = work / f"audit.{fmt}"
            export_s, done = c.timed(lambda fmt=fmt, out=out: p.ledger.export(out, format=fmt))
            res.figure(f"{backend}: export {fmt}", done.count / export_s, "records/s",
                       f"{done.count:,} records, {out.stat().st_size / 2**20:.1f} MiB")
        ref_n, ref_s = export_reference(p, work / "audit-ref.jsonl")
        res.figure(f"{backend}: reference raw cursor to JSON", ref_n / ref_s, "records/s",
                   "one query, each row json.dumps'd as an array")
        v = p.ledger.verify()
        res.figure(f"{backend}: audit chain after the run", v.records, "records",
                   f"verify ok={v.ok}")
        if not v.ok:
            raise SystemExit(f"{backend}: the chain does not verify: {v.problem}")
        p.close()


def reference(p: Any, n: int, batch: int) -> float:
    """Raw DB-API executemany into a copy of the audit table: the same rows, no chain."""
    from tarmac.ledger.chain import GENESIS, canonical, make_record

    rows, prev = [], GENESIS
    for i in range(n):
        rec = make_record(i + 1, 1, "bench", "bench.note", f"target_{i % 10}",
                          canonical({"i": i, "note": "x" * 40}), prev)
        rows.append((rec.seq, rec.time_us, rec.actor, rec.action, rec.target, rec.details,
                     rec.prev_hash, rec.hash))
        prev = rec.hash
    sqlite = p.catalog.engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    raw = p.catalog.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("CREATE TABLE audit_ref (seq BIGINT PRIMARY KEY, time BIGINT NOT NULL, "
                    "actor VARCHAR(128) NOT NULL, action VARCHAR(64) NOT NULL, "
                    "target VARCHAR(256) NOT NULL, details TEXT NOT NULL, "
                    "prev_hash VARCHAR(64) NOT NULL, hash VARCHAR(64) NOT NULL)")
        if not sqlite:
            raw.commit()
        insert = f"INSERT INTO audit_ref VALUES ({', '.join([mark] * 8)})"
        start = time.perf_counter()
        for lo in range(0, n, batch):
            if sqlite:
                cur.execute("BEGIN")  # the engine runs SQLite in autocommit mode
            cur.executemany(insert, rows[lo:lo + batch])
            if sqlite:
                cur.execute("COMMIT")
            else:
                raw.commit()
        elapsed = time.perf_counter() - start
        cur.close()
    finally:
        raw.close()
    return n / elapsed


def export_reference(p: Any, path: Path) -> tuple[int, float]:
    """Every audit row through one raw DB-API cursor, written as a JSON array per line."""
    import json

    raw = p.catalog.engine.raw_connection()
    n = 0
    start = time.perf_counter()
    try:
        cur = raw.cursor()
        cur.execute("SELECT seq, time, actor, action, target, details, prev_hash, hash, mac, "
                    "key_id FROM audit_log ORDER BY seq")
        with open(path, "w", encoding="utf-8") as fh:
            while rows := cur.fetchmany(5000):
                for row in rows:
                    fh.write(json.dumps(list(row)) + "\n")
                n += len(rows)
        cur.close()
    finally:
        raw.close()
    return n, time.perf_counter() - start


def lake_write_overhead(p: Any, writes: int) -> float:
    """Median ms one tiny ``p.lake.write`` spends inside catalog transactions."""
    from tarmac.catalog.store import Catalog

    spent: list[float] = []
    original = Catalog.write

    @contextmanager
    def timed_write(self: Catalog) -> Iterator[Any]:
        start = time.perf_counter()
        with original(self) as conn:
            yield conn
        spent[-1] += time.perf_counter() - start

    def row(i: int) -> pa.Table:
        return pa.table({"id": pa.array([i], pa.int64()), "value": pa.array([i * 0.5])})

    for i in range(3):
        p.lake.write("warm", row(i))
    Catalog.write = timed_write  # type: ignore[method-assign]
    try:
        for i in range(writes):
            spent.append(0.0)
            p.lake.write("tiny", row(i))
    finally:
        Catalog.write = original  # type: ignore[method-assign]
    return c.median(spent) * 1000


if __name__ == "__main__":
    main()
