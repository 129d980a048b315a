"""Drift over N rows x 50 columns from Parquet, against a hand-written numpy/scipy reference
computing the same statistics on the same files in the same run.

  data        50 columns (tests/monitoring/drift_data.py): 40 numeric (normal, uniform,
              heavy-tailed lognormal/Pareto/Student-t, integer counts with ties, zero-inflated
              amounts, nulls and NaN) and 10 categorical (4 to 200 categories, Zipf shapes, a
              boolean), 11 of them drifted in the current window. Reference and current are one
              Parquet file each.
  tarmac      tarmac.monitoring.drift(dataset(ref), dataset(cur)): the public entry point, each
              column read alone from the files, sketched, tested
  reference   numpy/scipy by hand on the same files (read whole with pyarrow.parquet): the same
              percentile grid, KS from the binned CDFs, PSI over the reference's deciles, Pearson
              chi-squared (scipy.stats.chi2_contingency) and Jensen-Shannon
              (scipy.spatial.distance.jensenshannon) over the same buckets, Holm's correction
              and the same verdict rule. Category counts use Arrow's value_counts (numpy's
              unique over a million strings would make the reference a strawman).

Each side runs in its own process, so its peak resident set (VmHWM) is its own. The two
sides' statistics are compared column by column, and the binned KS statistic with the exact
one (scipy.stats.ks_2samp on the raw values, outside the timed part). Correctness: the drifted
columns found, missed and falsely flagged.

    python benchmarks/bench_monitoring.py [--rows N] [--quick] [--json]

``--labels`` runs the label-join benchmark instead (``label_join``): N predictions (Parquet,
the prediction log's columns, JSON ``request``/``features``) and N late labels joined by entity
and time (the latest prediction for the customer at or before the label, within 30 days) and by
prediction id, with tarmac.monitoring.join_labels, against the same ASOF join written by hand in
DuckDB on the same files in the same run. Goal: 1M x 1M in 5 s or less.

    python benchmarks/bench_monitoring.py --labels [--rows N] [--quick] [--json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "monitoring"))
import _common as c  # noqa: E402

SMALL = 100_000  # the "100k rows" goal


def write_data(folder: Path, rows: int, tag: str) -> tuple[str, str]:
    import drift_data
    import pyarrow.parquet as pq

    paths = []
    for drifted, seed in ((False, 1), (True, 2)):
        path = folder / f"{tag}-{'current' if drifted else 'reference'}.parquet"
        pq.write_table(drift_data.make(rows, drifted=drifted, seed=seed), path)
        paths.append(str(path))
    return paths[0], paths[1]


# -- tarmac ----------------------------------------------------------------------------------


def run_tarmac(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.dataset as pads
    import scipy.special  # noqa: F401 - imported lazily by the tests; the reference
    import scipy.stats  # noqa: F401 - imports them before its clock starts too

    from tarmac.monitoring import drift

    before = c.proc_status_kib("VmRSS")
    t = time.perf_counter()
    report = drift(pads.dataset(spec["reference"]), pads.dataset(spec["current"]))
    seconds = time.perf_counter() - t
    peak = c.proc_status_kib("VmHWM")
    out: dict[str, Any] = {"seconds": seconds, "peak_kib": peak, "start_kib": before,
                           "columns": _rows(report)}
    if spec.get("small"):
        ref, cur = spec["small"]
        small = [time.perf_counter()]
        for _ in range(3):
            drift(pads.dataset(ref), pads.dataset(cur))
            small.append(time.perf_counter())
        out["small_seconds"] = float(np.median(np.diff(small)))
    return out


def _rows(report: Any) -> dict[str, dict[str, Any]]:
    return {r.column: {"statistic": r.statistic, "p": r.p_value, "p_adjusted": r.p_adjusted,
                       "effect": r.effect_size, "class": r.effect_class, "verdict": r.verdict}
            for r in report}


# -- the hand-written reference ---------------------------------------------------------------


def run_reference(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from scipy.spatial.distance import jensenshannon
    from scipy.special import kolmogorov
    from scipy.stats import chi2_contingency, kstwo

    before = c.proc_status_kib("VmRSS")
    t = time.perf_counter()
    ref_t, cur_t = pq.read_table(spec["reference"]), pq.read_table(spec["current"])
    found: dict[str, dict[str, Any]] = {}
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in ref_t.column_names:
        r_col, c_col = ref_t.column(name), cur_t.column(name)
        if r_col.type.equals(c_col.type) and str(r_col.type) in ("string", "bool"):
            r_cnt, c_cnt = _category_counts(pc, r_col, c_col)
            r_cnt, c_cnt = _pool(r_cnt, c_cnt)
            chi = chi2_contingency(np.vstack([r_cnt, c_cnt]), correction=False)
            js = float(jensenshannon(r_cnt, c_cnt, base=2))
            found[name] = {"statistic": float(chi.statistic), "p": float(chi.pvalue),
                           "effect": js, "kind": "jensen_shannon"}
            continue
        r = r_col.to_numpy(zero_copy_only=False).astype(np.float64)
        k = c_col.to_numpy(zero_copy_only=False).astype(np.float64)
        r, k = r[~np.isnan(r)], k[~np.isnan(k)]  # nulls come out of Arrow as NaN
        raw[name] = (r, k)
        r_sorted = np.sort(r)
        finite = r_sorted[np.isfinite(r_sorted)]
        edges = np.unique(finite[np.round(np.linspace(0, len(finite) - 1, 101)).astype(int)])
        r_b, k_b = _buckets(r, edges), _buckets(k, edges)
        d = float(np.max(np.abs(np.cumsum(r_b) / len(r) - np.cumsum(k_b) / len(k))))
        en = round(len(r) * len(k) / (len(r) + len(k)))
        p = float(kolmogorov(np.sqrt(en) * d)) if en > 5000 else float(kstwo.sf(d, en))
        found[name] = {"statistic": d, "p": p, "effect": _psi(r_b, k_b), "kind": "psi"}
    names = list(found)
    adjusted = _holm(np.array([found[n]["p"] for n in names]))
    cuts = {"psi": (0.01, 0.1, 0.25), "jensen_shannon": (0.04, 0.13, 0.21)}
    for name, p_adj in zip(names, adjusted, strict=True):
        f = found[name]
        f["p_adjusted"] = float(p_adj)
        f["class"] = ("none", "small", "medium", "large")[sum(f["effect"] >= x
                                                               for x in cuts[f["kind"]])]
        f["verdict"] = "drifted" if p_adj < 0.05 and f["class"] != "none" else "not drifted"
    seconds = time.perf_counter() - t
    peak = c.proc_status_kib("VmHWM")
    exact = {}
    from scipy.stats import ks_2samp

    for name, (r, k) in raw.items():  # outside the timed part: the exact KS on raw values
        exact[name] = float(ks_2samp(r, k, method="asymp").statistic)
    return {"seconds": seconds, "peak_kib": peak, "start_kib": before, "columns": found,
            "exact_ks": exact}


def _category_counts(pc: Any, r_col: Any, c_col: Any) -> tuple[np.ndarray, np.ndarray]:
    """Counts per category of both windows over every category either has (the benchmark's
    categorical columns have at most 200 values, where the sketch lists every one)."""
    r_vc = pc.value_counts(r_col.drop_null())
    c_vc = pc.value_counts(c_col.drop_null())
    r_map = dict(zip(r_vc.field("values").to_pylist(), r_vc.field("counts").to_pylist(),
                     strict=True))
    c_map = dict(zip(c_vc.field("values").to_pylist(), c_vc.field("counts").to_pylist(),
                     strict=True))
    if len(r_map) > 200:
        raise SystemExit("the reference implementation covers up to 200 categories")
    union = list(r_map) + [v for v in c_map if v not in r_map]
    return (np.array([r_map.get(v, 0) for v in union], dtype=float),
            np.array([c_map.get(v, 0) for v in union], dtype=float))


def _pool(r: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = (r + k) > 0
    r, k = r[keep], k[keep]
    small = (r + k) * min(r.sum(), k.sum()) / (r.sum() + k.sum()) < 5
    if small.any() and not small.all():
        r = np.append(r[~small], r[small].sum())
        k = np.append(k[~small], k[small].sum())
        if (r[-1] + k[-1]) * min(r.sum(), k.sum()) / (r.sum() + k.sum()) < 5 and len(r) > 2:
            i = int(np.argmin((r + k)[:-1]))
            r[i] += r[-1]
            k[i] += k[-1]
            r, k = r[:-1], k[:-1]
    return r, k


def _buckets(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    inside, _ = np.histogram(x, bins=edges)
    return np.array([(x < edges[0]).sum(), *inside, (x > edges[-1]).sum()], dtype=float)


def _psi(r: np.ndarray, k: np.ndarray) -> float:
    """PSI over the reference's deciles: cut after the bucket whose cumulative reference share
    is nearest to 10 %, 20 %... (the earlier on a tie); a group without reference mass joins
    the one before it (the first joins the next); a constant reference is below, at and above
    its value."""
    if np.count_nonzero(r) <= 1:
        starts = list(range(len(r)))
    else:
        cum = np.cumsum(r) / r.sum()
        cuts = set()
        for t in np.arange(1, 10) / 10:
            after = next((i for i in range(len(r)) if cum[i] >= t), len(r) - 1)
            before = max(after - 1, 0)
            cuts.add((before if abs(cum[before] - t) <= abs(cum[after] - t) else after) + 1)
        starts = sorted({0} | {c for c in cuts if c < len(r)})
        merged = True
        while merged:
            merged = False
            for g, a in enumerate(starts):
                b = starts[g + 1] if g + 1 < len(starts) else len(r)
                if r[a:b].sum() == 0:
                    del starts[g if g > 0 else 1]
                    merged = True
                    break
    ends = [*starts[1:], len(r)]
    rg = np.array([r[a:b].sum() for a, b in zip(starts, ends, strict=True)])
    kg = np.array([k[a:b].sum() for a, b in zip(starts, ends, strict=True)])
    p = (rg + 0.5) / (rg.sum() + 0.5 * len(rg))
    q = (kg + 0.5) / (kg.sum() + 0.5 * len(kg))
    return float(np.sum((q - p) * np.log(q / p)))


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p, kind="stable")
    out = np.empty(len(p))
    out[order] = np.minimum(np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]), 1)
    return out


# -- main --------------------------------------------------------------------------------------


def child(spec: dict[str, Any]) -> None:
    run = run_tarmac if spec["side"] == "tarmac" else run_reference
    print(json.dumps(run(spec)))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = c.parser(__doc__.splitlines()[0], default_rows=1_000_000, quick_rows=SMALL)
    ap.add_argument("--labels", action="store_true",
                    help="benchmark the label join (N predictions x N labels) instead")
    args = ap.parse_args()
    rows = c.rows_for(args)
    if args.labels:
        label_join(rows).emit(args.json)
        return
    res = c.Result("monitoring", rows=rows, columns=50, **c.env_info())
    import drift_data

    expected = set(drift_data.DRIFTED)
    with c.workdir("monitoring") as folder:
        c.log(f"writing {rows:,} x 50 reference and current Parquet files")
        ref, cur = write_data(folder, rows, "main")
        small = (ref, cur) if rows == SMALL else write_data(folder, SMALL, "small")
        c.log("tarmac drift (child process)")
        ours = c.run_child(__file__, {"side": "tarmac", "reference": ref, "current": cur,
                                      "small": list(small)})
        c.log("numpy/scipy reference (child process)")
        theirs = c.run_child(__file__, {"side": "reference", "reference": ref, "current": cur})
    ratio = ours["seconds"] / theirs["seconds"]
    res.figure("tarmac drift", ours["seconds"], "s", f"{rows:,} rows x 50 columns, Parquet")
    res.figure("numpy/scipy reference", theirs["seconds"], "s", "same statistics, same files")
    res.figure("time ratio tarmac/reference", ratio, "x")
    res.figure("tarmac peak memory", c.mib(ours["peak_kib"]), "MiB",
               f"VmHWM of its process ({c.mib(ours['start_kib']):.0f} MiB after imports)")
    res.figure("reference peak memory", c.mib(theirs["peak_kib"]), "MiB",
               "VmHWM; reads both files whole")
    res.figure(f"tarmac drift at {SMALL:,} rows", ours["small_seconds"], "s",
               "median of 3, warm process")

    agree = _agreement(ours["columns"], theirs["columns"])
    res.figure("statistics agree with reference", agree["max_rel_diff"], "max rel. diff",
               f"statistic, p-value, effect over {agree['compared']} columns")
    res.figure("verdicts agree with reference", f"{agree['same_verdicts']}/{agree['compared']}")
    gaps = [theirs["exact_ks"][n] - ours["columns"][n]["statistic"] for n in theirs["exact_ks"]]
    res.figure("exact KS D - binned KS D", max(gaps), "max",
               f"mean {float(np.mean(gaps)):.2g} over {len(gaps)} numeric columns; "
               "binned is never above exact")

    found = {n for n, r in ours["columns"].items() if r["verdict"] == "drifted"}
    res.figure("drifted columns found", f"{len(found & expected)}/{len(expected)}")
    res.figure("drifted columns missed", len(expected - found), "",
               ", ".join(sorted(expected - found)))
    res.figure("false alarms", len(found - expected), "", ", ".join(sorted(found - expected)))
    classes = {n: ours["columns"][n]["class"] for n in sorted(expected)}
    wrong = {n: k for n, k in classes.items() if k != drift_data.DRIFTED[n]}
    res.figure("effect classes as injected", f"{len(classes) - len(wrong)}/{len(classes)}", "",
               ", ".join(f"{n}: {k}" for n, k in wrong.items()))

    res.goal("time vs numpy/scipy reference", ratio, "x", "<= 2", ratio <= 2)
    peak_gib = ours["peak_kib"] / 1024 ** 2
    res.goal("peak memory", peak_gib, "GiB", "<= 2", peak_gib <= 2)
    res.goal(f"{SMALL:,} rows", ours["small_seconds"], "s", "<= 1", ours["small_seconds"] <= 1)
    res.goal("every drifted column found, no false alarm", len(found ^ expected), "errors",
             "0", found == expected)
    res.emit(args.json)


# -- the label join ----------------------------------------------------------------------------


def write_label_data(folder: Path, rows: int) -> tuple[str, str, str]:
    """N predictions over 90 days for N/5 customers, N labels by entity and time (a label
    1 to 20 days after a prediction of its customer; 2% for customers never scored, 1% twice)
    and N labels by prediction id (1% for unknown ids)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    day = 86_400_000_000
    t0 = c.T0_US
    customers = rng.integers(0, max(rows // 5, 1), rows)
    times = t0 + np.sort(rng.integers(0, 90 * day, rows))
    ids = pc.utf8_lpad(pc.cast(pa.array(np.arange(rows)), pa.string()), 32, "0")
    cust_text = pc.cast(pa.array(customers), pa.string())
    region = pa.array(c.REGIONS[customers % len(c.REGIONS)])
    score = rng.random(rows)
    preds = pa.table({
        "id": ids,
        "request_id": ids,
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "endpoint": pa.array(["churn"] * rows),
        "model": pa.array(["churn"] * rows),
        "version": pa.array(np.full(rows, 3)),
        "role": pa.array(["champion"] * rows),
        "score": score,
        "label": pc.cast(pa.array((score >= 0.5).astype(np.int64)), pa.string()),
        "features": pc.binary_join_element_wise('{"region": "', region, '", "tenure": 12}', ""),
        "request": pc.binary_join_element_wise('{"customer_id": ', cust_text, "}", ""),
    })
    pick = rng.integers(0, rows, rows)
    observed = times[pick] + rng.integers(day, 20 * day, rows)
    label_cust = customers[pick].copy()
    strangers = rng.random(rows) < 0.02
    label_cust[strangers] = -1 - np.arange(int(strangers.sum()))
    y = (rng.random(rows) < score[pick]).astype(np.int64)
    by_entity = pa.table({"customer_id": label_cust, "churned": y,
                          "observed_at": pa.array(observed, pa.timestamp("us", tz="UTC"))})
    id_pick = rng.permutation(rows)
    label_ids = ids.take(pa.array(id_pick))
    unknown = rng.random(rows) < 0.01
    strangers_ids = pc.binary_join_element_wise(
        "unknown-", pc.cast(pa.array(np.arange(rows)), pa.string()), "")
    label_ids = pc.if_else(pa.array(unknown), strangers_ids, label_ids)
    by_id = pa.table({"prediction_id": label_ids, "churned": y})
    paths = (folder / "predictions.parquet", folder / "labels_entity.parquet",
             folder / "labels_id.parquet")
    for table, path in zip((preds, by_entity, by_id), paths, strict=True):
        pq.write_table(table, path)
    return str(paths[0]), str(paths[1]), str(paths[2])


REFERENCE_ENTITY = """
WITH p AS (SELECT *, json_extract_string(request, '$.customer_id') AS k FROM read_parquet($p)),
     l AS (SELECT CAST(customer_id AS VARCHAR) AS k, churned, observed_at,
                  row_number() OVER () AS rn FROM read_parquet($l)),
     m AS (SELECT l.*, p.id AS pid, p.time AS ptime FROM l ASOF JOIN p
           ON l.k = p.k AND l.observed_at >= p.time
           WHERE p.time >= l.observed_at - INTERVAL 30 DAY
           QUALIFY row_number() OVER (PARTITION BY p.id ORDER BY l.observed_at DESC, rn DESC) = 1)
SELECT p.* EXCLUDE (k), m.churned AS actual, m.observed_at FROM p LEFT JOIN m ON p.id = m.pid
"""
REFERENCE_ID = """
WITH n AS (SELECT prediction_id, churned, row_number() OVER () AS rn FROM read_parquet($l)),
     l AS (SELECT * FROM n
           QUALIFY row_number() OVER (PARTITION BY prediction_id ORDER BY rn DESC) = 1)
SELECT p.*, l.churned AS actual FROM read_parquet($p) p LEFT JOIN l ON p.id = l.prediction_id
"""


def label_join(rows: int) -> Any:
    """The label-join benchmark: tarmac's join_labels against the ASOF join by hand in DuckDB,
    both from the same Parquet files, alternated, best of 2."""
    import duckdb
    import pyarrow.dataset as pads

    from tarmac.monitoring import join_labels, performance

    res = c.Result("monitoring-labels", rows=rows, labels=rows, **c.env_info())
    with c.workdir("monitoring-labels") as folder:
        c.log(f"writing {rows:,} predictions and {rows:,} labels (two sets) as Parquet")
        preds, by_entity, by_id = write_label_data(folder, rows)

        def ours(labels: str, **how: Any) -> Any:
            return join_labels(None, pads.dataset(preds), pads.dataset(labels),
                               label_column="churned", delay="30d", **how)

        def theirs(sql: str, labels: str) -> Any:
            con = duckdb.connect()
            try:
                return con.sql(sql, params={"p": preds, "l": labels}).to_arrow_table()
            finally:
                con.close()

        times: dict[str, list[float]] = {k: [] for k in ("te", "re", "ti", "ri")}
        out: dict[str, Any] = {}
        for _ in range(2):
            c.log("entity+time: tarmac, then the DuckDB reference")
            t, out["te"] = c.timed(lambda: ours(by_entity, entity="customer_id",
                                                 timestamp="observed_at"))
            times["te"].append(t)
            t, out["re"] = c.timed(lambda: theirs(REFERENCE_ENTITY, by_entity))
            times["re"].append(t)
            c.log("prediction id: tarmac, then the DuckDB reference")
            t, out["ti"] = c.timed(lambda: ours(by_id, id_column="prediction_id"))
            times["ti"].append(t)
            t, out["ri"] = c.timed(lambda: theirs(REFERENCE_ID, by_id))
            times["ri"].append(t)
    te, re_, ti, ri = (min(times[k]) for k in ("te", "re", "ti", "ri"))
    j = out["te"]
    c.log("performance over the entity+time join")
    perf_s, perf = c.timed(lambda: performance(j, ["roc_auc", "pr_auc", "accuracy"],
                                               window="1d", slices=["region"]))
    ref_labelled = out["re"].num_rows - out["re"].column("actual").null_count
    res.figure("join by entity+time, tarmac", te, "s",
               f"{rows:,} predictions x {rows:,} labels, best of 2")
    res.figure("join by entity+time, DuckDB by hand", re_, "s", "same ASOF join, same files")
    res.figure("time ratio tarmac/reference (entity+time)", te / re_, "x")
    res.figure("join by prediction id, tarmac", ti, "s", "best of 2")
    res.figure("join by prediction id, DuckDB by hand", ri, "s", "same files")
    res.figure("time ratio tarmac/reference (id)", ti / ri, "x")
    res.figure("labels joined / duplicate / unknown (entity+time)",
               f"{j.joined:,} / {j.duplicates:,} / {j.unknown:,}", "",
               f"labelled predictions: tarmac {j.labelled:,}, reference {ref_labelled:,}")
    res.figure("performance per day and region", perf_s, "s",
               f"{perf.num_rows:,} rows: windows x (all + 8 regions) x 3 metrics, "
               "scikit-learn through tarmac.models.metrics")
    ji = out["ti"]
    res.figure("labels joined / unknown (id)", f"{ji.joined:,} / {ji.unknown:,}", "",
               f"duplicates {ji.duplicates:,}")
    res.goal("label join, entity+time", te, "s", "<= 5", te <= 5)
    res.goal("label join, prediction id", ti, "s", "<= 5", ti <= 5)
    res.goal("same labelled predictions as the reference", abs(j.labelled - ref_labelled),
             "rows", "0", j.labelled == ref_labelled)
    return res


def _agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    worst = 0.0
    same = 0
    for name, r in theirs.items():
        o = ours[name]
        for key in ("statistic", "p", "effect"):
            a, b = float(o[key]), float(r[key])
            scale = max(abs(a), abs(b), 1e-12)
            if key == "p" and max(a, b) < 1e-12:  # both underflow-small: agree
                continue
            worst = max(worst, abs(a - b) / scale)
        same += o["verdict"] == r["verdict"]
    return {"max_rel_diff": worst, "same_verdicts": same, "compared": len(theirs)}


if __name__ == "__main__":
    main()
