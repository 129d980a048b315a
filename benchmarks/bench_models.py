"""Model registry and training: registry calls vs a bare SQLAlchemy SELECT, train vs a raw fit.

(1) registry, on a fresh project (SQLite catalog): N registrations of versions of a model "m"
    the way ``tarmac.models.train._register`` makes them (``mcat.next_version``, then
    ``p.ledger.commit("model.register", ..., change=insert_version)``; no ledger run, so no
    lineage edge and no training-run update), each with a ~1 KB signature, spec and metrics and a
    ~5 KB profile, all pointing at one real artifact (a pickled LogisticRegression stored with
    ``p.models.artifacts.put``): median and p99 ms. Then v1 is promoted (``force=True`` with a
    reason: nothing can be validated here) and, median/p99 of K calls each:
    ``p.models.version("m", alias="champion")`` (the catalog lookup) and ``p.models.get(...)``
    (also reads the artifact, checks its SHA-256 and unpickles it); ``p.models.versions("m")``
    of all N versions (median of 20 calls); 100 forced promotions alternating two versions.
    Reference in the same run: a plain SQLAlchemy engine on the same catalog file, a
    ``SELECT *`` of one ``model_versions`` row by primary key (and of the model's N rows, for
    the listing), one connection checkout per call as tarmac's reads do.
(2) train and validate on the demo project: ``run_demo(size)`` builds Kestrel (medium; small with
    ``--quick``), then, in a child process (so its peak RSS is its own): R times
    ``p.models.train("churn")`` (total, the user's fit, overhead; the overhead split by wrapping
    train.py's functions from the benchmark) and ``p.models.validate("churn", version)`` against
    the champion (wall time and the report's own seconds; the report has no per-gate timings).
    Reference in the same run: the definitions file's training function called directly on the
    exact ``TrainingData`` the last train passed it (captured by wrapping), then
    ``predict_proba`` on that version's holdout rows: a raw scikit-learn fit + score.

    python benchmarks/bench_models.py [--rows N] [--quick] [--json] [--size small|medium]
        [--repeat R] [--calls K] [--skip registry,demo]
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

MODEL = "m"
LISTING_CALLS = 20
PROMOTIONS = 100
CASES = ["registry", "demo"]
REASON = "benchmark: no validation possible in a synthetic project"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = c.parser(__doc__.splitlines()[0], default_rows=1000, quick_rows=1000)
    ap.add_argument("--size", choices=["small", "medium", "large"],
                    help="demo size for train/validate (default medium; small with --quick)")
    ap.add_argument("--repeat", type=int,
                    help="trainings + validations timed (default 5; 3 with --quick)")
    ap.add_argument("--calls", type=int,
                    help="timed calls per registry read (default 500; 200 with --quick)")
    ap.add_argument("--skip", default="", help=f"comma-separated cases to skip: {','.join(CASES)}")
    args = ap.parse_args()
    n = c.rows_for(args)
    size = args.size or ("small" if args.quick else "medium")
    repeat = args.repeat or (3 if args.quick else 5)
    calls = args.calls or (200 if args.quick else 500)
    skip = {s for s in args.skip.split(",") if s}
    res = c.Result("models", versions=n, calls=calls, demo=size, repeat=repeat,
                   catalog="sqlite", **c.env_info(), load_1m=round(os.getloadavg()[0], 1))
    with c.workdir("models") as work:
        if "registry" not in skip:
            c.guarded(res, "registry", lambda: bench_registry(res, work / "proj", n, calls))
        if "demo" not in skip:
            c.guarded(res, "demo", lambda: bench_demo(res, work / "demo", size, repeat))
    res.figure("machine load (1-min average) at the end", round(os.getloadavg()[0], 1), "",
               f"{os.cpu_count()} CPUs; other processes' load inflates wall times")
    res.emit(args.json)



def latencies(fn: Callable[[], Any], n: int, warmup: int = 5) -> np.ndarray:
    """Milliseconds of ``n`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        t = clock()
        fn()
        out[i] = clock() - t
    return out / 1e6


def p99(ms: np.ndarray) -> float:
    return float(np.percentile(ms, 99))


def med(ms: np.ndarray) -> float:
    return float(np.median(ms))


# -- (1) registry --------------------------------------------------------------------------------

FEATURES = [f"{kind}_{what}_{window}" for kind in ("orders", "sessions", "tickets", "spend")
            for what in ("count", "mean", "max") for window in ("30d", "90d")]  # 24 inputs
SLICES = ["North", "South", "East", "West", "Central"]


def payloads() -> dict[str, Any]:
    """A realistic version record's JSON parts: ~1 KB signature, spec and metrics, ~5 KB
    profile (the shapes ``_register`` and ``feature_stats`` write)."""
    signature = {"inputs": [{"name": f, "type": "float64"} for f in FEATURES],
                 "outputs": [{"name": "prediction", "type": "int64"},
                             {"name": "score", "type": "float64"}]}
    gates = [{"kind": "metric", "metric": "roc_auc", "op": ">=", "threshold": 0.72},
             {"kind": "no_regression", "metric": "roc_auc", "tolerance": 0.01},
             {"kind": "slice_metric", "metric": "roc_auc", "by": "region", "op": ">=",
              "threshold": 0.55, "min_rows": 30},
             {"kind": "latency", "p99_ms": 20, "batch_p99_ms": 200, "batch_size": 1000},
             {"kind": "no_nulls"}, {"kind": "prediction_range", "min": 0.0, "max": 1.0}]
    spec = {"features": "churn", "feature_refs": [f"customer_stats:{f}" for f in FEATURES[:12]],
            "keys": ["customer_id"],
            "label": {"table": "labels", "column": "churned", "timestamp": "observed_until",
                      "where": None},
            "timestamp": "observed_until", "split": {"test": "last 20%", "by": "label_time"},
            "split_by": "label_time", "gates": gates, "gates_hash": "0123456789abcdef",
            "slices": ["plan", "region"], "classes": [0, 1]}
    rng = np.random.default_rng(7)
    metrics = {name: float(rng.random()) for name in
               ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall",
                "f1")}
    metrics.update({f"{name}[region={s}]": float(rng.random())
                    for s in SLICES for name in ("roc_auc", "pr_auc", "accuracy")})
    profile = {}
    for f in FEATURES[:16]:
        qs = np.sort(rng.random(5) * 100)
        profile[f] = {"type": "float64", "count": 16000, "nulls": int(rng.integers(0, 500)),
                      "mean": float(rng.random() * 50), "std": float(rng.random() * 20),
                      "min": 0.0, "max": float(rng.random() * 1000),
                      "quantiles": {str(p): float(q) for p, q in
                                    zip((0.05, 0.25, 0.5, 0.75, 0.95), qs, strict=True)}}
    for f in ("plan", "region"):
        profile[f] = {"type": "string", "count": 16000, "nulls": 0, "distinct": 5,
                      "top": [[s.lower(), int(rng.integers(100, 5000))] for s in SLICES]}
    return {"signature": signature, "spec": spec, "metrics": metrics, "profile": profile}


def kib(value: Any) -> float:
    return len(json.dumps(value, sort_keys=True)) / 1024


def bench_registry(res: c.Result, project: Path, n: int, calls: int) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression
    from sqlalchemy import create_engine, text

    import tarmac
    from tarmac.catalog import models as mcat
    from tarmac.catalog import now_us
    from tarmac.models import flavors

    c.make_project(project)
    p = tarmac.open(project)
    try:
        rng = np.random.default_rng(3)
        x = pd.DataFrame(rng.random((500, len(FEATURES))), columns=FEATURES)
        y = (x[FEATURES[0]] + rng.random(500) > 1).astype(int)
        est = LogisticRegression(max_iter=1000).fit(x, y)
        blob = flavors.dumps(est)
        artifact = p.models.artifacts.put(blob)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(x.head(100).assign(label=y.head(100))), sink)
        holdout = p.models.artifacts.put(sink.getvalue().to_pybytes())
        parts = payloads()
        actor = p.ledger.actor

        def register() -> tuple[float, float]:
            """One registration as _register does it; (total, commit) seconds."""
            t0 = time.perf_counter()
            with p.catalog.engine.connect() as conn:
                version = mcat.next_version(conn, MODEL)
            mv = mcat.ModelVersion(
                model=MODEL, version=version, run_id=str(uuid.uuid4()), flavor="sklearn",
                task="binary", artifact=artifact, holdout=holdout, created_at=now_us(),
                actor=actor, description="benchmark model", tags={"team": "bench"}, **parts)
            t1 = time.perf_counter()
            p.ledger.commit("model.register", f"model:{MODEL}",
                            {"version": version, "run": version, "flavor": "sklearn",
                             "artifact": artifact, "metrics": parts["metrics"]},
                            change=lambda conn: mcat.insert_version(conn, mv))
            t2 = time.perf_counter()
            return t2 - t0, t2 - t1

        c.log(f"registry: {n:,} registrations")
        timings = np.array([register() for _ in range(n)]) * 1000
        total, commit = timings[:, 0], timings[:, 1]
        sizes = ", ".join(f"{k} {kib(v):.1f}" for k, v in parts.items())
        res.figure("register a version: median", med(total), "ms",
                   f"{n:,} versions; of which ledger.commit {med(commit):.2f} ms, the rest is "
                   f"next_version (a SELECT max); JSON parts in KiB: {sizes}")
        first, last = total[:100], total[-100:]
        res.figure("register a version: p99", p99(total), "ms",
                   f"max {total.max():.1f} ms; first-100 median {med(first):.2f} / last-100 "
                   f"{med(last):.2f} ms")

        p.models.promote(MODEL, 1, force=True, reason=REASON)
        ref_engine = create_engine(p.catalog.engine.url)
        one = text("SELECT * FROM model_versions WHERE model = :m AND version = :v")
        every = text("SELECT * FROM model_versions WHERE model = :m ORDER BY version DESC")

        def ref_one() -> Any:
            with ref_engine.connect() as conn:
                return conn.execute(one, {"m": MODEL, "v": 1}).first()

        def ref_all() -> Any:
            with ref_engine.connect() as conn:
                return conn.execute(every, {"m": MODEL}).all()

        c.log(f"registry: reads, {calls} calls each")
        assert ref_one() is not None and len(ref_all()) == n
        assert p.models.version(MODEL, alias="champion").version == 1
        assert p.models.get(MODEL, alias="champion").predict(x.head(3)).shape == (3,)
        ref = latencies(ref_one, calls)
        lookup = latencies(lambda: p.models.version(MODEL, alias="champion"), calls)
        get = latencies(lambda: p.models.get(MODEL, alias="champion"), calls)
        ref_m = med(ref)
        res.figure("reference: bare SQLAlchemy SELECT of 1 row by primary key", ref_m, "ms",
                   f"p99 {p99(ref):.3f} ms; model_versions row of ~8 KiB, same catalog file, "
                   "a plain create_engine(), connect() per call")
        res.figure("version(m, alias=champion): median", med(lookup), "ms",
                   f"p99 {p99(lookup):.2f} ms; {med(lookup) / ref_m:.1f}x the reference "
                   "(alias lookup + version row + JSON decode)")
        res.figure("get(m, alias=champion): median", med(get), "ms",
                   f"p99 {p99(get):.2f} ms; {med(get) / ref_m:.1f}x the reference; also reads "
                   f"the {len(blob) / 1024:.1f} KiB artifact, checks its SHA-256, unpickles")

        c.log(f"registry: versions() of {n:,} versions, {LISTING_CALLS} calls")
        assert len(p.models.versions(MODEL, limit=n)) == n
        listing = latencies(lambda: p.models.versions(MODEL, limit=n), LISTING_CALLS, warmup=2)
        ref_list = latencies(ref_all, LISTING_CALLS, warmup=2)
        res.figure(f"versions(m) of {n:,}: median", med(listing), "ms",
                   f"p99 {p99(listing):.1f} ms; {med(listing) / n * 1000:.1f} us per version")
        res.figure(f"reference: bare SELECT of the {n:,} rows", med(ref_list), "ms",
                   f"versions(m) is {med(listing) / med(ref_list):.1f}x this (JSON decode and "
                   "ModelVersion records)")

        c.log(f"registry: {PROMOTIONS} forced promotions")
        targets = [2 if i % 2 == 0 else 1 for i in range(PROMOTIONS)]
        promos = np.empty(PROMOTIONS)
        for i, v in enumerate(targets):
            promos[i], change = c.timed(
                lambda v=v: p.models.promote(MODEL, v, force=True, reason=REASON))
            assert change.changed and change.to_version == v
        promos *= 1000
        from tarmac.catalog import MAX_PAGE, all_items

        moves = sum(1 for _ in all_items(
            lambda cursor: p.models.history(MODEL, limit=MAX_PAGE, cursor=cursor)))
        res.figure("promote (force, reason): median", med(promos), "ms",
                   f"p99 {p99(promos):.2f} ms; {PROMOTIONS} promotions alternating v2/v1, "
                   f"{moves} alias moves recorded; {med(promos) / ref_m:.0f}x the reference")
        v = p.ledger.verify()
        res.figure("audit chain after the registry run", v.records, "records", f"verify ok={v.ok}")
        ref_engine.dispose()
    finally:
        p.close()


# -- (2) train and validate on the demo ----------------------------------------------------------


def bench_demo(res: c.Result, root: Path, size: str, repeat: int) -> None:
    import traceback

    import tarmac
    from tarmac.demo.story import run_demo

    c.log(f"demo: building Kestrel ({size})")
    t = time.perf_counter()
    story = ""
    try:
        report = run_demo(root, size=size, step=lambda m: c.log(f"demo: {m}"))
        story = "; ".join(f"{s['step']}" for s in report.models)
    except Exception as exc:  # noqa: BLE001 - the project may still be built far enough
        traceback.print_exc()
        story = (f"the demo story FAILED: {type(exc).__name__}: "
                 f"{str(exc).splitlines()[0]}"[:300] + "; going on with the project as built")
    built = time.perf_counter() - t
    with tarmac.open(root) as p:
        have = p.models.names().get("churn")
        if have is None:
            raise RuntimeError(f"the demo registered no churn model ({story})")
        if "champion" not in p.models.aliases("churn").get("churn", {}):
            p.models.promote("churn", 1, force=True, reason="benchmark: the demo promoted none")
            story += "; no champion after the demo: v1 forced to champion"
        champion = p.models.aliases("churn")["churn"]["champion"]
    res.figure(f"setup: tarmac demo ({size})", built, "s",
               f"{have[0]} churn versions after it, champion v{champion}; story: {story}")

    c.log(f"demo: {repeat} x train + validate of churn in a child process")
    out = run_child({"case": "train", "project": str(root), "repeat": repeat})
    trains, vals, ref = out["trains"], out["validations"], out["reference"]
    total = c.median([r["seconds"] for r in trains])
    fit = c.median([r["fit_seconds"] for r in trains])
    overhead = c.median([r["overhead_seconds"] for r in trains])
    rows = f"{trains[-1]['rows_train']:,} training / {trains[-1]['rows_test']:,} holdout rows"
    runs = ", ".join(f"{r['seconds']:.2f}" for r in trains)
    res.figure("train churn: total", total, "s",
               f"median of {repeat}: {runs} s; {rows}; roc_auc {trains[-1]['roc_auc']:.3f}")
    res.figure("train churn: the user's fit", fit, "s", "fit_seconds (the training function)")
    phases = {k: c.median([r["phases"].get(k, 0.0) for r in trains])
              for k in trains[-1]["phases"]}
    split = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
    res.figure("train churn: overhead", overhead, "s",
               f"seconds - fit_seconds; split (median s, timed by wrapping train.py's "
               f"functions): {split} (other: resolve, label plan, split, holdout predict, "
               "ledger runs, pandas)")
    raw = ref["fit"] + ref["predict_proba"]
    res.figure("reference: raw fit + predict_proba", raw, "s",
               f"the definitions' function on the captured TrainingData: fit {ref['fit']:.3f} s "
               f"(median of {ref['runs']}, min {ref['fit_min']:.3f}), predict_proba on "
               f"{ref['holdout_rows']:,} holdout rows {ref['predict_proba']:.3f} s; same roc_auc: "
               f"{ref['same_auc']}")
    fastest = min(r["seconds"] for r in trains) / (ref["fit_min"] + ref["predict_proba"])
    res.figure("train / raw fit+predict_proba", total / raw, "x",
               f"medians; fastest/fastest {fastest:.1f}x; the fit alone: tarmac's fit_seconds "
               f"{fit:.3f} s vs raw {ref['fit']:.3f} s")
    wall = c.median([v["wall"] for v in vals])
    gates = c.median([v["report_seconds"] for v in vals])
    statuses = "; ".join(f"v{v['version']} {v['status']} ({v['counts']})" for v in vals)
    res.figure("validate churn: wall", wall, "s",
               f"median of {repeat}, against champion v{vals[-1]['champion']}; {statuses}")
    res.figure("validate churn: gates (report.seconds)", gates, "s",
               f"{vals[-1]['gates']} gates; the report has no per-gate timings (latency gate "
               f"measured p99 {vals[-1]['latency_p99']} ms single / "
               f"{vals[-1]['latency_batch_p99']} ms batch)")
    res.figure("child peak RSS (train + validate + reference)", out["peak_mib"], "MiB",
               f"+{out['peak_mib'] - out['baseline_mib']:.0f} MiB over the "
               f"{out['baseline_mib']:.0f} MiB after opening the project")
    res.goal(f"train churn ({size}): overhead", overhead, "s", "< 2 (set for medium)",
             overhead < 2)
    res.goal(f"validate churn ({size})", wall, "s", "< 20 (set for medium)", wall < 20)


# -- children ------------------------------------------------------------------------------------


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    return c.run_child(__file__, spec)


def peak_mib() -> float:
    """This process's peak resident set: VmHWM, not ``ru_maxrss`` (which carries the parent's
    high-water mark over fork + exec)."""
    return c.mib(c.proc_status_kib("VmHWM"))


def child(spec: dict[str, Any]) -> None:
    """Train and validate churn ``repeat`` times, then the raw reference; prints one JSON."""
    import tarmac
    import tarmac.models.train as train_mod
    from tarmac.models import flavors, metrics
    from tarmac.models.artifacts import ArtifactStore

    p = tarmac.open(spec["project"])
    p.models.declared()
    baseline = c.mib(c.proc_status_kib("VmRSS"))
    probe = c.Probe()
    probe.patch(train_mod, "_training_frame", "training set")
    # train.py's own calls only (by_slice calls compute itself): through a copy of the module
    evaluate = types.SimpleNamespace(**vars(metrics))
    probe.patch(evaluate, "compute", "metrics")
    probe.patch(evaluate, "by_slice", "slice metrics")
    probe.patch(flavors, "dumps", "pickle")
    probe.patch(ArtifactStore, "put", "artifacts")
    probe.patch(train_mod, "_profile", "profile")
    probe.patch(train_mod, "_open_train_run", "catalog: open run")
    probe.patch(train_mod, "_register", "catalog: register")
    captured: list[Any] = []
    original = train_mod.TrainingData

    def capture(*a: Any, **kw: Any) -> Any:
        data = original(*a, **kw)
        captured.append(data)
        return data

    train_mod.TrainingData = capture  # type: ignore[misc, assignment]
    train_mod.metrics = evaluate  # type: ignore[assignment]
    trains, vals = [], []
    try:
        for _ in range(spec["repeat"]):
            probe.take()
            r = p.models.train("churn")
            phases = {k: v for k, v in probe.take().items() if not k.endswith("#calls")}
            phases["other"] = r.overhead_seconds - sum(phases.values())
            trains.append({"seconds": r.seconds, "fit_seconds": r.fit_seconds,
                           "overhead_seconds": r.overhead_seconds, "version": r.version,
                           "rows_train": r.rows_train, "rows_test": r.rows_test,
                           "roc_auc": r.metrics.get("roc_auc", float("nan")),
                           "phases": phases})
            t, report = c.timed(lambda v=r.version: p.models.validate("churn", v))
            counts = {s: report.count(s) for s in ("passed", "failed", "skipped", "error")}
            lat = next((g.details for g in report.results if g.kind == "latency"), {})
            vals.append({"version": r.version, "wall": t, "report_seconds": report.seconds,
                         "status": report.status, "champion": report.champion,
                         "gates": len(report.results),
                         "counts": ", ".join(f"{n} {s}" for s, n in counts.items() if n),
                         "latency_p99": round(lat.get("single", {}).get("p99_ms", -1), 1),
                         "latency_batch_p99": round(lat.get("batch", {}).get("p99_ms", -1), 1)})
    finally:
        train_mod.TrainingData = original  # type: ignore[misc]
        train_mod.metrics = metrics
        probe.restore()
    reference = raw_reference(p, captured[-1], trains[-1])
    p.close()
    print(json.dumps({"trains": trains, "validations": vals, "reference": reference,
                      "baseline_mib": baseline, "peak_mib": peak_mib(), "pid": os.getpid()}))


def raw_reference(p: Any, data: Any, last: dict[str, Any], runs: int = 5) -> dict[str, Any]:
    """The training function on the same TrainingData, then predict_proba on the holdout."""
    from sklearn.metrics import roc_auc_score

    fn = p.models.definition("churn").function
    record = p.models.version("churn", last["version"])
    holdout = p.models.holdout(record)
    x_test = holdout[data.features]
    y_test = holdout[data.label].to_numpy()
    fits, probas, model, scores = [], [], None, None
    for _ in range(runs):
        t, model = c.timed(lambda: fn(data))
        fits.append(t)
        t, scores = c.timed(lambda m=model: m.predict_proba(x_test))
        probas.append(t)
    assert scores is not None
    auc = float(roc_auc_score(y_test, scores[:, 1]))
    return {"fit": c.median(fits), "fit_min": min(fits), "predict_proba": c.median(probas),
            "runs": runs,
            "holdout_rows": len(x_test),
            "same_auc": bool(abs(auc - last["roc_auc"]) < 1e-9)}


if __name__ == "__main__":
    main()
