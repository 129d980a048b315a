"""Run every benchmark in sequence (each in its own process) and print a summary of the goals.

    python benchmarks/run_all.py            # full sizes (10M rows, 100k catalog records)
    python benchmarks/run_all.py --quick    # small sizes, < 2 minutes
    python benchmarks/run_all.py --rows 2000000 --only lake,sql --json-out results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as c  # noqa: E402

BENCHMARKS = ["lake", "sql", "catalog", "ledger", "audit", "ingest", "features", "models",
              "predlog", "score", "serving", "monitoring", "streams", "windows", "trace"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--rows", type=int,
                    help="rows of the lake and sql benchmarks (CSV rows of bench_ingest)")
    ap.add_argument("--catalog-rows", type=int, help="runs and audit records in bench_catalog")
    ap.add_argument("--ledger-ops", type=int, help="operations timed in bench_ledger")
    ap.add_argument("--only", default=",".join(BENCHMARKS),
                    help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    ap.add_argument("--json-out", type=Path, help="also write all results to this JSON file")
    args = ap.parse_args()
    sizes = {"lake": args.rows, "sql": args.rows, "catalog": args.catalog_rows,
             "ledger": args.ledger_ops, "audit": None, "ingest": args.rows, "features": None,
             "models": None, "predlog": None, "score": None, "serving": None,
             "monitoring": None, "streams": None, "windows": None, "trace": None}

    results: list[dict[str, Any]] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in args.only.split(","):
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--json"]
        if args.quick:
            cmd.append("--quick")
        if sizes[name] is not None:
            cmd += ["--rows", str(sizes[name])]
        c.log(f"running {' '.join(cmd[1:])}")
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        elapsed = time.perf_counter() - t
        if proc.returncode != 0:
            failed.append(name)
            print(f"== {name}: FAILED (exit {proc.returncode}) after {elapsed:.0f} s", flush=True)
            continue
        data = json.loads(proc.stdout)
        data["elapsed_s"] = elapsed
        results.append(data)
        print(c.render(data), flush=True)
        print(f"({name}: {elapsed:.0f} s)\n", flush=True)

    total = time.perf_counter() - started
    versions = {r["params"].get("src") for r in results} - {None}
    if len(versions) > 1:
        print(f"WARNING: src/ changed during the run (fingerprints {', '.join(sorted(versions))})")
    print(summary(results, failed, total))
    if args.json_out:
        args.json_out.write_text(json.dumps({"results": results, "failed": failed,
                                             "elapsed_s": total}, indent=1))
    if failed:
        raise SystemExit(1)


def summary(results: list[dict[str, Any]], failed: list[str], total: float) -> str:
    lines = ["", "== summary: goals", ""]
    met = missed = 0
    for data in results:
        for g in data["goals"]:
            met += g["met"]
            missed += not g["met"]
            lines.append(f"  {'MET ' if g['met'] else 'MISS'}  [{data['benchmark']}] {g['name']}: "
                         f"{c.fmt(g['value'])} {g['unit']} (target {g['target']})")
    lines.append("")
    lines.append(f"{met} met, {missed} missed"
                 + (f", failed: {', '.join(failed)}" if failed else "")
                 + f"; total {total:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
