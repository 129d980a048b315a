"""Late labels: the join by prediction id and by entity and time (every label accounted for),
performance per window and slice equal to scikit-learn's, incomplete windows marked, and
``tarmac labels ingest`` (a missing column refused)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.errors import TableNotFoundError, UsageError
from tarmac.monitoring import LabelJoin, join_labels, performance
from tarmac.project import Project

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=60)


def log(n: int = 2000, seed: int = 0) -> tuple[pa.Table, np.ndarray]:
    """A prediction log over 4 days: one prediction per customer per request, scores that
    rank the true outcome (returned beside it) better than chance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(0.5 * y + rng.normal(0.25, 0.25, n), 0, 1)
    times = [T0 + timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, 4 * 1440, n))]
    region = rng.choice(["north", "south"], n)
    table = pa.table({
        "id": [f"p{i:05d}" for i in range(n)],
        "request_id": [f"r{i:05d}" for i in range(n)],
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "role": ["champion"] * n,
        "score": score,
        "label": [json.dumps(int(s >= 0.5)) for s in score],
        "features": [json.dumps({"region": r}) for r in region],
        "request": [json.dumps({"customer_id": i}) for i in range(n)],
    })
    return table, y


def test_by_id_counts_duplicates_unknown_and_invalid_labels() -> None:
    preds, y = log(100)
    labels = pa.table({
        "prediction_id": ["p00001", "p00001", "p00002", "nope", None, "p00003"],
        "churned": [0, 1, 1, 1, 1, None],
    })
    j = join_labels(None, preds, labels, label_column="churned")
    assert j.by == "id"
    assert (j.labels, j.joined, j.duplicates, j.unknown, j.invalid) == (6, 2, 1, 1, 2)
    assert j.labels == j.joined + j.duplicates + j.unknown + j.invalid
    assert (j.predictions, j.labelled, j.unlabelled) == (100, 2, 98)
    got = dict(zip(j.table.column("id").to_pylist(), j.table.column("actual").to_pylist(),
                   strict=True))
    assert got["p00001"] == 1  # of two labels for one prediction the last given is kept
    assert got["p00002"] == 1 and got["p00003"] is None and got["p00000"] is None
    assert "predicted" in j.table.column_names and "label" not in j.table.column_names


def test_by_entity_and_time_takes_the_latest_prediction_within_the_delay() -> None:
    t = lambda d: T0 + timedelta(days=d)  # noqa: E731
    preds = pa.table({
        "id": ["a", "b", "c", "d", "s"],
        "request_id": ["r1", "r2", "r3", "r4", "r2"],
        "time": pa.array([t(0), t(5), t(2), t(1), t(5)], pa.timestamp("us", tz="UTC")),
        "role": ["champion", "champion", "champion", "champion", "shadow"],
        "score": [0.9, 0.2, 0.4, 0.5, 0.3],
        "request": ['{"cust": 7}', '{"cust": 7}', '{"cust": 8}', None, '{"cust": 7}'],
        "features": [None, None, None, '{"cust": 9}', None],
    })
    labels = pa.table({
        "cust": [7, 7, 8, 9, 10, 7],
        "churned": [1, 0, 1, 0, 1, 1],
        "seen": pa.array([t(6), t(7), t(40), t(3), t(3), t(4)], pa.timestamp("us", tz="UTC")),
    })
    j = join_labels(None, preds, labels, label_column="churned", entity="cust",
                    timestamp="seen", delay="30d")
    # cust 7 seen day 6 and day 7: both after the day-5 request (champion b + shadow s): the
    # later label is kept, one duplicate; seen day 4: the day-0 prediction a. cust 8 seen on
    # day 40 is beyond the 30-day delay of its day-2 prediction: unknown, like cust 10. cust 9
    # is read from the features JSON.
    assert (j.joined, j.duplicates, j.unknown, j.invalid) == (3, 1, 2, 0)
    got = dict(zip(j.table.column("id").to_pylist(), j.table.column("actual").to_pylist(),
                   strict=True))
    assert got == {"a": 1, "b": 0, "s": 0, "c": None, "d": 0}
    assert j.unlabelled == 1


