"""Shared helpers for the benchmarks: data generation, timing, memory, reporting.

Every benchmark builds a result dict::

    {"benchmark": "lake", "params": {...},
     "figures": [{"name", "value", "unit", "note"}],
     "goals": [{"name", "value", "unit", "target", "met"}]}

and prints it as a table (or as JSON with ``--json``). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA = ROOT / "bench-data"

REGIONS = np.array(["north", "south", "east", "west", "central", "islands", "coast", "mountain"])
STATUSES = np.array(["new", "paid", "shipped", "returned"])
T0_US = 1_700_000_000_000_000  # 2023-11-14, microseconds

SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("user_id", pa.int64()),
    ("qty", pa.int32()),
    ("category", pa.int32()),
    ("price", pa.float64()),
    ("discount", pa.float64()),
    ("score", pa.float32()),
    ("region", pa.string()),
    ("status", pa.string()),
    ("name", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("updated_at", pa.timestamp("us", tz="UTC")),
])


# -- arguments and output ------------------------------------------------------------------------


def parser(description: str, *, default_rows: int, quick_rows: int) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--rows", type=int, default=None,
                    help=f"size of the benchmark (default {default_rows:,}; {quick_rows:,} "
                         "with --quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    ap.set_defaults(_default_rows=default_rows, _quick_rows=quick_rows)
    return ap


def rows_for(args: argparse.Namespace) -> int:
    if args.rows is not None:
        return args.rows
    return args._quick_rows if args.quick else args._default_rows


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Result:
    def __init__(self, benchmark: str, **params: Any) -> None:
        self.data: dict[str, Any] = {"benchmark": benchmark, "params": params,
                                     "figures": [], "goals": []}

    def figure(self, name: str, value: Any, unit: str = "", note: str = "") -> None:
        self.data["figures"].append({"name": name, "value": value, "unit": unit, "note": note})

    def goal(self, name: str, value: float, unit: str, target: str, met: bool) -> None:
        self.data["goals"].append({"name": name, "value": value, "unit": unit,
                                   "target": target, "met": bool(met)})

    def emit(self, as_json: bool) -> None:
        if as_json:
            print(json.dumps(self.data, indent=1))
        else:
            print(render(self.data))


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def render(data: dict[str, Any]) -> str:
    rows = [(f["name"], fmt(f["value"]), f["unit"], f["note"]) for f in data["figures"]]
    head = ("figure", "value", "unit", "note")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    out = [f"== {data['benchmark']}  "
           + " ".join(f"{k}={fmt(v)}" for k, v in data["params"].items()), line,
           "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    for r in rows:
        out.append("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]),
                              r[2].ljust(widths[2]), r[3]]).rstrip())
    if data["goals"]:
        out.append(line)
        for g in data["goals"]:
            mark = "MET " if g["met"] else "MISS"
            out.append(f"goal {mark} {g['name']}: {fmt(g['value'])} {g['unit']} "
                       f"(target {g['target']})")
    return "\n".join(out)


# -- timing --------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def repeat(fn: Callable[[], Any], n: int, *, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(n)]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


# -- memory --------------------------------------------------------------------------------------


def proc_status_kib(field: str, pid: int | str = "self") -> int:
    """A ``/proc/PID/status`` field in KiB (VmHWM = peak resident set, VmRSS = current)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def mib(kib: int) -> float:
    return kib / 1024


# -- data ----------------------------------------------------------------------------------------


def gen_batch(n: int, start_id: int, rng: np.random.Generator) -> pa.RecordBatch:
    """``n`` rows of the 12-column benchmark schema, ids ``start_id .. start_id+n-1``."""
    ids = np.arange(start_id, start_id + n, dtype=np.int64)
    created = T0_US + ids * 1000 + rng.integers(0, 1000, n)
    names = pc.binary_join_element_wise(
        "cust_", pc.cast(pa.array(rng.integers(0, 5_000_000, n)), pa.string()), "")
    cols = [
        pa.array(ids),
        pa.array(rng.integers(0, 1_000_000, n, dtype=np.int64)),
        pa.array(rng.integers(1, 100, n, dtype=np.int32)),
        pa.array(rng.integers(0, 100, n, dtype=np.int32)),
        pa.array(np.round(rng.gamma(2.0, 20.0, n), 2)),
        pa.array(rng.random(n) * 0.3),
        pa.array(rng.random(n, dtype=np.float32)),
        pa.array(REGIONS[rng.integers(0, len(REGIONS), n)]).cast(pa.string()),
        pa.array(STATUSES[rng.integers(0, len(STATUSES), n)]).cast(pa.string()),
        names,
        pa.array(created, pa.timestamp("us", tz="UTC")),
        pa.array(created + rng.integers(0, 86_400_000_000, n), pa.timestamp("us", tz="UTC")),
    ]
    return pa.RecordBatch.from_arrays(cols, schema=SCHEMA)


