"""What the ledger costs per write, on a SQLite catalog.

  commit     p.ledger.commit(action, target, details): one audit record in one catalog
             transaction (read the chain head, hash, insert)
  tiny write p.lake.write of a 1-row table (append) vs write_deltalake of the same row into a
             second table directly; the difference is what tarmac adds (implicit run open and
             finish, schema planning, _record: reloading the table, history, add actions,
             catalog upsert, lineage edge, audit record). Phases inside p.lake.write are timed
             by wrapping the functions (benchmark-side only).

Median (and p95) over N operations each; first-20 vs last-20 medians show growth with the
number of table versions.

    python benchmarks/bench_ledger.py [--rows N] [--quick] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

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
        probe = c.lake_probe()
        tarmac_t, phases = [], []
        for i in range(n):
            tarmac_t.append(c.timed(lambda i=i: p.lake.write("tiny", row(i), mode="append"))[0])
            phases.append(probe.take())
        probe.restore()

        dm, tm = c.median(direct) * 1000, c.median(tarmac_t) * 1000
        res.figure("tiny write: write_deltalake direct", dm, "ms",
                   f"p95 {c.p95(direct) * 1000:.1f} ms; first20 {med(direct[:20]):.1f} / "
                   f"last20 {med(direct[-20:]):.1f} ms")
        res.figure("tiny write: p.lake.write", tm, "ms",
                   f"p95 {c.p95(tarmac_t) * 1000:.1f} ms; first20 {med(tarmac_t[:20]):.1f} / "
                   f"last20 {med(tarmac_t[-20:]):.1f} ms")
        overhead = tm - dm
        res.figure("tiny write: tarmac overhead (lake - direct)", overhead, "ms")

        def phase(key: str, rows: list[dict[str, float]] = phases) -> float:
            return c.median([ph.get(key, 0.0) for ph in rows]) * 1000

        delta = [ph.get("delta_write", 0.0) for ph in phases]
        record = [ph.get("record", 0.0) for ph in phases]
        other = [t - d - r - ph.get("open_existing", 0.0) - ph.get("run_finish", 0.0)
                 for t, d, r, ph in zip(tarmac_t, delta, record, phases, strict=True)]
        loads = c.median([ph.get("delta_open#calls", 0.0) for ph in phases])
        res.figure("  phase: Delta write (write_deltalake)", phase("delta_write"), "ms")
        res.figure("  phase: open existing table (_open_or_none)", phase("open_existing"), "ms")
        res.figure("  phase: _record total", phase("record"), "ms",
                   f"first20 {med(record[:20]):.1f} / last20 {med(record[-20:]):.1f} ms")
        reload = [ph.get("record", 0.0) - ph.get("delta_history", 0.0)
                  - ph.get("add_actions", 0.0) - ph.get("ledger_commit", 0.0) for ph in phases]
        res.figure("    _record: DeltaTable reload (+ small rest)", med(reload), "ms",
                   f"first20 {med(reload[:20]):.1f} / last20 {med(reload[-20:]):.1f} ms")
        res.figure("    _record: history()", phase("delta_history"), "ms")
        res.figure("    _record: get_add_actions()", phase("add_actions"), "ms")
        res.figure("    _record: ledger.commit", phase("ledger_commit"), "ms")
        res.figure("  all DeltaTable() loads in the write", phase("delta_open"), "ms",
                   f"{loads:.0f} per write")
        res.figure("  phase: run finish (_finish)", phase("run_finish"), "ms")
        res.figure("  phase: run open + schema planning (rest)", c.median(other) * 1000, "ms")
        catalog = [ph.get("ledger_commit", 0.0) + ph.get("run_finish", 0.0) + o
                   for ph, o in zip(phases, other, strict=True)]
        extra_delta = [ph.get("open_existing", 0.0) + ph.get("record", 0.0)
                       - ph.get("ledger_commit", 0.0) for ph in phases]
        not_delta = [t - d for t, d in zip(tarmac_t, delta, strict=True)]
        cat_ms = med(catalog)
        res.figure("tiny write: total minus Delta write", med(not_delta), "ms",
                   "everything tarmac adds around write_deltalake")
        res.figure("  = ledger catalog work (run open+commit+finish)", cat_ms, "ms",
                   "3 SQLite transactions")
        res.figure("  + extra Delta log reads (table loads, history)", med(extra_delta), "ms",
                   f"first20 {med(extra_delta[:20]):.1f} / last20 {med(extra_delta[-20:]):.1f}")
        res.goal("tiny write: ledger catalog work per write", cat_ms, "ms", "< 5", cat_ms < 5)
        res.goal("tiny write: all overhead beyond the Delta write", med(not_delta), "ms", "< 5",
                 med(not_delta) < 5)
        v = p.ledger.verify()
        res.figure("audit chain after the run", v.records, "records", f"verify ok={v.ok}")
        p.close()
    res.emit(args.json)


def med(xs: list[float]) -> float:
    return c.median(xs) * 1000


if __name__ == "__main__":
    main()
