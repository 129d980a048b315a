"""The demo's last chapter on a real demo project (built once for the module, small): the price
rise reaches the served features through the sources (CRM downgrades, new click files, the
features materialized again), its drift is visible to ``tarmac.monitoring.drift``, the served
predictions get their late labels by prediction id and the champion decays on them, and a
version trained on the re-issued labels passes its gates and beats the champion on the new
world's holdout."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

import tarmac
from tarmac.demo._drift_story import (
    RAISED,
    Shift,
    issue_labels,
    late_labels,
    shift_world,
)
from tarmac.demo.story import run_demo
from tarmac.errors import UsageError
from tarmac.monitoring import drift, read_labels_file
from tarmac.project import Project

pytestmark = pytest.mark.slow

SEED = 0
FEATURES = ["plan", "region", "tenure_days", "orders_90d", "spend_90d", "sessions_30d",
            "cancel_page_views_30d", "support_page_views_30d", "tickets_180d",
            "satisfaction_180d", "avg_order_value"]


@dataclass
class World:
    root: Path
    as_of: date
    p: Project
    shift: Shift
    seconds: float
    served_from: datetime | None = None
    governance: dict[str, Any] | None = None  # the demo's refused promotion


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("drift") / "kestrel"
    report = run_demo(root, size="small", seed=SEED, loop=False)  # the pieces, not the story
    assert report.as_of is not None
    with tarmac.open(root) as p:
        started = time.perf_counter()
        shift = shift_world(p, size="small", seed=SEED, as_of=report.as_of)
        yield World(root, report.as_of, p, shift, time.perf_counter() - started,
                    governance=report.governance)


def _serve_everyone(p: Project) -> tuple[datetime, int]:
    """Every customer asks once, as after the price rise; returns when it started."""
    from tarmac.serving.server import running

    ids = [r["customer_id"] for r in p.sql(
        "SELECT customer_id FROM customers ORDER BY customer_id").to_pylist()]
    started = datetime.now(UTC)
    with running(p) as url, httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda cid: client.post(
            f"{url}/v1/predict/churn", json={"entities": [{"customer_id": cid}]}).status_code,
            ids))
    assert set(answers) == {200}
    return started, len(ids)


def test_the_price_rise_goes_through_the_sources_and_the_features(world: World) -> None:
    shift, p = world.shift, world.p
    assert (shift.first_day, shift.last_day, shift.observed) == (
        world.as_of + timedelta(days=1), world.as_of + timedelta(days=2),
        world.as_of + timedelta(days=3))
    assert 0 < shift.downgraded < shift.raised and shift.clicks > shift.price_clicks > 1000
    assert world.seconds < 20, world.seconds  # the chapter's share of the demo's budget
    loaded = {r["source"]: r for r in shift.loaded}
    assert loaded["crm"]["rows"] == shift.downgraded == shift.crm_rows
    assert loaded["clicks"]["rows"] == shift.clicks and loaded["clicks"]["quarantined"] == 0
    assert sorted(f.name for f in (world.root / "data" / "clicks").glob("*-pricing.jsonl")) == [
        f"{shift.first_day}-pricing.jsonl", f"{shift.last_day}-pricing.jsonl"]
    # materialized again, nothing stale: the new world is what is served
    views = {m["view"]: m for m in shift.materialized}
    assert {"customer_profile", "customer_clicks"} <= set(views)
    assert all(m["stale"] == 0 for m in views.values())
    moved = p.sql(f"SELECT customer_id FROM customers WHERE plan = 'standard' AND updated_at >= "
                  f"TIMESTAMPTZ '{shift.first_day}' ORDER BY customer_id LIMIT 1").to_pylist()
    got = p.features.online("churn", [{"customer_id": moved[0]["customer_id"]}])
    assert got.rows[0]["plan"] == "standard" and got.status[0]["plan"] == "present"
    mix = {r["plan"]: r["n"] for r in p.sql(
        "SELECT plan, count(*) AS n FROM customers GROUP BY ALL").to_pylist()}
    trained = {r["plan"]: r["n"] for r in p.sql(
        "SELECT plan, count(*) AS n FROM churn_training GROUP BY ALL").to_pylist()}
    share = sum(mix[x] for x in RAISED) / sum(mix.values())
    assert share < sum(trained[x] for x in RAISED) / sum(trained.values()) - 0.1
    assert "premium and family plans up 25%" in shift.summary()
    assert shift.churn_after > shift.churn_before + 0.05


def test_served_traffic_drifts_and_its_late_labels_show_the_champion_decaying(
        world: World) -> None:
    p, shift = world.p, world.shift
    world.served_from, asked = _serve_everyone(p)
    served = p.sql(f"SELECT id, score, features, feature_status FROM predictions WHERE "
                   f"role = 'champion' AND time >= TIMESTAMPTZ '{world.served_from.isoformat()}'"
                   ).to_pylist()
    assert len(served) == asked
    statuses = [s for r in served for s in json.loads(r["feature_status"]).values()]
    assert statuses.count("stale") == 0  # the clock: served features are fresh
    rows = [json.loads(r["features"]) for r in served]
    current = pa.table({f: [r.get(f) for r in rows] for f in ["plan", "cancel_page_views_30d",
                                                            "support_page_views_30d"]})
    reference = p.sql("SELECT plan, cancel_page_views_30d, support_page_views_30d "
                      "FROM churn_training")
    report = drift(reference, current)
    assert {"plan", "cancel_page_views_30d"} <= set(report.drifted), report

    path = world.root / "data" / "outcomes.csv"
    labels = late_labels(p, shift, since=world.served_from, path=path)
    assert labels.column_names == ["prediction_id", "customer_id", "churned", "observed_at"]
    # every served customer of the cohort (~97% have a label), each prediction once
    assert 0.9 * asked < labels.num_rows <= asked
    assert len(set(labels["prediction_id"].to_pylist())) == labels.num_rows
    assert read_labels_file(path).num_rows == labels.num_rows
    written = p.monitoring.ingest_labels(path, label_column="churned",
                                         id_column="prediction_id", table="churn_outcomes")
    assert written.rows_added == labels.num_rows
    joined = p.monitoring.join_labels("predictions", "churn_outcomes", label_column="churned",
                                      endpoint="churn")
    assert joined.by == "id" and joined.joined == labels.num_rows and joined.unknown == 0
    table = joined.table.filter(pa.compute.is_valid(joined.table["actual"]))
    auc = roc_auc_score(table["actual"].to_numpy(), table["score"].to_numpy())
    holdout = p.models.get("churn").metrics["roc_auc"]
    assert auc < holdout - 0.03, (auc, holdout)  # decayed on the new world


def test_retraining_on_the_reissued_labels_beats_the_champion(world: World) -> None:
    p, shift = world.p, world.shift
    champion = p.models.get("churn")
    issued = issue_labels(p, shift)
    assert issued["rows"] == shift.customers and issued["observed_until"] == str(shift.observed)
    assert p.sql("SELECT DISTINCT CAST(observed_until AS DATE) AS d FROM labels").to_pylist() \
        == [{"d": shift.observed}]
    trained = p.models.train("churn")
    report = p.models.validate("churn", trained.version)
    assert report.status == "passed", [(g.name, g.status, g.why) for g in report.results]
    gate = next(g for g in report.results if g.kind == "no_regression")
    assert gate.details["champion"] == champion.version
    new_auc, champion_auc = trained.metrics["roc_auc"], gate.details["champion_value"]
    # on the same holdout (the newest labels: the new world), the new version is far better
    assert new_auc >= 0.72 and new_auc > champion_auc + 0.05, (new_auc, champion_auc)
    p.models.promote("churn", trained.version)
    assert p.models.aliases("churn")["churn"]["champion"] == trained.version


def test_the_world_shifts_once_and_only_the_demos_own(world: World) -> None:
    with pytest.raises(UsageError, match="has shifted already"):
        shift_world(world.p, size="small", seed=SEED, as_of=world.as_of)


def test_the_demo_refuses_an_analysts_promotion_and_audits_it(world: World) -> None:
    g = world.governance or {}
    assert g["refused"] == ("user 'ben' (role analyst) lacks the permission 'promote' on "
                            "alias:churn@champion")
    [denial] = [r for r in world.p.ledger.audit(action="access.denied").items
                if r.seq == g["denial"]]
    assert denial.target == "user:ben" and denial.actor == "ben"
    # ben changed nothing: his only record is the denial (other tests of this module promote
    # later, as the project's own user)
    by_ben = [r.action for r in world.p.ledger.audit(actor="ben", limit=1000).items]
    assert by_ben == ["access.denied"]


def test_another_seed_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "d"
    run_demo(root, size="small", seed=3, data_only=True, as_of=date(2026, 3, 1))
    (root / "tarmac.yaml").write_text("name: d\nlake: ./lake\n")
    before = sorted(p.name for p in (root / "data" / "clicks").iterdir())
    with tarmac.open(root) as p, pytest.raises(UsageError, match="seed=4"):
        shift_world(p, size="small", seed=4, as_of=date(2026, 3, 1))
    assert sorted(p.name for p in (root / "data" / "clicks").iterdir()) == before
    assert np.array(before).size > 0