def test_bad_arguments_say_what_is_wrong() -> None:
    preds, _ = log(10)
    labels = pa.table({"prediction_id": ["p00001"], "churned": [1]})
    with pytest.raises(UsageError, match=r"label_column 'churn' is not a column of the labels "
                       r".*did you mean 'churned'"):
        join_labels(None, preds, labels, label_column="churn")
    with pytest.raises(UsageError, match="need a way to find their prediction"):
        join_labels(None, preds, labels.rename_columns(["x", "churned"]), label_column="churned")
    with pytest.raises(UsageError, match="needs timestamp="):
        join_labels(None, preds, labels, label_column="churned", entity="prediction_id")
    with pytest.raises(UsageError, match="delay: expected a duration"):
        join_labels(None, preds, labels, label_column="churned", delay="-3d")
    with pytest.raises(UsageError, match="needs a project"):
        join_labels(None, "predictions", labels, label_column="churned")


def test_performance_equals_scikit_learn_per_window_and_slice() -> None:
    preds, y = log(2000)
    labels = pa.table({"prediction_id": preds.column("id"), "churned": y})
    j = join_labels({"predictions": preds, "labels": labels}, "predictions",
                    "SELECT * FROM labels", label_column="churned", delay="7d")
    perf = performance(j, ["roc_auc", "pr_auc", "accuracy"], window="1d", slices=["region"],
                       now=NOW)
    assert perf.schema.names == ["window_start", "window_end", "slice", "metric", "value",
                                 "n_predictions", "n_labeled", "complete", "reason"]
    rows = perf.to_pylist()
    assert {r["slice"] for r in rows} == {"(all)", "region=north", "region=south"}
    assert len({r["window_start"] for r in rows}) == 4 and all(r["complete"] for r in rows)
    times = np.array(preds.column("time").to_pylist())
    region = np.array([json.loads(f)["region"] for f in preds.column("features").to_pylist()])
    score = preds.column("score").to_numpy()
    sk = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score,
          "accuracy": lambda yt, s: float(np.mean(yt == (s >= 0.5)))}
    for r in rows:
        rows_in = (times >= r["window_start"]) & (times < r["window_end"])
        if r["slice"] != "(all)":
            rows_in &= region == r["slice"].split("=")[1]
        assert r["n_predictions"] == r["n_labeled"] == rows_in.sum()
        assert r["value"] == pytest.approx(sk[r["metric"]](y[rows_in], score[rows_in]),
                                           abs=1e-12)


def test_windows_with_labels_still_to_come_are_incomplete_not_a_drop() -> None:
    preds, y = log(2000)
    # the last two days: only a fifth labelled so far
    late = np.array([t >= T0 + timedelta(days=2) for t in preds.column("time").to_pylist()])
    keep = ~late | (np.arange(len(y)) % 5 == 0)
    labels = pa.table({"prediction_id": preds.column("id").filter(pa.array(keep)),
                       "churned": y[keep]})
    j = join_labels(None, preds, labels, label_column="churned", delay="7d")
    by_day = {r["window_start"]: r for r in performance(
        j, ["roc_auc"], now=NOW).to_pylist()}
    assert [r["complete"] for r in by_day.values()] == [True, True, False, False]
    assert "only" in by_day[T0 + timedelta(days=3)]["reason"]
    # before the delay has passed: a window with every prediction labelled is complete (no
    # label is left to come); one partly labelled is incomplete, its value still shown
    soon = performance(j, ["roc_auc"], now=T0 + timedelta(days=5)).to_pylist()
    assert soon[0]["complete"] and soon[0]["n_labeled"] == soon[0]["n_predictions"]
    assert not soon[2]["complete"] and "may still arrive until 2026-03-11" in soon[2]["reason"]
    assert soon[2]["value"] is not None


def test_a_metric_the_window_cannot_define_has_a_reason() -> None:
    preds, _ = log(100)
    labels = pa.table({"prediction_id": preds.column("id"), "churned": np.ones(100, int)})
    j = join_labels(None, preds, labels, label_column="churned")
    rows = performance(j, ["roc_auc"], window="30d", now=NOW, min_rows=10).to_pylist()
    assert rows[0]["value"] is None and "undefined" in rows[0]["reason"]
    small = performance(j, ["roc_auc"], window="1d", now=NOW, min_rows=1000).to_pylist()
    assert all("under min_rows=1000" in r["reason"] for r in small)
    with pytest.raises(UsageError, match="unknown metric 'roc_aux'.*roc_auc"):
        performance(j, ["roc_aux"])
    with pytest.raises(UsageError, match="applies to regression"):
        performance(j, ["rmse", "roc_auc"], task="binary")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from models.conftest import build

    p = build(tmp_path_factory.mktemp("labels") / "proj")
    preds, _ = log(300)
    p.lake.write("predictions", preds)
    yield p
    p.close()


