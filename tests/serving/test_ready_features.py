"""``/ready`` says not ready while a served champion or canary needs a feature view that was
never materialized online (its entity requests would find no values), names the endpoint, the
version and the views, and turns ready once they are materialized, without a restart; a model
that takes raw rows only is not held back. On each catalog and online store pair.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from models.conftest import definitions
from tarmac.project import Project
from tarmac.serving import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from serving.conftest import _cleanup, build_served  # noqa: E402

EXTRA = '''
extra = FeatureView(
    name="extra", entities=[customer], source="signals", timestamp="ev",
    features=[Feature("a", Float64)],
)
risk_features = FeatureService'''


@pytest.mark.unmaterialized
def test_a_champion_whose_views_were_never_materialized_is_not_ready(
        served_any: Project) -> None:
    p = served_any
    with TestClient(create_app(p)) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        body = r.json()
        assert "endpoint 'risk' champion v1 needs feature view never materialized online: " \
               "signals" in body["detail"], body
        assert "tarmac features materialize" in body["hint"]
        assert "models" in body.get("parts", [body["part"]])
        assert c.get("/health").status_code == 200
        p.features.materialize()
        r = c.get("/ready")  # no restart: the next check sees the values
        assert r.status_code == 200, r.text
        assert r.json()["endpoints"] == {"risk": {"champion": 1}}


@pytest.mark.unmaterialized
def test_a_canary_whose_views_are_missing_is_named(served_any: Project) -> None:
    p = served_any
    p.serving.deploy("risk", canary=2, percent=10)
    with TestClient(create_app(p)) as c:
        detail = c.get("/ready").json()["detail"]
        assert "endpoint 'risk' champion v1 needs" in detail
        assert "endpoint 'risk' canary v2 needs" in detail
        p.features.materialize()
        assert c.get("/ready").status_code == 200


def test_only_the_endpoints_views_count_and_raw_row_models_are_not_held_back(
        tmp_path: Path) -> None:
    """Another view materialized (the features part is ready): the models part still says
    the champion's view is missing; an imported model that takes raw rows is never named."""
    p = build_served(tmp_path / "p", text=definitions().replace(
        "risk_features = FeatureService", EXTRA, 1), materialize=False)
    try:
        pytest.importorskip("mlflow")
        import mlflow.sklearn
        import numpy as np
        import pandas as pd
        from mlflow.models import infer_signature
        from sklearn.linear_model import LogisticRegression

        x = pd.DataFrame({"a": np.linspace(-1, 1, 40), "b": np.linspace(1, -1, 40)})
        est = LogisticRegression().fit(x, (x["a"] > 0).astype(np.int64))
        mlflow.sklearn.save_model(est, str(tmp_path / "plain"),
                                  serialization_format="cloudpickle",
                                  signature=infer_signature(x, est.predict(x)))
        p.models.import_model(str(tmp_path / "plain"), "plain")
        p.models.promote("plain", 1, force=True, reason="raw rows only")
        p.features.materialize(["extra"])
        with TestClient(create_app(p)) as c:
            r = c.get("/ready")
            assert r.status_code == 503
            assert r.json()["part"] == "models"  # the features part is ready
            assert r.json()["detail"] == ("endpoint 'risk' champion v1 needs feature view "
                                          "never materialized online: signals")
            assert "plain" not in r.text
            ok = c.post("/v1/predict/plain", json={"rows": [{"a": 0.5, "b": 0.1}]})
            assert ok.status_code == 200, ok.text
            p.features.materialize()
            r = c.get("/ready")
            assert r.status_code == 200, r.text
            assert r.json()["endpoints"] == {"plain": {"champion": 1},
                                             "risk": {"champion": 1}}
    finally:
        _cleanup(p)
