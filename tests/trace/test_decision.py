"""Decision traces of served predictions (``p.trace``, ``tarmac trace``).

One project per module: the ``risk`` model of tests/models served as champion, plus three
models over the same features that the explanation methods must each handle: ``risk_imp``
(imputers, a scaler and a one-hot encoder in a ColumnTransformer before a logistic
regression: exact, mapped back to the features), ``risk_gbm`` (LightGBM: exact via
``pred_contrib``) and ``risk_hgb`` (a histogram gradient boosting model: the sampling method).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from models.conftest import DEFAULT_GATES, FEATURES, LOGISTIC
from serving.conftest import _cleanup, build_served
from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.project import Project
from tarmac.trace import explain as explain_module

runner = CliRunner()
TS = pa.timestamp("us", tz="UTC")

EXTRA = '''
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

def _encode():
    return make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="most_frequent"),
                       OneHotEncoder(handle_unknown="ignore")), ["region"]),
        (make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b"]))

@model(name="risk_imp", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(test="last 20%", by="known_at"), gates=GATES)
def train_imp(data: TrainingData):
    return make_pipeline(_encode(), LogisticRegression()).fit(data.X, data.y)

@model(name="risk_hgb", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(test="last 20%", by="known_at"), gates=GATES)
def train_hgb(data: TrainingData):
    encode = make_column_transformer((OrdinalEncoder(), ["region"]), ("passthrough", ["a", "b"]))
    return make_pipeline(encode, HistGradientBoostingClassifier(max_iter=30)).fit(data.X, data.y)
'''
GBM = '''
@model(name="risk_gbm", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(test="last 20%", by="known_at"), gates=GATES)
def train_gbm(data: TrainingData):
    from lightgbm import LGBMClassifier
    return make_pipeline(_encode(), LGBMClassifier(n_estimators=30, verbose=-1)).fit(
        data.X, data.y)

'''

try:
    import lightgbm  # noqa: F401
    HAVE_LGBM = True
except ImportError:  # the lightgbm extra is not installed
    HAVE_LGBM = False


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    text = FEATURES + "\nGATES = " + DEFAULT_GATES + "\n" + LOGISTIC + EXTRA + (
        GBM if HAVE_LGBM else "")
    p = build_served(tmp_path_factory.mktemp("trace") / "proj", text=text, versions=1)
    for name in ("risk_imp", "risk_hgb") + (("risk_gbm",) if HAVE_LGBM else ()):
        p.models.train(name)
        p.models.promote(name, 1, force=True, reason="trace tests")
    yield p
    _cleanup(p)


def predict(p: Project, name: str, **request: Any) -> dict[str, Any]:
    """One served prediction of ``name``, flushed to the log's table."""
    answer = p.serving.predict(name, **request)["predictions"][0]
    p.serving.engine.log.flush()
    return answer


def total(t: Any) -> float:
    e = t.explanation
    return e.base + math.fsum(c.contribution for c in e.contributions)


def test_trace_shows_the_prediction_where_its_features_came_from_and_the_versions_history(
        served: Project) -> None:
    answer = predict(served, "risk", entities=[{"customer_id": 5}])
    t = served.trace(answer["id"])
    assert (t.id, t.endpoint, t.model, t.version, t.role) == \
        (answer["id"], "risk", "risk", 1, "champion")
    assert t.score == pytest.approx(answer["score"], abs=0) and t.label == answer["label"]
    assert t.request == {"customer_id": 5}
    signals = served.lake.read("signals", filter="customer_id = 5").to_pylist()[0]
    by_name = {f.name: f for f in t.features}
    assert list(by_name) == ["a", "b", "region"]
    for name in ("a", "b", "region"):
        f = by_name[name]
        assert f.value == signals[name] and f.status == "present"
        assert f.event_time is not None and f.event_time.startswith("2024-01-01")
        assert (f.source, f.view, f.view_version, f.tables) == ("view", "signals", 1,
                                                                {"signals": 0})
        assert f.materialization is not None and f.materialization["mode"] == "full"
    run = t.training
    assert run is not None and run["inputs"] == {"labels": 0, "signals": 0}
    assert run["training_set"] == "training_set:risk@1"
    assert run["rows_train"] + run["rows_test"] == 600
    assert run["definitions"]["view:signals"] == 1 and run["params"]["C"] == 1.0
    assert run["metrics"]["roc_auc"] > 0.7 and "git" in run["environment"]
    assert t.gates[0]["status"] == "passed" and t.gates[0]["results"]
    promoted = [m for m in t.promotions if m["to"] == 1 and m["alias"] == "champion"]
    assert promoted and promoted[0]["actor"] and promoted[0]["audit_seq"] is not None
    assert promoted[0]["after_prediction"] is False
    assert t.aliases_now == ["champion"] and t.missing == []
    text = t.summary()
    assert answer["id"] in text and "risk@v1 (champion)" in text and "why (linear" in text