def test_labels_ingest_cli_appends_and_refuses_a_missing_column(project: Project,
                                                                 tmp_path: Path) -> None:
    preds, y = log(300)
    csv = tmp_path / "outcomes.csv"
    csv.write_text("prediction_id,churned\n" + "".join(
        f"{i},{v}\n" for i, v in zip(preds.column("id").to_pylist()[:200], y[:200],
                                     strict=True)))
    runner = CliRunner()
    args = ["--project", str(project.root), "labels", "ingest", "--table", "late"]
    bad = runner.invoke(app, [*args, str(csv), "--label-column", "churn"])
    assert bad.exit_code == 2 and "no label column 'churn'" in bad.output
    assert not project.lake.exists("late")
    ok = runner.invoke(app, [*args, str(csv), "--label-column", "churned"])
    assert ok.exit_code == 0, ok.output
    assert "appended 200 label(s) to late" in ok.output
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text("".join(json.dumps({"prediction_id": i, "churned": int(v)}) + "\n"
                             for i, v in zip(preds.column("id").to_pylist()[200:], y[200:],
                                             strict=True)))
    project.monitoring.ingest_labels(jsonl, label_column="churned", table="late")
    no_id = tmp_path / "no_id.parquet"
    pq.write_table(pa.table({"churned": [1]}), no_id)
    with pytest.raises(UsageError, match="need an id column"):
        project.monitoring.ingest_labels(no_id, label_column="churned", table="late")
    j = project.monitoring.join_labels("predictions", "late", label_column="churned")
    assert isinstance(j, LabelJoin) and (j.joined, j.unlabelled) == (300, 0)
    audited = [r for r in project.ledger.audit(limit=1000).items if "late" in str(r.target)]
    assert len(audited) >= 2  # both appends went through the audited write path
    with pytest.raises(TableNotFoundError):
        project.monitoring.join_labels("predictions", "outcomes", label_column="churned")


def test_text_labels_and_one_endpoint() -> None:
    preds, y = log(400)
    n = preds.num_rows
    answer = ["yes" if s >= 0.5 else "no" for s in preds.column("score").to_pylist()]
    preds = preds.set_column(preds.schema.get_field_index("label"), "label",
                             pa.array([json.dumps(a) for a in answer]))
    preds = preds.append_column("endpoint", pa.array(["churn", "upsell"] * (n // 2)))
    truth = np.where(y == 1, "yes", "no")
    labels = pa.table({"prediction_id": preds.column("id"), "outcome": truth})
    j = join_labels(None, preds, labels, label_column="outcome", endpoint="churn")
    assert j.predictions == n // 2 and j.joined == n // 2 and j.unknown == n // 2
    assert set(j.table.column("endpoint").to_pylist()) == {"churn"}
    [row] = performance(j, ["accuracy"], window="30d", now=NOW).to_pylist()
    mine = np.arange(n) % 2 == 0
    expected = float(np.mean(truth[mine] == np.array(answer)[mine]))
    assert row["value"] == pytest.approx(expected) and row["n_labeled"] == n // 2


def test_a_project_without_a_prediction_log_says_so(tmp_path: Path) -> None:
    from models.conftest import build

    p = build(tmp_path / "proj")
    try:
        with pytest.raises(TableNotFoundError, match="no lake table named 'predictions'"):
            p.monitoring.join_labels("predictions", pa.table({"prediction_id": ["x"],
                                                               "y": [1]}), label_column="y")
    finally:
        p.close()


def test_a_labels_csv_with_text_times_joins_by_entity(project: Project, tmp_path: Path) -> None:
    csv = tmp_path / "by_customer.csv"
    # customer 5 was scored once, in the first few days; a label a week later finds it
    first = project.sql("SELECT time FROM predictions WHERE request->>'customer_id' = '5'")
    seen = first.column("time")[0].as_py() + timedelta(days=7)
    csv.write_text(f"customer_id,churned,observed_at\n5,1,{seen:%Y-%m-%dT%H:%M:%SZ}\n"
                   f"5,0,{seen - timedelta(days=60):%Y-%m-%dT%H:%M:%SZ}\n")
    project.monitoring.ingest_labels(csv, label_column="churned", entity="customer_id",
                                     timestamp="observed_at", table="by_customer")
    j = project.monitoring.join_labels("predictions", "by_customer", label_column="churned",
                                       entity="customer_id", timestamp="observed_at")
    assert (j.joined, j.unknown, j.duplicates) == (1, 1, 0)  # the older label precedes it
    assert j.table.filter(pa.compute.field("actual") == 1).column("id").to_pylist() == ["p00005"]
