"""Deployments: canary (sticky by entity key, the share held over 10k keys), shadow (logged,
never in the caller's way), promote-canary as a gated promotion, abort; every bad input refused
clearly; every change audited, on SQLite and PostgreSQL catalogs.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tarmac.catalog import deployments as dcat
from tarmac.errors import PromotionRefused, UsageError
from tarmac.project import Project
from tarmac.serving import create_app
from tarmac.serving._routes import bucket
from tarmac.serving.predict import Predictions

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from serving.conftest import _cleanup, build_served  # noqa: E402

ENTITIES = [{"customer_id": i} for i in range(1, 601)]


@pytest.mark.parametrize("percent", [1, 10, 50, 90])
def test_canary_share_holds_within_2_percent_over_10k_keys(percent: int) -> None:
    threshold = percent * 100
    hits = sum(bucket("churn", f"[{k}]") < threshold for k in range(10_000))
    assert abs(hits / 10_000 * 100 - percent) <= 2


def test_a_canary_gets_its_share_sticky_by_entity(served: Project) -> None:
    p = served
    result = p.serving.deploy("risk", canary=2, percent=30)
    assert (result.after.canary_version, result.after.canary_percent) == (2, 30.0)
    first = p.serving.predict("risk", entities=ENTITIES)["predictions"]
    share = Counter(x["model"] for x in first)
    assert abs(share["risk@2"] / len(ENTITIES) - 0.30) < 0.07
    # the same customer gets the same version again, in another process's routes too
    other = Predictions(p)
    try:
        again = other.answer("risk", {"entities": ENTITIES}, "other").body["predictions"]
    finally:
        other.close()
    assert [x["model"] for x in again] == [x["model"] for x in first]
    # rows without entity key: all rows of one request go the same way (request id hash)
    rows = [{"a": 0.1, "b": 0.2, "region": "east"}] * 20
    got = {x["model"] for x in p.serving.predict("risk", rows=rows)["predictions"]}
    assert len(got) == 1


def test_canary_promote_and_history_are_audited(served_any: Project) -> None:
    p = served_any
    p.serving.deploy("risk", canary=2, percent=10)
    p.serving.deploy("risk", percent=25)
    assert dcat.get_deployment(p.catalog, "risk").canary_percent == 25.0
    result = p.serving.deploy("risk", promote_canary=True, reason="canary looked good")
    assert result.champion == 2 and result.promotion is not None
    assert p.models.aliases("risk") == {"risk": {"champion": 2}}
    after = dcat.get_deployment(p.catalog, "risk")
    assert after.canary_version is None and after.canary_percent is None
    history = [(h.action, h.canary_version, h.canary_percent) for h in p.serving.history("risk")]
    assert history == [("promote_canary", None, None), ("percent", 2, 25.0),
                       ("canary", 2, 10.0)]
    records = p.ledger.audit(limit=10)
    assert [r.action for r in records][:3] == ["deploy.promote_canary", "deploy.percent",
                                               "deploy.canary"]
    details = json.loads(records[0].details)  # one record names both changes
    assert details["promotion"]["alias"] == "champion"
    assert (details["promotion"]["from"], details["promotion"]["to"]) == (1, 2)
    assert details["from"]["canary"] == 2 and details["to"]["canary"] is None
    assert p.models.history("risk")[0].action == "promote"  # what rollback reads
    assert p.serving.predict("risk", entities=ENTITIES[:3])["predictions"][0]["model"] == \
        "risk@2"


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_promote_canary_is_one_transaction(catalog: str, tmp_path: Path,
                                           request: pytest.FixtureRequest,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = request.getfixturevalue("pg_url") if catalog == "postgres" else None
    p = build_served(tmp_path / "p", catalog=url)
    try:
        p.serving.deploy("risk", canary=2, percent=20)
        before = dcat.get_deployment(p.catalog, "risk")
        audited = p.ledger.audit(limit=1)[0].seq

        def fail(*args: Any, **kwargs: Any) -> dcat.Deployment:
            raise RuntimeError("the catalog went away between the two writes")

        # the alias moves first in the transaction; the deployment write then fails
        monkeypatch.setattr(dcat, "set_deployment", fail)
        with pytest.raises(RuntimeError, match="went away"):
            p.serving.deploy("risk", promote_canary=True)
        monkeypatch.undo()
        assert p.models.aliases("risk") == {"risk": {"champion": 1}}  # the alias did not move
        assert dcat.get_deployment(p.catalog, "risk") == before  # the canary is still there
        assert p.ledger.audit(limit=1)[0].seq == audited  # nothing audited

        result = p.serving.deploy("risk", promote_canary=True)
        assert result.champion == 2 and result.promotion is not None
        assert p.models.aliases("risk") == {"risk": {"champion": 2}}
        after = dcat.get_deployment(p.catalog, "risk")
        assert (after.canary_version, after.canary_percent) == (None, None)
        records = p.ledger.audit(limit=100)
        assert [r.seq for r in records if r.seq > audited] == [audited + 1]  # one record
        assert records[0].action == "deploy.promote_canary"
        details = json.loads(records[0].details)
        assert details["promotion"]["to"] == 2 and details["promotion"]["from"] == 1
        assert details["to"]["canary"] is None
        assert p.ledger.verify().ok
    finally:
        p.close()


def test_promote_canary_is_gated_like_promote(served: Project) -> None:
    p = served
    p.models.train("risk")  # v3: never validated
    p.serving.deploy("risk", canary=3, percent=5)
    with pytest.raises(PromotionRefused, match="never been validated"):
        p.serving.deploy("risk", promote_canary=True)
    assert p.models.aliases("risk") == {"risk": {"champion": 1}}
    assert dcat.get_deployment(p.catalog, "risk").canary_version == 3  # untouched
    p.serving.deploy("risk", abort=True)
    assert dcat.get_deployment(p.catalog, "risk").canary_version is None
    assert p.ledger.audit(limit=1)[0].action == "deploy.abort"


@pytest.fixture(scope="module")
def undeployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One served project, never deployed, for the deployments that must be refused: each
    case checks that nothing changed, so they can share it (building one trains two
    models)."""
    p = build_served(tmp_path_factory.mktemp("deploy") / "proj")
    yield p
    _cleanup(p)


