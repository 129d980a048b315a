"""Batch scoring: ``p.models.score`` over a lake table vs raw DuckDB + predict_proba + Parquet.

A lake table of N rows (an id and 20 float features; 1M, 100k with ``--quick``) is scored by a
scikit-learn HistGradientBoostingClassifier (fitted on 20k rows of the same distribution and
registered as the champion of "m"). Tarmac: ``p.models.score("m", "to_score", "scores")``, i.e.
signature checks, the governed run, lineage and audit, staged Parquet files and one Delta commit.
Reference in the same run, on the same files and batch size: a DuckDB connection streaming
``read_parquet`` over the table's data files as Arrow record batches, ``to_pandas`` of each
batch, ``predict_proba`` and a ``pyarrow.parquet.ParquetWriter`` writing id + score. Both are
timed ``--repeat`` times (median). The process's peak RSS during each phase is reported too
(``VmHWM``, reset between phases through ``/proc/self/clear_refs``).

    python benchmarks/bench_score.py [--rows N] [--quick] [--json] [--repeat R]
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

FEATURES = [f"f{i:02d}" for i in range(20)]
BATCH = 65_536
GOAL = 0.75  # Tarmac's rows/s as a share of the reference's


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=1_000_000, quick_rows=100_000)
    ap.add_argument("--repeat", type=int, help="timed runs of each (default 3; 2 with --quick)")
    args = ap.parse_args()
    n = c.rows_for(args)
    repeat = args.repeat or (2 if args.quick else 3)
    res = c.Result("score", rows=n, features=len(FEATURES), batch_rows=BATCH, repeat=repeat,
                   model="HistGradientBoostingClassifier", **c.env_info())
    with c.workdir("score") as work:
        c.guarded(res, "score", lambda: bench(res, work, n, repeat))
    res.figure("machine load (1-min average) at the end", round(os.getloadavg()[0], 1), "",
               f"{os.cpu_count()} CPUs; other processes' load inflates wall times")
    res.emit(args.json)


def frame(n: int, seed: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    cols: dict[str, Any] = {"id": pa.array(np.arange(start, start + n), pa.int64())}
    cols.update({f: x[:, i] for i, f in enumerate(FEATURES)})
    return pa.table(cols)


def register(p: Any, est: Any) -> None:
    """Register ``est`` as version 1 of "m" and make it the champion (as bench_models does:
    a synthetic project has nothing to validate, so the promotion is forced)."""
    import io

    import pyarrow.parquet as pq

    from tarmac.catalog import DatasetVersion, now_us
    from tarmac.catalog import models as mcat
    from tarmac.models import flavors
    from tarmac.models.signature import Signature

    sink = io.BytesIO()
    pq.write_table(frame(10, 9).drop(["id"]), sink)
    sig = Signature([(f, "float64") for f in FEATURES],
                    [("prediction", "int64"), ("score", "float64")])
    mv = mcat.ModelVersion(
        model="m", version=1, run_id=str(uuid.uuid4()), flavor="sklearn", task="binary",
        artifact=p.models.artifacts.put(flavors.dumps(est)),
        holdout=p.models.artifacts.put(sink.getvalue()), signature=sig.to_dict(),
        spec={"classes": [0, 1]}, created_at=now_us(), actor=p.ledger.actor)
    p.ledger.commit("model.register", "model:m", {"version": 1},
                    change=lambda conn: mcat.insert_version(conn, mv),
                    output=DatasetVersion("model:m", 1))
    p.models.promote("m", 1, force=True, reason="benchmark: nothing to validate")


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux), so the next reading is that phase's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def reference(files: list[str], est: Any, out: Path) -> int:
    """Raw DuckDB fetch + predict_proba + Parquet write of id and score; returns rows."""
    import duckdb
    import pyarrow.parquet as pq

    con = duckdb.connect()
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    reader = con.sql(f"SELECT * FROM read_parquet([{listing}])").to_arrow_reader(BATCH)
    writer = None
    rows = 0
    for batch in reader:
        df = batch.to_pandas()
        score = est.predict_proba(df[FEATURES])[:, 1]
        table = pa.table({"id": batch.column("id"), "score": score})
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema, compression="snappy")
        writer.write_table(table)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    con.close()
    return rows


def bench(res: c.Result, work: Path, n: int, repeat: int) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    import tarmac

    c.make_project(work / "proj")
    p = tarmac.open(work / "proj")
    try:
        train = frame(20_000, 1).to_pandas()
        y = (train["f00"] - 0.5 * train["f01"] + 0.3 * train["f02"] ** 2 > 0.2).astype(int)
        est = HistGradientBoostingClassifier(max_iter=50).fit(train[FEATURES], y)
        register(p, est)
        c.log(f"writing {n:,} rows to score")
        step = 500_000
        for start in range(0, n, step):
            p.lake.write("to_score", frame(min(step, n - start), 2 + start, start))
        files = [u.removeprefix("file://") for u in p.lake.table("to_score").file_uris()]

        tarmac_s = []
        reset_peak_rss()
        for i in range(repeat):
            c.log(f"tarmac: p.models.score over {n:,} rows ({i + 1}/{repeat})")
            t = time.perf_counter()
            result = p.models.score("m", "to_score", "scores", batch_rows=BATCH)
            tarmac_s.append(time.perf_counter() - t)
            assert result.rows_scored == n, result
        hwm_tarmac = c.proc_status_kib("VmHWM")
        reset_peak_rss()
        ref_s = []
        for i in range(repeat):
            c.log(f"reference: DuckDB + predict_proba + Parquet ({i + 1}/{repeat})")
            t = time.perf_counter()
            rows = reference(files, est, work / f"ref-{i}.parquet")
            ref_s.append(time.perf_counter() - t)
            assert rows == n
        hwm_ref = c.proc_status_kib("VmHWM")
        check = p.lake.read("scores", columns=["id", "score"]).sort_by("id")
        expected = est.predict_proba(frame(min(1000, n), 2).to_pandas()[FEATURES])[:, 1]
        assert np.allclose(check.column("score").to_numpy()[: len(expected)], expected)
    finally:
        p.close()
    t_med, r_med = c.median(tarmac_s), c.median(ref_s)
    res.figure("tarmac p.models.score", round(n / t_med), "rows/s",
               f"median of {repeat}: {t_med:.2f} s; one Delta commit, run + lineage + audit")
    res.figure("reference DuckDB + predict_proba + Parquet", round(n / r_med), "rows/s",
               f"median of {repeat}: {r_med:.2f} s")
    res.figure("peak RSS while tarmac scores", round(c.mib(hwm_tarmac)), "MiB",
               f"{n:,} rows of {len(FEATURES)} floats streamed in batches of {BATCH:,}")
    res.figure("peak RSS while the reference scores", round(c.mib(hwm_ref)), "MiB",
               "the process's peak since the counter was reset (/proc/self/clear_refs)")
    ratio = r_med / t_med
    res.goal("tarmac throughput vs reference", round(ratio, 2), "x", f">= {GOAL}",
             ratio >= GOAL)


if __name__ == "__main__":
    main()