def gen_batches(total: int, *, start_id: int = 0, seed: int = 42,
                batch: int = 1_000_000) -> Iterator[pa.RecordBatch]:
    rng = np.random.default_rng(seed)
    done = 0
    while done < total:
        n = min(batch, total - done)
        yield gen_batch(n, start_id + done, rng)
        done += n


def gen_table(total: int, **kw: Any) -> pa.Table:
    return pa.Table.from_batches(list(gen_batches(total, **kw)), schema=SCHEMA)


def merge_source(n: int, table_rows: int, *, seed: int, updates: float = 0.5,
                 next_id: int | None = None) -> pa.Table:
    """``n`` rows to merge: ``updates`` of them hit random existing ids, the rest are new ids."""
    rng = np.random.default_rng(seed)
    n_upd = int(n * updates)
    start = table_rows if next_id is None else next_id
    upd = rng.choice(table_rows, n_upd, replace=False).astype(np.int64)
    new = np.arange(start, start + n - n_upd, dtype=np.int64)
    body = gen_batch(n, 0, rng)
    ids = pa.array(np.concatenate([upd, new]))
    return pa.Table.from_batches([body]).set_column(0, "id", ids)


# -- projects ------------------------------------------------------------------------------------


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A fresh folder under bench-data/, removed afterwards."""
    BENCH_DATA.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=BENCH_DATA))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_project(path: Path, *, catalog_url: str | None = None) -> Path:
    import tarmac

    tarmac.init(path, name="bench")
    if catalog_url:
        cfg = path / "tarmac.yaml"
        lines = [f"catalog: {catalog_url}" if ln.startswith("catalog:") else ln
                 for ln in cfg.read_text().splitlines()]
        cfg.write_text("\n".join(lines) + "\n")
    return path


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def src_fingerprint() -> str:
    """A short hash of src/tarmac/**/*.py: which version of the code was measured."""
    h = hashlib.sha256()
    for f in sorted((ROOT / "src" / "tarmac").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def env_info() -> dict[str, Any]:
    import deltalake
    import duckdb

    return {"src": src_fingerprint(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "pyarrow": pa.__version__, "deltalake": deltalake.__version__,
            "duckdb": duckdb.__version__}


# -- instrumentation (benchmark-side monkeypatching; src/ is not modified) -----------------------


class Probe:
    """Accumulates wall time spent in patched functions, e.g. the Delta write inside a lake write.

    ``probe.patch(module_or_class, "attr", "label")`` wraps the attribute; ``probe.take()`` returns
    and resets the seconds per label since the last take.
    """

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []

    def patch(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:  # the code under test changed: that phase is simply not timed
            return
        spent, calls = self.spent, self.calls

        def wrapper(*a: Any, **kw: Any) -> Any:
            calls[label] = calls.get(label, 0) + 1
            t = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, attr, wrapper)
        self._undo.append((owner, attr, original))

    def take(self) -> dict[str, float]:
        out = dict(self.spent)
        out.update({f"{k}#calls": float(v) for k, v in self.calls.items()})
        self.spent.clear()
        self.calls.clear()
        return out

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def lake_probe() -> Probe:
    """Times the phases of ``Lake.write``: Delta write/merge, ``_record``, ``Ledger.commit``."""
    from deltalake import DeltaTable
    from deltalake.table import TableMerger

    import tarmac.lake.lake as lake_mod
    from tarmac.ledger.ledger import Ledger

    probe = Probe()
    probe.patch(lake_mod, "write_deltalake", "delta_write")
    probe.patch(TableMerger, "execute", "delta_merge")
    probe.patch(lake_mod.Lake, "_record", "record")
    probe.patch(lake_mod.Lake, "latest", "open_existing")
    probe.patch(Ledger, "_finish", "run_finish")
    probe.patch(Ledger, "commit", "ledger_commit")
    probe.patch(DeltaTable, "__init__", "delta_open")
    probe.patch(DeltaTable, "get_add_actions", "add_actions")
    return probe


def run_child(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``script --child SPEC`` in a fresh process (so its peak memory is its own) and
    return the JSON object it prints last."""
    import subprocess

    proc = subprocess.run([sys.executable, script, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child failed: {spec}")
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(last)


def guarded(res: Result, case: str, fn: Callable[[], Any]) -> None:
    """Run a case; if it raises, record that (with the error) and go on with the others."""
    import traceback

    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - one broken case must not lose the others' figures
        traceback.print_exc()
        res.figure(case, "FAILED", "", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:200])
        res.goal(f"{case}: ran", 0, "", "no error", False)