@pytest.mark.parametrize("kwargs, message", [
    ({"canary": 9, "percent": 10}, "has no version 9"),
    ({"canary": 1, "percent": 10}, "already the champion"),
    ({"canary": 2, "percent": -1}, "from 0 to 100"),
    ({"canary": 2, "percent": 100.5}, "from 0 to 100"),
    ({"canary": 2, "percent": float("nan")}, "from 0 to 100"),
    ({"canary": 2}, "needs a percent"),
    ({"percent": 10}, "no canary to give"),
    ({"shadow": 7}, "has no version 7"),
    ({"shadow": 1}, "is the champion"),
    ({"promote_canary": True}, "no canary to promote"),
    ({"abort": True}, "no canary to abort"),
    ({"stop_shadow": True}, "no shadow to stop"),
    ({"abort": True, "canary": 2}, "cannot be combined"),
    ({"canary": 2, "percent": 10, "shadow": 2}, "both canary and shadow"),
    ({}, "nothing to change"),
    ({"canary": "2", "percent": 10}, "must be a version number"),
])
def test_bad_deployments_are_refused_clearly(undeployed: Project, kwargs: dict[str, Any],
                                             message: str) -> None:
    with pytest.raises(UsageError, match=message):
        undeployed.serving.deploy("risk", **kwargs)
    assert dcat.get_deployment(undeployed.catalog, "risk").generation == 0  # nothing changed


def test_unknown_model_names_close_ones(undeployed: Project) -> None:
    with pytest.raises(UsageError, match="did you mean 'risk'"):
        undeployed.serving.deploy("rsk", canary=2, percent=10)
    assert dcat.get_deployment(undeployed.catalog, "risk").generation == 0


def test_a_canary_needs_a_champion(tmp_path: Path) -> None:
    p = build_served(tmp_path / "p", versions=1, promote=False)
    try:
        with pytest.raises(UsageError, match="has no champion"):
            p.serving.deploy("risk", canary=1, percent=10)
    finally:
        p.close()


def test_shadow_scores_every_request_off_the_hot_path(served: Project,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    p = served
    p.serving.deploy("risk", shadow=2)
    engine = p.serving.engine
    logged: list[dict[str, Any]] = []
    monkeypatch.setattr(engine.log, "append", lambda records: logged.extend(records))
    answer = p.serving.predict("risk", entities=ENTITIES[:5], request_id="r-1")
    assert {x["model"] for x in answer["predictions"]} == {"risk@1"}  # never answered
    engine.drain()
    roles = Counter((r["role"], r["version"]) for r in logged)
    assert roles == {("champion", 1): 5, ("shadow", 2): 5}
    shadow = [r for r in logged if r["role"] == "shadow"]
    assert all(r["request_id"] == "r-1" and r["score"] is not None for r in shadow)
    p.serving.deploy("risk", stop_shadow=True)
    assert dcat.get_deployment(p.catalog, "risk").shadow_version is None


SLOW = '''
@model(name="risk", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(by="known_at"))
def train(data):
    import time
    import numpy as np

    def score(frame):
        if len(frame) < 100:  # serving, not the training holdout: slow on purpose
            time.sleep(float(open(SLEEP_FILE).read()))
        return 1 / (1 + np.exp(-(1.8 * frame["a"] - 1.2 * frame["b"])))
    return score
'''


def slow_project(root: Path) -> Project:
    """v1 the usual logistic regression (champion); v2 a function that sleeps per request
    for as long as ``root/sleep`` says."""
    from models.conftest import FEATURES, redefine

    p = build_served(root, versions=1)
    sleep = root / "sleep"
    sleep.write_text("0")
    redefine(p, FEATURES + SLOW.replace("SLEEP_FILE", repr(str(sleep))))
    p.models.train("risk")
    sleep.write_text("1.0")
    return p


def test_a_slow_shadow_adds_nothing_to_the_caller_s_latency(tmp_path: Path) -> None:
    p = slow_project(tmp_path / "p")
    try:
        p.serving.deploy("risk", shadow=2)
        with TestClient(create_app(p)) as client:
            for _ in range(3):
                started = time.perf_counter()
                r = client.post("/v1/predict/risk", json={"entities": ENTITIES[:2]})
                assert r.status_code == 200
                assert time.perf_counter() - started < 0.5  # the shadow sleeps 1 s
            deadline = time.monotonic() + 10  # the shadow catches up after the answers
            shadow = 'tarmac_predictions_total{endpoint="risk",role="shadow",version="2"} 6.0'
            while shadow not in client.get("/metrics").text and time.monotonic() < deadline:
                time.sleep(0.2)
            assert shadow in client.get("/metrics").text
    finally:
        p.close()