def test_linear_contributions_are_exact_and_sum_to_the_logged_score(served: Project) -> None:
    answer = predict(served, "risk", entities=[{"customer_id": 17}])
    t = served.trace(answer["id"])
    e = t.explanation
    assert e is not None and (e.method, e.scale, e.exact) == ("linear", "log-odds", True)
    assert sigmoid(total(t)) == pytest.approx(t.score, rel=1e-12)
    # the numeric input goes straight to the regression: w_a * (a - mean of a in the holdout)
    model = served.models.get("risk", 1)
    est = model.estimator
    names = list(est[:-1].get_feature_names_out())
    w_a = est[-1].coef_[0][names.index("passthrough__a")]
    holdout = served.models.holdout(model.record)
    a = next(f.value for f in t.features if f.name == "a")
    got = {c.feature: c.contribution for c in e.contributions}
    assert got["a"] == pytest.approx(w_a * (a - holdout["a"].mean()), rel=1e-9)
    assert e.base == pytest.approx(float(np.mean(est.decision_function(
        model.signature.frame(holdout)))), rel=1e-9)


def test_an_unknown_entity_with_missing_features_is_explained_over_what_was_there(
        served: Project) -> None:
    answer = predict(served, "risk_imp", entities=[{"customer_id": 987654}],
                     rows=[{"a": 1.5}])
    t = served.trace(answer["id"])
    status = {f.name: f.status for f in t.features}
    assert status == {"a": "request", "b": "missing", "region": "missing"}
    assert {f.name: f.source for f in t.features}["a"] == "request"
    e = t.explanation
    assert e is not None and e.method == "linear"  # mapped through imputers, scaler, one-hot
    assert sigmoid(total(t)) == pytest.approx(t.score, rel=1e-12)
    assert {c.feature: c.status for c in e.contributions} == status
    assert "b=missing" in t.summary() and "region=missing" in t.summary()
    # the all-missing case: no score was made, the trace says why there is nothing to explain
    blank = served.trace(predict(served, "risk", entities=[{"customer_id": 987654}])["id"])
    assert blank.score is None and blank.explanation is None
    assert "no input had a value" in (blank.explanation_missing or "")
    assert all(f.status == "missing" for f in blank.features)


@pytest.mark.skipif(not HAVE_LGBM, reason="the lightgbm extra is not installed")
def test_lightgbm_contributions_are_exact_via_pred_contrib(served: Project) -> None:
    answer = predict(served, "risk_gbm", entities=[{"customer_id": 23}])
    t = served.trace(answer["id"])
    e = t.explanation
    assert e is not None and (e.method, e.exact, e.scale) == ("tree", True, "log-odds")
    assert [c.feature for c in e.contributions] == ["a", "b", "region"]
    assert sigmoid(total(t)) == pytest.approx(t.score, rel=1e-9)


def test_other_models_get_seeded_sampling_whose_sum_is_the_output(served: Project) -> None:
    answer = predict(served, "risk_hgb", entities=[{"customer_id": 42}])
    t = served.trace(answer["id"])
    e = t.explanation
    assert e is not None and (e.method, e.exact, e.scale) == ("sampling", False, "probability")
    assert total(t) == pytest.approx(t.score, abs=1e-12)  # additive by construction
    assert e.samples == 64 and e.seed == 0 and all(c.stderr is not None
                                                   for c in e.contributions)
    again = served.trace(answer["id"]).explanation
    assert again is not None and [c.contribution for c in again.contributions] == \
        [c.contribution for c in e.contributions]  # the same trace every time
    model = served.models.get("risk_hgb", 1)
    frame = model.signature.frame([{"a": 0.1, "b": 0.2, "region": "east"}])
    with pytest.raises(explain_module.NotExplainable, match="LogisticRegression|linear"):
        explain_module.explain(model, frame, method="linear")


def test_unknown_id_is_a_usage_error_naming_it(served: Project) -> None:
    with pytest.raises(UsageError, match="no logged prediction with id '0123abcd'"):
        served.trace("0123abcd")
    with pytest.raises(UsageError) as err:
        served.trace("x" * 5000)
    assert len(err.value.message) < 400  # a huge input is not echoed whole
    result = runner.invoke(app, ["-p", str(served.root), "trace", "feedbeef"])
    assert result.exit_code == 2
    assert "no logged prediction with id 'feedbeef'" in result.output


