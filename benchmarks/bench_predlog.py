"""Prediction-log appends per second and flush rows per second, against raw references run on
the same machine in the same run.

  append (batch)     PredictionLog.append of one record per call (a 1-row request), fsync
                     policy "batch": orjson encode + CRC frame + one write(2), fsync off-path
  append (always)    the same with an fdatasync in every append (power-loss safe per request)
  ref raw write      os.write of the same framed bytes, one call per record, nothing else:
                     the floor for an append that is one syscall
  flush              PredictionLog.flush of every appended record into the predictions Delta
                     table: read segment, decode, Arrow, Delta commit, one audit record
  ref parquet        pyarrow.parquet.write_table of the same rows (already an Arrow table) to
                     one file: the floor for turning those rows into a table file

    python benchmarks/bench_predlog.py [--rows N] [--quick] [--json]
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402


def records(n: int) -> list:
    from tarmac.serving.predlog import PredictionRecord, new_prediction_id

    rng = np.random.default_rng(7)
    values = rng.random((n, 20)).round(4).tolist()
    now = datetime.now(UTC)
    names = [f"f{j}" for j in range(20)]
    out = []
    for i in range(n):
        feats = dict(zip(names, values[i], strict=True))
        out.append(PredictionRecord(
            id=new_prediction_id(), request_id=f"req-{i}", time=now, endpoint="churn",
            model="churn", version=3, role="champion", features=feats,
            feature_times=dict.fromkeys(names, now), feature_status=dict.fromkeys(names, "present"),
            request={"customer_id": i}, score=float(values[i][0]), label=bool(i % 2),
            latency_ms=1.0))
    return out


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=100_000, quick_rows=5_000)
    args = ap.parse_args()
    n = c.rows_for(args)
    res = c.Result("predlog", records=n, features=20, src=c.src_fingerprint())

    import pyarrow.parquet as pq

    import tarmac
    from tarmac.serving.predlog import PredictionLog
    from tarmac.serving.predlog._record import encode, to_table
    from tarmac.serving.predlog._segment import frame

    c.log(f"building {n:,} records")
    recs = records(n)
    framed = [frame(encode(r)) for r in recs]
    avg = sum(map(len, framed)) / n
    with c.workdir("predlog") as work:
        p = tarmac.open(c.make_project(work / "proj"))

        ref_path = work / "raw.bin"
        fd = os.open(ref_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        c.log("reference: raw os.write")
        ref_s, _ = c.timed(lambda: [os.write(fd, b) for b in framed])
        os.close(fd)
        ref_rate = n / ref_s

        log = PredictionLog(p, flush_every_s=3600, max_pending_bytes=1 << 40,
                            segment_bytes=1 << 40)
        log.start()
        c.log(f"{n:,} appends, fsync=batch")
        lat: list[float] = []
        t0 = time.perf_counter()
        for r in recs:
            t = time.perf_counter()
            log.append([r])
            lat.append(time.perf_counter() - t)
        append_s = time.perf_counter() - t0
        rate = n / append_s
        res.figure("append (batch), 1 record per call", rate, "appends/s",
                   f"{avg:.0f} B per record; p99 {sorted(lat)[int(0.99 * (n - 1))] * 1e6:.0f} us")
        res.figure("ref raw os.write of the same bytes", ref_rate, "writes/s",
                   f"append reaches {rate / ref_rate:.0%} of it (encode + CRC + lock)")

        c.log("flush")
        flush_s, rows = c.timed(log.flush)
        assert rows == n, (rows, n)
        flush_rate = n / flush_s
        table = to_table([encode(r) for r in recs])
        c.log("reference: pyarrow -> parquet")
        pq_s, _ = c.timed(lambda: pq.write_table(table, work / "ref.parquet"))
        pq_rate = n / pq_s
        res.figure("flush to the predictions table", flush_rate, "rows/s",
                   f"{flush_s:.2f} s for {n:,} rows in one Delta commit + audit record")
        res.figure("ref pyarrow -> parquet of the same rows", pq_rate, "rows/s",
                   f"flush reaches {flush_rate / pq_rate:.0%} of it (decode + JSON + Delta)")
        log.close()

        c.log(f"{n // 100:,} appends of 100 records (100-row requests)")
        batched = PredictionLog(p, flush_every_s=3600, max_pending_bytes=1 << 40,
                                segment_bytes=1 << 40)
        batched.start()
        chunks = [recs[i:i + 100] for i in range(0, n - n % 100, 100)]
        batch_s, _ = c.timed(lambda: [batched.append(ch) for ch in chunks])
        res.figure("append (batch), 100 records per call", len(chunks) * 100 / batch_s,
                   "records/s", "one write(2) per call")
        batched.close()

        m = max(200, n // 20)
        always = PredictionLog(p, fsync="always", flush_every_s=3600, max_pending_bytes=1 << 40)
        always.start()
        c.log(f"{m:,} appends, fsync=always")
        always_s, _ = c.timed(lambda: [always.append([r]) for r in recs[:m]])
        res.figure("append (always), 1 record per call", m / always_s, "appends/s",
                   f"an fdatasync per append; {always_s * 1e6 / m:.0f} us each")
        always.close()
        p.close()

    res.goal("append (batch) rate, 20 features + their times", rate, "appends/s", ">= 20,000",
             rate >= 20_000)
    res.goal("flush vs parquet reference", flush_rate / pq_rate, "x", ">= 0.1",
             flush_rate / pq_rate >= 0.1)
    res.emit(args.json)


if __name__ == "__main__":
    main()
