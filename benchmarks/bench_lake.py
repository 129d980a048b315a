"""Lake write/read/merge throughput against raw pyarrow.parquet, and the memory a merge needs.

(a) write N rows x 12 columns: pyarrow.parquet.write_table vs p.lake.write(mode="append")
(b) read them back: pyarrow.parquet.read_table vs p.lake.read
(d) merge 200 rows (half updates of random ids, half inserts): seconds and peak memory, measured
    in a child process (VmHWM from /proc), for tarmac and for delta-rs called directly; and the
    same with clustered keys (updates of the newest ids), where delta-rs can prune files
(c) merge N/10 rows (half updates, half inserts): seconds and peak memory (child process)

    python benchmarks/bench_lake.py [--rows N] [--quick] [--json]
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TABLE = "events"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = c.parser(__doc__.splitlines()[0], default_rows=10_000_000, quick_rows=1_000_000)
    ap.add_argument("--reads", type=int, default=3, help="read repetitions (median)")
    ap.add_argument("--writes", type=int, default=3, help="write repetitions (median)")
    args = ap.parse_args()
    n = c.rows_for(args)
    big_merge = max(1000, n // 10)
    res = c.Result("lake", rows=n, columns=12, merge_rows=big_merge, **c.env_info())

    c.log(f"generating {n:,} rows x 12 columns")
    gen_s, table = c.timed(lambda: c.gen_table(n))
    arrow_mib = table.nbytes / 2**20
    res.figure("in-memory Arrow size", arrow_mib, "MiB", f"generated in {gen_s:.1f} s")

    from deltalake import DeltaTable, write_deltalake

    import tarmac

    with c.workdir("lake") as work:
        # (a) write ---------------------------------------------------------------------------
        raw_dir = work / "raw"
        project = c.make_project(work / "proj")
        p = tarmac.open(project)
        lake_dir = work / "proj" / "lake" / TABLE
        raw_t, direct_t, lake_t, phases = [], [], [], {}
        for i in range(args.writes):  # interleaved rounds; the first lake write is kept
            c.log(f"write round {i + 1}/{args.writes}: raw, delta-rs direct, p.lake.write")
            shutil.rmtree(raw_dir, ignore_errors=True)
            raw_dir.mkdir()
            raw_t.append(c.timed(lambda: pq.write_table(table, raw_dir / "part-0.parquet"))[0])
            direct_t.append(c.timed(lambda: write_deltalake(
                str(work / "direct"), table, mode="append"))[0])
            shutil.rmtree(work / "direct")
            name = TABLE if i == 0 else f"scratch_{i}"
            probe = c.lake_probe()
            lake_t.append(c.timed(lambda n_=name: p.lake.write(n_, table, mode="append"))[0])
            phases = phases or probe.take()
            probe.restore()
            if i:
                shutil.rmtree(work / "proj" / "lake" / name)
        raw_w, direct_w, lake_w = c.median(raw_t), c.median(direct_t), c.median(lake_t)
        raw_rps, lake_rps = n / raw_w, n / lake_w
        w_ratio = lake_rps / raw_rps
        spread = f"median of {args.writes}"
        res.figure("write raw pyarrow", raw_rps, "rows/s",
                   f"{spread}: {raw_w:.2f} s, {c.dir_bytes(raw_dir) / 2**20:.0f} MiB on disk")
        res.figure("write write_deltalake direct", n / direct_w, "rows/s",
                   f"{spread}: {direct_w:.2f} s: the Delta writer alone, without tarmac")
        res.figure("write p.lake.write append", lake_rps, "rows/s",
                   f"{spread}: {lake_w:.2f} s, {c.dir_bytes(lake_dir) / 2**20:.0f} MiB, "
                   f"{len(DeltaTable(str(lake_dir)).file_uris())} files")
        res.figure("  of which Delta write", phases.get("delta_write", 0.0), "s",
                   "first lake write")
        res.figure("  of which _record (catalog+audit)", phases.get("record", 0.0), "s",
                   f"ledger.commit {phases.get('ledger_commit', 0.0) * 1000:.1f} ms")
        res.figure("write ratio lake/raw", w_ratio, "x")
        res.goal("write throughput lake/raw", w_ratio, "x", ">= 0.8", w_ratio >= 0.8)

        # (b) read ----------------------------------------------------------------------------
        c.log("reads")
        raw_r = c.median(c.repeat(lambda: pq.read_table(raw_dir / "part-0.parquet"),
                                  args.reads, warmup=1))
        lake_r = c.median(c.repeat(lambda: p.lake.read(TABLE), args.reads, warmup=1))
        files = DeltaTable(str(lake_dir)).file_uris()
        files_r = c.median(c.repeat(lambda: pq.read_table(files), args.reads, warmup=1))
        r_ratio = (n / lake_r) / (n / raw_r)
        res.figure("read raw pq.read_table", n / raw_r, "rows/s", f"median {raw_r:.2f} s (warm)")
        res.figure("read p.lake.read", n / lake_r, "rows/s", f"median {lake_r:.2f} s (warm)")
        res.figure("read pq.read_table of the Delta files", n / files_r, "rows/s",
                   f"median {files_r:.2f} s: same files as the lake, without tarmac")
        res.figure("read ratio lake/raw", r_ratio, "x")
        res.goal("read throughput lake/raw", r_ratio, "x", ">= 0.8", r_ratio >= 0.8)
        p.close()
        table_rows = n
        table = None  # free the memory before the merges

        # (d) small merges, then (c) the big one, each in a child process ---------------------
        next_id = n
        limit_mib = arrow_mib * 0.25  # "far below the table's size": a quarter at most
        variants = [
            ("merge 200 random keys, tarmac", {"n": 200, "how": "tarmac", "keys": "random"}),
            ("merge 200 random keys, delta-rs direct", {"n": 200, "how": "direct",
                                                        "keys": "random"}),
            ("merge 200 clustered keys, tarmac", {"n": 200, "how": "tarmac", "keys": "recent"}),
            ("merge 200 clustered keys, delta-rs streamed_exec=False",
             {"n": 200, "how": "direct_nostream", "keys": "recent"}),
            (f"merge {big_merge:,} random keys, tarmac", {"n": big_merge, "how": "tarmac",
                                                          "keys": "random"}),
        ]
        for label, spec in variants:
            c.log(label)
            spec.update(project=str(project), table=TABLE, table_rows=n, next_id=next_id,
                        seed=len(label) + next_id)
            out = run_child(spec)
            next_id += out["inserted"]
            table_rows += out["inserted"]
            res.figure(label, out["seconds"], "s",
                       f"peak +{out['peak_delta_mib']:.0f} MiB over {out['baseline_mib']:.0f} MiB"
                       f" baseline; files -{out['files_removed']}/+{out['files_added']}; "
                       f"{out['updated']} upd, {out['inserted']} ins")
            if label == variants[0][0]:
                res.goal("merge 200 rows: peak memory delta", out["peak_delta_mib"], "MiB",
                         f"<= 25% of Arrow size ({limit_mib:.0f} MiB)",
                         out["peak_delta_mib"] <= limit_mib)
            if spec["n"] == big_merge:
                res.goal(f"merge {big_merge:,} rows: time", out["seconds"], "s", "< 15",
                         out["seconds"] < 15)

        dt = DeltaTable(str(lake_dir))
        actions = pa.table(dt.get_add_actions(flatten=True))
        got = int(pc.sum(actions["num_records"]).as_py())
        res.figure("rows after merges (check)", got, "rows",
                   "ok" if got == table_rows else f"EXPECTED {table_rows:,}")
    res.emit(args.json)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    return c.run_child(__file__, spec)


def child(spec: dict[str, Any]) -> None:
    """One merge in a fresh process; prints seconds and memory as JSON."""
    from deltalake import DeltaTable

    import tarmac

    n, rows = spec["n"], spec["table_rows"]
    source = c.merge_source(n, rows, seed=spec["seed"], next_id=spec["next_id"])
    if spec["keys"] == "recent":  # updates of the newest original ids: a narrow key range
        half = n // 2
        ids = np.concatenate([np.arange(rows - half, rows, dtype=np.int64),
                              source["id"].to_numpy()[half:]])
        source = source.set_column(0, "id", pa.array(ids))
    p = tarmac.open(spec["project"])
    uri = p.lake.uri(spec["table"])
    baseline = c.proc_status_kib("VmRSS")
    hwm_before = c.proc_status_kib("VmHWM")
    t = time.perf_counter()
    if spec["how"] == "tarmac":
        p.lake.write(spec["table"], source, mode="merge", keys=["id"])
    else:
        dt = DeltaTable(uri)
        (dt.merge(source, predicate='t."id" = s."id"', source_alias="s", target_alias="t",
                  streamed_exec=spec["how"] == "direct")
         .when_matched_update_all().when_not_matched_insert_all().execute())
    seconds = time.perf_counter() - t
    hwm_after = c.proc_status_kib("VmHWM")
    last = DeltaTable(uri).history(1)[0]
    # tarmac's bounded-memory merge commits file actions and keeps its metrics itself
    metrics = last.get("operationMetrics") or last.get("tarmac.metrics") or {}
    print(json.dumps({
        "seconds": seconds,
        "baseline_mib": c.mib(baseline),
        "peak_mib": c.mib(hwm_after),
        "peak_delta_mib": c.mib(max(hwm_after, hwm_before) - baseline),
        "peak_exceeded_startup": hwm_after > hwm_before,
        "updated": int(metrics.get("num_target_rows_updated", 0)),
        "inserted": int(metrics.get("num_target_rows_inserted", 0)),
        "files_added": int(metrics.get("num_target_files_added", 0)),
        "files_removed": int(metrics.get("num_target_files_removed", 0)),
    }))
    p.close()


if __name__ == "__main__":
    main()