def test_a_deleted_model_artifact_leaves_the_record_and_says_what_is_missing(
        tmp_path: Path) -> None:
    p = build_served(tmp_path / "proj", versions=1)
    try:
        answer = predict(p, "risk", entities=[{"customer_id": 3}])
        record = p.models.version("risk", 1)
        p.models.artifacts.path(record.artifact).unlink()
        t = p.trace(answer["id"])
        assert t.score == answer["score"] and t.training is not None and t.gates
        assert [f.status for f in t.features] == ["present"] * 3
        assert t.explanation is None
        assert "artifact" in (t.explanation_missing or "") and "missing" in \
            (t.explanation_missing or "")
        assert any(m.startswith("model artifact:") for m in t.missing)
        html = t.to_html()
        assert "No explanation" in html and "Missing" in html
    finally:
        _cleanup(p)


def test_json_html_and_terminal_renderings(served: Project, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    answer = predict(served, "risk", rows=[{"a": 0.3, "b": -0.2, "region": evil}])
    root = ["-p", str(served.root), "trace", answer["id"]]
    shown = runner.invoke(app, root)
    assert shown.exit_code == 0, shown.output
    assert answer["id"] in shown.output and "why: linear (exact)" in shown.output
    as_json = runner.invoke(app, [*root, "--json"])
    assert as_json.exit_code == 0, as_json.output
    d = json.loads(as_json.output)
    assert d["id"] == answer["id"] and d["explanation"]["method"] == "linear"
    assert {f["name"]: f["source"] for f in d["features"]}["region"] == "request"
    out = tmp_path / "t.html"
    written = runner.invoke(app, [*root, "--html", "-o", str(out)])
    assert written.exit_code == 0, written.output
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "<rect" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert runner.invoke(app, [*root, "--json", "--html"]).exit_code == 2


def log_rows(ms: list[int], model: str = "ghost") -> pa.Table:
    """Rows of the predictions table with UUIDv7-style ids made at ``ms`` (Unix ms)."""
    from tarmac.serving.predlog import SCHEMA

    n = len(ms)
    ids = [f"{m:012x}7{i:03x}8{i:015x}" for i, m in enumerate(ms)]
    cols = {"id": ids, "request_id": ids, "time": pa.array([m * 1000 for m in ms], TS),
            "endpoint": [model] * n, "model": [model] * n, "version": [1] * n,
            "role": ["canary"] * n, "shadow": [False] * n,
            "features": ['{"x": 1.0}'] * n, "feature_status": ['{"x": "request"}'] * n,
            "request": ['{"x": 1.0}'] * n, "score": [0.25] * n, "label": ["0"] * n,
            "latency_ms": [1.0] * n}
    return pa.table({f.name: pa.array(cols[f.name], f.type) if f.name in cols else
                     pa.nulls(n, f.type) for f in SCHEMA}, schema=SCHEMA)


def test_lookup_opens_only_the_files_whose_id_range_holds_it_and_a_lost_version_is_named(
        tmp_path: Path) -> None:
    from conftest import make_project
    from tarmac.trace import _lookup

    p = make_project(tmp_path / "proj")
    try:
        base = 1_767_225_600_000
        for k in range(3):  # three flushes, an hour apart
            p.lake.write("predictions", log_rows([base + k * 3_600_000 + i for i in range(50)]))
        rows = p.lake.read("predictions").sort_by("id")
        wanted = rows.column("id")[75].as_py()
        assert len(_lookup.candidates(p.lake.table("predictions"), wanted)) == 1
        assert _lookup.find(p, wanted)["id"] == wanted
        assert _lookup.find(p, "0" * 32) is None
        t = p.trace(wanted)  # a model the registry does not know: the record still shows
        assert (t.model, t.version, t.role, t.score) == ("ghost", 1, "canary", 0.25)
        assert t.features[0].source == "request" and t.explanation is None
        assert any("registry entry of ghost v1" in m for m in t.missing)
        assert "not in the registry" in (t.explanation_missing or "")
    finally:
        p.close()


def test_a_canary_prediction_names_the_deployment_that_made_it_canary(served: Project) -> None:
    served.models.train("risk_imp")
    assert served.models.validate("risk_imp", 2).status == "passed"
    served.serving.deploy("risk_imp", canary=2, percent=100, reason="try v2 on everyone")
    try:
        answer = predict(served, "risk_imp", entities=[{"customer_id": 8}])
        t = served.trace(answer["id"])
        assert (t.version, t.role) == (2, "canary") and t.explanation is not None
        assert t.deployments and t.deployments[0]["canary"] == 2
        assert t.deployments[0]["reason"] == "try v2 on everyone"
        assert t.deployments[0]["actor"] and t.promotions == []  # never promoted
        assert "<td>v2 (100%)</td>" in t.to_html()
        assert "made canary (canary) by" in t.summary()
        served.serving.deploy("risk_imp", percent=50, reason="halve it")
        later = served.trace(answer["id"]).deployments  # the change after it is marked so
        assert [d["after_prediction"] for d in later][:2] == [True, False]
    finally:
        served.serving.deploy("risk_imp", abort=True)
