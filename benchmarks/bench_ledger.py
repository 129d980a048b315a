"""What the ledger costs per write, on a SQLite catalog.

  commit     p.ledger.commit(action, target, details): one audit record in one catalog
             transaction (read the chain head, hash, insert)
  tiny write p.lake.write of a 1-row table (append) vs write_deltalake of the same row into a
             second table directly. The ledger's share is the time spent inside catalog
             transactions (run open; catalog entry + lineage edge + audit record + run close),
             timed by wrapping Catalog.write (benchmark-side only).

Median (and p95) over N operations each; first-20 vs last-20 medians show growth with the
number of table versions.

    python benchmarks/bench_ledger.py [--rows N] [--quick] [--json]
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


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=200, quick_rows=50)
    args = ap.parse_args()
    n = c.rows_for(args)
    res = c.Result("ledger", ops=n, catalog="sqlite", **c.env_info())

    from deltalake import write_deltalake

    import tarmac

    with c.workdir("ledger") as work:
        p = tarmac.open(c.make_project(work / "proj"))

        c.log(f"{n} x p.ledger.commit")
        for i in range(5):  # warm-up
            p.ledger.commit("bench.warmup", "warm", {"i": i})
        commits = [c.timed(lambda i=i: p.ledger.commit("bench.note", f"target_{i % 10}",
                                                       {"i": i, "note": "x" * 40}))[0]
                   for i in range(n)]
        cm = c.median(commits) * 1000
        res.figure("ledger.commit", cm, "ms", f"p95 {c.p95(commits) * 1000:.2f} ms")
        res.goal("ledger.commit per record", cm, "ms", "< 5", cm < 5)

        c.log(f"{n} x tiny writes (direct delta-rs, then p.lake.write)")
        direct_uri = str(work / "direct" / "tiny")

        def row(i: int) -> pa.Table:
            return pa.table({"id": pa.array([i], pa.int64()), "value": pa.array([i * 0.5]),
                             "label": pa.array([f"row {i}"])})

        direct = [c.timed(lambda i=i: write_deltalake(direct_uri, row(i), mode="append"))[0]
                  for i in range(n)]
        from tarmac.catalog.store import Catalog

        ledger_time: list[float] = []
        transactions: list[int] = []
        original_write = Catalog.write

        @contextmanager
        def timed_write(self: Catalog) -> Iterator[Any]:
            start = time.perf_counter()
            with original_write(self) as conn:
                yield conn
            ledger_time[-1] += time.perf_counter() - start
            transactions[-1] += 1

        Catalog.write = timed_write  # type: ignore[method-assign]
        tarmac_t = []
        try:
            for i in range(n):
                ledger_time.append(0.0)
                transactions.append(0)
                tarmac_t.append(c.timed(lambda i=i: p.lake.write("tiny", row(i)))[0])
        finally:
            Catalog.write = original_write  # type: ignore[method-assign]

        dm, tm = c.median(direct) * 1000, c.median(tarmac_t) * 1000
        res.figure("tiny write: write_deltalake direct", dm, "ms",
                   f"p95 {c.p95(direct) * 1000:.1f} ms; first20 {med(direct[:20]):.1f} / "
                   f"last20 {med(direct[-20:]):.1f} ms")
        res.figure("tiny write: p.lake.write", tm, "ms",
                   f"p95 {c.p95(tarmac_t) * 1000:.1f} ms; first20 {med(tarmac_t[:20]):.1f} / "
                   f"last20 {med(tarmac_t[-20:]):.1f} ms")
        res.figure("tiny write: ratio direct/tarmac", dm / tm, "x",
                   "tarmac reuses the table snapshot; direct reloads the log each time")
        lm = med(ledger_time)
        res.figure("  of which ledger (catalog transactions)", lm, "ms",
                   f"{c.median(transactions):.0f} transactions per write: run open, then "
                   "catalog entry + lineage + audit + run close")
        res.figure("  of which Delta and schema work", med(
            [t - lt for t, lt in zip(tarmac_t, ledger_time, strict=True)]), "ms")
        res.goal("tiny write: ledger overhead per write", lm, "ms", "< 5", lm < 5)
        v = p.ledger.verify()
        res.figure("audit chain after the run", v.records, "records", f"verify ok={v.ok}")
        p.close()
    res.emit(args.json)


def med(xs: list[float]) -> float:
    return c.median(xs) * 1000


if __name__ == "__main__":
    main()
