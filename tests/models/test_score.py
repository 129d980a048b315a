"""Batch scoring as a user runs it: SQL or a table in, one atomic commit of scores out, features
point in time, counts that reconcile, lineage and audit, and a clear error for each bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tarmac.errors import SqlError, TarmacError, UsageError
from tarmac.models import flavors
from tarmac.project import Project

from .conftest import T0, TS, signal_rows

PIT = "SELECT customer_id, observed FROM labels"
AS_IS = ("SELECT l.customer_id, l.churned, s.a, s.b, s.region FROM labels l "
         "JOIN signals s USING (customer_id)")
COLUMNS = ["score", "label", "model", "version", "scored_at", "reject_reason"]


@pytest.fixture
def champion(mproject: Project) -> Project:
    version = mproject.models.train("risk").version
    mproject.models.promote("risk", version, force=True, reason="scoring tests")
    return mproject


def _scores_by_id(p: Project, table: str) -> dict[int, float]:
    t = p.lake.read(table)
    return dict(zip(t.column("customer_id").to_pylist(), t.column("score").to_pylist(),
                    strict=True))


def test_scores_point_in_time_features_into_one_commit(champion: Project) -> None:
    p = champion
    seen: list[tuple[int, int]] = []
    result = p.models.score("risk", PIT, "risk_scores", batch_rows=50,
                            progress=lambda done, total: seen.append((done, total)))
    assert (result.rows_in, result.rows_scored, result.rows_rejected) == (600, 600, 0)
    assert seen == [(n, 600) for n in range(50, 601, 50)]  # streamed, batch by batch
    assert result.version == 1 and result.output_version == 0 and result.warnings == []
    assert result.features == "feature store: risk as of 'observed'"
    out = p.lake.read("risk_scores")
    assert out.column_names == ["customer_id", "observed", *COLUMNS]
    assert out.num_rows == 600 and out.column("version").unique().to_pylist() == [1]
    assert out.column("model").unique().to_pylist() == ["risk"]
    assert out.column("reject_reason").null_count == 600
    # 12 batches, ONE Delta commit: the table has a single version
    assert [h["version"] for h in p.lake.history("risk_scores")] == [0]
    # the same scores the loaded model gives on the point-in-time training set
    frame = p.features.training_set(PIT, "risk").to_pandas().sort_values("customer_id")
    model = p.models.get("risk")
    expected = dict(zip(frame["customer_id"], model.predict_scores(frame), strict=True))
    got = _scores_by_id(p, "risk_scores")
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) < 1e-12 for k in got)
    labels = dict(zip(out.column("customer_id").to_pylist(), out.column("label").to_pylist(),
                      strict=True))
    assert all(labels[k] == int(got[k] >= 0.5) for k in got)


def test_features_are_taken_as_of_the_input_time_or_now(champion: Project) -> None:
    p = champion
    later = signal_rows(seed=7)  # new values for every customer, 20 days later
    later = later.set_column(1, "ev", pa.array([T0 + timedelta(days=20)] * 600, TS))
    p.lake.write("signals", later)
    then = p.models.score("risk", PIT, "as_of_then")
    now = p.models.score("risk", "SELECT customer_id FROM labels", "as_of_now")
    assert then.features.endswith("as of 'observed'") and now.features.endswith("as of now")
    before, after = _scores_by_id(p, "as_of_then"), _scores_by_id(p, "as_of_now")
    assert before != after  # the day-10 rows see day-0 features, "now" sees day-20 ones
    model = p.models.get("risk")
    fresh = later.to_pandas()
    expected_now = dict(zip(fresh["customer_id"], model.predict_scores(fresh), strict=True))
    assert all(abs(after[k] - expected_now[k]) < 1e-12 for k in after)
    assert p.lake.read("as_of_now").column_names == ["customer_id", *COLUMNS]


def test_an_input_with_the_feature_columns_is_scored_as_is(champion: Project) -> None:
    p = champion
    result = p.models.score("risk", AS_IS, "risk_scores")
    assert result.features == "input" and result.rows_scored == 600
    out = p.lake.read("risk_scores")
    assert out.column_names == ["customer_id", "churned", *COLUMNS]  # not the features
    signals = p.lake.read("signals").to_pandas()
    model = p.models.get("risk")
    expected = dict(zip(signals["customer_id"], model.predict_scores(signals), strict=True))
    got = _scores_by_id(p, "risk_scores")
    assert all(abs(got[k] - expected[k]) < 1e-12 for k in got)


def test_a_lake_table_as_input_and_append_mode(champion: Project) -> None:
    p = champion
    p.lake.write("to_score", p.sql(AS_IS))
    first = p.models.score("risk", "to_score", "scores", version=1)
    second = p.models.score("risk", "to_score", "scores", alias="champion", mode="append")
    assert (first.output_version, second.output_version) == (0, 1)
    assert p.lake.read("scores").num_rows == 1200
    third = p.models.score("risk", "to_score", "scores")  # overwrite is the default
    assert third.output_version == 2 and p.lake.read("scores").num_rows == 600


def test_the_run_has_lineage_and_an_audit_record(champion: Project) -> None:
    p = champion
    result = p.models.score("risk", PIT, "risk_scores")
    run = p.ledger.get_run(result.run_id)
    assert run is not None and run.job == "score:risk" and run.status == "succeeded"
    (producer,) = p.ledger.lineage("risk_scores", depth=1).children  # the score run
    assert producer.kind == "run" and producer.run is not None
    assert producer.run.id == result.run_id
    assert {(c.name, c.version) for c in producer.children} >= {
        ("model:risk", 1), ("labels", 0), ("signals", 0)}
    audit = [r for r in p.ledger.audit() if r.action == "model.score"]
    assert len(audit) == 1 and audit[0].target == "model:risk@1"
    details = json.loads(audit[0].details)
    assert details["rows_in"] == 600 and details["rows_scored"] == 600
    assert details["rows_rejected"] == 0 and details["output"] == "risk_scores@0"
    assert details["run_id"] == result.run_id


def test_rows_without_any_feature_are_kept_rejected_with_the_reason(champion: Project) -> None:
    p = champion
    sql = ("SELECT customer_id, observed FROM labels UNION ALL "
           "SELECT customer_id + 100000, observed FROM labels WHERE customer_id <= 7")
    result = p.models.score("risk", sql, "risk_scores")
    assert (result.rows_in, result.rows_scored, result.rows_rejected) == (607, 600, 7)
    (reason,) = result.rejected
    assert "no value for any model input" in reason and result.rejected[reason] == 7
    out = p.lake.read("risk_scores", filter="reject_reason IS NOT NULL").to_pandas()
    assert sorted(out["customer_id"]) == list(range(100001, 100008))
    assert out["score"].isna().all() and out["label"].isna().all()


def test_an_empty_input_is_refused_or_written_empty_when_allowed(champion: Project) -> None:
    p = champion
    empty = "SELECT customer_id, observed FROM labels WHERE false"
    with pytest.raises(UsageError, match="the input has no rows .* nothing to score"):
        p.models.score("risk", empty, "risk_scores")
    assert not p.lake.exists("risk_scores")
    result = p.models.score("risk", empty, "risk_scores", allow_empty=True)
    assert result.rows_in == 0 and result.warnings == [
        "the input has no rows: 'risk_scores' gets no scores"]
    out = p.lake.read("risk_scores")
    assert out.num_rows == 0 and out.column_names == ["customer_id", "observed", *COLUMNS]


def test_a_failure_half_way_commits_nothing(champion: Project, monkeypatch: Any) -> None:
    p = champion
    p.models.score("risk", PIT, "risk_scores")
    files = sorted(Path(p.lake.uri("risk_scores").removeprefix("file://")).glob("*.parquet"))
    real = flavors.Predictor.scores
    calls = {"n": 0}

    def flaky(self: flavors.Predictor, frame: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("model server fell over")
        return real(self, frame)

    monkeypatch.setattr(flavors.Predictor, "scores", flaky)
    with pytest.raises(TarmacError, match=r"risk v1 raised RuntimeError on input rows 200 to "
                                          r"299: model server fell over"):
        p.models.score("risk", PIT, "risk_scores", batch_rows=100)
    assert p.lake.version("risk_scores") == 0  # the old scores, untouched
    left = sorted(Path(p.lake.uri("risk_scores").removeprefix("file://")).glob("*.parquet"))
    assert left == files  # the staged files of the failed run were removed
    failed = p.ledger.runs(job="score:risk", status="failed")
    assert len(failed) == 1 and "model server fell over" in (failed[0].error or "")


# -- bad input ---------------------------------------------------------------------------------


def test_sql_that_fails_names_the_position(champion: Project) -> None:
    with pytest.raises(SqlError, match=r"(?s)the input SQL failed: .*LINE 1: .*\^"):
        champion.models.score("risk", "SELECT customer_id, observed FRM labels", "out")
    with pytest.raises(SqlError, match=r"(?s)the input SQL failed: .*nope.*LINE 1"):
        champion.models.score("risk", "SELECT nope FROM labels", "out")


def test_sql_that_fails_while_it_streams(champion: Project) -> None:
    p = champion
    p.models.score("risk", AS_IS, "out")
    sql = AS_IS.replace("s.a,", "CASE WHEN l.customer_id < 590 THEN s.a "
                                "ELSE error('bad row ' || l.customer_id) END AS a,")
    with pytest.raises(SqlError, match="the input SQL failed: .*bad row 59"):
        p.models.score("risk", sql, "out", batch_rows=10)
    assert p.lake.version("out") == 0  # nothing committed


@pytest.mark.parametrize("name", ["Scores", "1scores", "scores-today", "a" * 64, ""])
def test_an_invalid_output_table_name(champion: Project, name: str) -> None:
    with pytest.raises(UsageError, match="invalid output table name"):
        champion.models.score("risk", PIT, name)


def test_an_input_missing_a_signature_column(champion: Project) -> None:
    p = champion
    sql = "SELECT s.a, s.region FROM signals s"  # no b, and no key to fetch it
    with pytest.raises(UsageError, match=r"lacks column 'b', an input of risk v1, and the "
                                         r"entity key\(s\) customer_id"):
        p.models.score("risk", sql, "out")
    with pytest.raises(UsageError, match=r"has some inputs of risk v1 \(a\) but lacks b, "
                                         r"region: give every one of them, or none"):
        p.models.score("risk", "SELECT customer_id, a FROM signals", "out")
    with pytest.raises(UsageError, match="input column 'a' is float64, but row 0 holds 'x'"):
        p.models.score("risk", "SELECT 'x' AS a, 1.0 AS b, 'north' AS region", "out")


def test_the_input_has_a_column_the_output_adds(champion: Project) -> None:
    with pytest.raises(UsageError, match=r"column\(s\) score, which the output table adds"):
        champion.models.score("risk", f"SELECT *, 1 AS score FROM ({AS_IS})", "out")


def test_several_timestamps_need_one_named(champion: Project) -> None:
    p = champion
    sql = "SELECT customer_id, observed, known_at FROM labels"
    with pytest.raises(UsageError, match="several timestamp columns .observed, known_at."):
        p.models.score("risk", sql, "out")
    assert p.models.score("risk", sql, "out", timestamp="observed").rows_scored == 600


def test_a_model_with_no_champion(mproject: Project) -> None:
    mproject.models.train("risk")
    with pytest.raises(UsageError, match="model 'risk' has no alias 'champion'"):
        mproject.models.score("risk", PIT, "out")
    assert mproject.models.score("risk", PIT, "out", version=1).rows_scored == 600


def test_an_unknown_model_or_table(champion: Project) -> None:
    with pytest.raises(UsageError, match="no registered model named 'rsik'"):
        champion.models.score("rsik", PIT, "out")
    with pytest.raises(UsageError, match="no lake table named 'labelz'"):
        champion.models.score("risk", "labelz", "out")


def test_scores_do_not_depend_on_the_batch_size(champion: Project) -> None:
    p = champion
    p.models.score("risk", AS_IS, "big", batch_rows=100_000)
    p.models.score("risk", AS_IS, "small", batch_rows=7)
    big, small = _scores_by_id(p, "big"), _scores_by_id(p, "small")
    assert big.keys() == small.keys()
    assert np.allclose([big[k] for k in big], [small[k] for k in big])


def test_scoring_and_importing_on_each_catalog(mproject_any: Project, tmp_path: Path) -> None:
    """The same run, lineage and registration on SQLite and on PostgreSQL."""
    p = mproject_any
    p.models.train("risk")
    p.models.promote("risk", 1, force=True, reason="catalog test")
    result = p.models.score("risk", PIT, "risk_scores")
    assert (result.rows_in, result.rows_scored, result.output_version) == (600, 600, 0)
    audit = [r for r in p.ledger.audit() if r.action == "model.score"]
    assert len(audit) == 1 and json.loads(audit[0].details)["rows_scored"] == 600
    folder = _mlflow_dir(tmp_path / "mlflow_model", p.models.get("risk").estimator)
    record = p.models.import_model(folder, "risk", signature="a,b,region:string")
    assert record.version == 2 and record.flavor == "sklearn"
    assert record.spec["features"] == "risk"  # declared: the version takes the feature service
    pit = p.models.score("risk", PIT, "imported_pit", version=2)  # features point in time
    assert pit.rows_scored == 600
    assert _scores_by_id(p, "imported_pit") == pytest.approx(
        _scores_by_id(p, "risk_scores"))  # the same estimator, the same point-in-time values
    again = p.models.score("risk", AS_IS, "imported_scores", version=2)
    assert again.rows_scored == 600 and again.features == "input"
    assert _scores_by_id(p, "imported_scores") == pytest.approx(
        _scores_by_id(p, "risk_scores"))
    other = p.models.import_model(folder, "other", signature="a,b,region:string")
    with pytest.raises(UsageError, match=r"lacks column\(s\) a, b, region, input\(s\) of "
                                         r"other v1 \(it takes a, b, region\); the input's "
                                         r"columns: customer_id, observed"):
        p.models.score("other", PIT, "other_scores", version=other.version)  # undeclared


def _mlflow_dir(folder: Path, estimator: Any) -> Path:
    """An MLflow model directory written by hand (the format, without needing mlflow)."""
    import cloudpickle

    folder.mkdir()
    (folder / "model.pkl").write_bytes(cloudpickle.dumps(estimator))
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
        "    model_path: model.pkl\n  sklearn:\n    pickled_model: model.pkl\n"
        "    serialization_format: cloudpickle\n")
    return folder


def test_multiclass_and_regression_outputs(mproject: Project, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    p = mproject
    frame = p.sql(AS_IS).to_pandas()
    x = frame[["a", "b"]]
    tiers = np.where(frame["a"] > 0.5, "gold", np.where(frame["a"] < -0.5, "bronze", "silver"))
    clf = LogisticRegression().fit(x, tiers)
    reg = LinearRegression().fit(x, 2 * frame["a"] - frame["b"])
    p.models.import_model(_mlflow_dir(tmp_path / "tier", clf), "tier", signature="a,b")
    p.models.import_model(_mlflow_dir(tmp_path / "value", reg), "value", signature="a,b")

    tier = p.models.score("tier", AS_IS, "tiers", version=1)
    assert tier.rows_scored == 600
    out = p.lake.read("tiers").to_pandas().sort_values("customer_id").reset_index(drop=True)
    ordered = frame.sort_values("customer_id").reset_index(drop=True)
    proba = clf.predict_proba(ordered[["a", "b"]])
    assert (out["label"] == clf.predict(ordered[["a", "b"]])).all()  # strings, not indexes
    assert np.allclose(out["score"], proba.max(axis=1))

    value = p.models.score("value", AS_IS, "values", version=1)
    assert value.rows_scored == 600
    out = p.lake.read("values")
    assert "label" not in out.column_names  # a regression has a value, no label
    got = out.to_pandas().sort_values("customer_id")
    assert np.allclose(got["score"], reg.predict(ordered[["a", "b"]]))
