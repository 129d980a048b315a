"""One decision trace (``p.trace(id)``) on a prediction log of 10M rows, against a raw DuckDB
lookup of the same id over the same Parquet files, in the same run.

  setup            a project with the ``risk`` model (a logistic regression over two signals
                   and a region, one-hot encoded in a pipeline), trained, validated, promoted;
                   its ``predictions`` table: N rows with UUIDv7 ids (the serving log's ids:
                   time-ordered), 30 days of traffic, JSON features/times/status/request as the
                   log writes them, appended through the lake in a few commits of
                   N / files rows each
  lookup           the trace's read of the row by id (tarmac.trace._lookup.find): the files
                   whose id min/max (in the Delta log) hold the id, read by DuckDB
  arrow filter     the same row through the Delta table's Arrow dataset with a filter on id
                   (what the lookup does not use: it decodes the whole matching row group)
  trace            the whole p.trace(id): the row, the registry (version, run, gates, alias
                   history, audit records), the feature registry (view versions,
                   materializations), the model loaded and the exact linear explanation
  ref duckdb       SELECT * FROM read_parquet([the table's files]) WHERE id = ? in a warm
                   DuckDB connection: the floor for finding one row in those files

Ids are drawn at random from the whole log; each timing is the median (and p95) over them.

    python benchmarks/bench_trace.py [--rows N] [--quick] [--json]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

DEFINITIONS = '''
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from tarmac.features import *
from tarmac.gates import *
from tarmac.models import TrainingData, label, model, time_split

customer = Entity("customer", join_keys=["customer_id"])
signals = FeatureView(
    name="signals", entities=[customer], source="signals", timestamp="ev",
    features=[Feature("a", Float64), Feature("b", Float64), Feature("region", String)],
)
risk_features = FeatureService("risk", [signals])

@model(name="risk", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(test="last 20%", by="known_at"), gates=[metric("roc_auc") >= 0.6])
def train(data: TrainingData):
    encode = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["region"]),
                                     ("passthrough", ["a", "b"]))
    return make_pipeline(encode, LogisticRegression()).fit(data.X, data.y)
'''
TS = pa.timestamp("us", tz="UTC")
T0_MS = 1_767_225_600_000  # 2026-01-01
SPAN_MS = 30 * 86_400_000
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
REGIONS = np.array(["north", "south", "east"])


def build_project(work: Path) -> Any:
    import tarmac

    p = tarmac.open(c.make_project(work / "proj"))
    (p.root / "definitions.py").write_text(DEFINITIONS)
    rng = np.random.default_rng(0)
    n = 600
    a, b = rng.normal(size=n), rng.normal(size=n)
    t0 = pa.scalar(T0_MS * 1000 - 86_400_000_000 * 60, TS).as_py()
    p.lake.write("signals", pa.table({
        "customer_id": pa.array(np.arange(n), pa.int64()), "ev": pa.array([t0] * n, TS),
        "a": a, "b": b, "region": REGIONS[rng.integers(0, 3, n)]}))
    from datetime import timedelta
    p.lake.write("labels", pa.table({
        "customer_id": pa.array(np.arange(n), pa.int64()),
        "observed": pa.array([t0 + timedelta(days=10)] * n, TS),
        "known_at": pa.array([t0 + timedelta(days=11 + int(d)) for d in
                              rng.integers(0, 30, n)], TS),
        "churned": (rng.random(n) < 1 / (1 + np.exp(-(1.8 * a - 1.2 * b)))).astype(np.int64)}))
    p.features.apply()
    p.models.train("risk")
    p.models.validate("risk", 1)
    p.models.promote("risk", 1)
    p.features.materialize()
    return p


def uuid7(ms: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """UUIDv7 ids as 32 hex digits (``new_prediction_id``'s layout), vectorized."""
    n = len(ms)
    nib = np.empty((n, 32), dtype=np.uint8)
    for i in range(12):  # 48 bits of milliseconds, most significant nibble first
        nib[:, i] = (ms >> (4 * (11 - i))) & 0xF
    nib[:, 12] = 7
    nib[:, 13:] = rng.integers(0, 16, (n, 19), dtype=np.uint8)
    nib[:, 16] = 8 | (nib[:, 16] & 0x3)  # the variant bits
    text = HEX[nib].view("S32").ravel()
    return pa.array(text, pa.binary(32)).cast(pa.string())


def json_of(parts: list[Any]) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def const(text: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                          pa.array([text])).cast(pa.string())


def predictions(model: Any, start_ms: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Rows of the ``predictions`` table as the serving log writes them."""
    from tarmac.serving.predlog import SCHEMA

    n = len(start_ms)
    a = np.round(rng.normal(size=n), 6)
    b = np.round(rng.normal(size=n), 6)
    region = REGIONS[rng.integers(0, 3, n)]
    frame = {"a": a, "b": b, "region": region}
    import pandas as pd

    scores = model.predict_scores(pd.DataFrame(frame))
    a_s, b_s = pc.cast(pa.array(a), pa.string()), pc.cast(pa.array(b), pa.string())
    ids = uuid7(start_ms, rng)
    customers = pc.cast(pa.array(rng.integers(0, 600, n)), pa.string())
    cols = {
        "id": ids, "request_id": ids,
        "time": pa.array(start_ms * 1000 + rng.integers(0, 1000, n), TS),
        "endpoint": const("risk", n), "model": const("risk", n),
        "version": pa.array(np.ones(n, np.int64)), "role": const("champion", n),
        "shadow": pa.array(np.zeros(n, bool)),
        "features": json_of([const('{"a":', n), a_s, const(',"b":', n), b_s,
                             const(',"region":"', n), pa.array(region), const('"}', n)]),
        "feature_times": const('{"a":"2025-11-02T00:00:00Z","b":"2025-11-02T00:00:00Z",'
                               '"region":"2025-11-02T00:00:00Z"}', n),
        "feature_status": const('{"a":"present","b":"present","region":"present"}', n),
        "request": json_of([const('{"customer_id":', n), customers, const("}", n)]),
        "score": pa.array(scores),
        "label": pa.array(np.where(scores >= 0.5, "1", "0")),
        "latency_ms": pa.array(rng.gamma(2.0, 1.5, n)),
        "error": pa.nulls(n, pa.string()),
    }
    return pa.table([cols[f.name] for f in SCHEMA], schema=SCHEMA)


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=10_000_000, quick_rows=200_000)
    ap.add_argument("--files", type=int, default=5, help="lake appends (commits) of the log")
    ap.add_argument("--lookups", type=int, default=30, help="random ids traced")
    args = ap.parse_args()
    n = c.rows_for(args)
    lookups = 10 if args.quick else args.lookups
    res = c.Result("trace", rows=n, commits=args.files, lookups=lookups, src=c.src_fingerprint())

    import duckdb

    from tarmac.trace import _lookup

    with c.workdir("trace") as work:
        c.log("project: risk model trained, validated, promoted")
        p = build_project(work)
        model = p.models.get("risk", 1)
        rng = np.random.default_rng(1)
        all_ms = np.sort(rng.integers(T0_MS, T0_MS + SPAN_MS, n))
        per = -(-n // args.files)
        sample: list[str] = []
        write_s = 0.0
        for k in range(args.files):
            chunk = all_ms[k * per:(k + 1) * per]
            if not len(chunk):
                break
            rows = predictions(model, chunk, rng)
            c.log(f"commit {k + 1}/{args.files}: {rows.num_rows:,} predictions")
            s, _ = c.timed(lambda rows=rows: p.lake.write("predictions", rows))
            write_s += s
            picks = rng.integers(0, rows.num_rows, max(1, lookups // args.files + 1))
            sample += [rows.column("id")[int(i)].as_py() for i in picks]
        random.Random(2).shuffle(sample)
        sample = sample[:lookups]
        dt = p.lake.table("predictions")
        files = dt.file_uris()
        size = sum(Path(f.removeprefix("file://")).stat().st_size for f in files)
        res.figure("prediction log", n, "rows", f"{len(files)} Parquet files, "
                   f"{size / 2**20:,.0f} MiB, written in {write_s:.1f} s")

        c.log("reference: DuckDB over the same files")
        con = duckdb.connect()
        paths = [f.removeprefix("file://") for f in files]
        con.execute("SELECT * FROM read_parquet(?) WHERE id = ?", [paths, sample[0]]).fetchall()

        def ref(i: str) -> None:
            got = con.execute("SELECT * FROM read_parquet(?) WHERE id = ?", [paths, i]).fetchall()
            assert len(got) == 1

        ref_t = [c.timed(lambda i=i: ref(i))[0] for i in sample]

        c.log("lookup: the trace's read of the row")
        _lookup.find(p, sample[0])
        look_t = [c.timed(lambda i=i: _lookup.find(p, i))[0] for i in sample]

        c.log("arrow dataset filter (for comparison)")
        import pyarrow.compute as pcx

        dataset = p.lake.scan("predictions")
        arrow_t = [c.timed(lambda i=i: dataset.to_table(filter=pcx.field("id") == i))[0]
                   for i in sample[:3]]

        c.log("trace: p.trace(id)")
        first = p.trace(sample[0])
        assert first.explanation is not None and first.explanation.method == "linear"
        trace_t = []
        for i in sample:
            s, t = c.timed(lambda i=i: p.trace(i))
            assert t.id == i and t.explanation is not None
            trace_t.append(s)
        p.close()

    ms = 1000
    res.figure("trace p.trace(id), median", c.median(trace_t) * ms, "ms",
               f"p95 {c.p95(trace_t) * ms:.0f} ms; row + registry + features + explanation")
    res.figure("lookup of the row by id, median", c.median(look_t) * ms, "ms",
               f"p95 {c.p95(look_t) * ms:.0f} ms; files by id min/max, then DuckDB")
    res.figure("Arrow dataset filter on id, median of 3", c.median(arrow_t) * ms, "ms",
               "not used: it decodes every column of the matching row group")
    res.figure("ref DuckDB read_parquet WHERE id = ?, median", c.median(ref_t) * ms, "ms",
               f"p95 {c.p95(ref_t) * ms:.0f} ms; lookup is "
               f"{c.median(look_t) / c.median(ref_t):.1f}x of it")
    res.goal("one trace on the prediction log", c.median(trace_t) * ms, "ms", "<= 200",
             c.median(trace_t) * ms <= 200)
    res.emit(args.json)


if __name__ == "__main__":
    main()
