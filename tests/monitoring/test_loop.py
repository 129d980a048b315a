"""The closed retraining loop on a real trained model (tests/models' ``risk``: a logistic
regression whose v1 is the validated champion): a monitor result triggers a retraining, the new
version is gated against the champion, and the policy promotes it directly, waits for approval,
or runs a canary first. A loop that fails (training raised, gates failed, canary failed) alerts
and leaves the champion; every step is audited with the run that triggered it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from models.conftest import build, definitions, redefine
from tarmac.catalog import deployments as dcat
from tarmac.catalog.monitors import RetrainLoop, claim_window
from tarmac.cli import app
from tarmac.errors import PromotionRefused, UsageError
from tarmac.monitoring import alert_history
from tarmac.monitoring.canary import canary_check
from tarmac.monitoring.declare import MonitorDefinition, log, monitor, retrain
from tarmac.monitoring.loop import (
    advance_loops,
    approve,
    loops,
    reject,
    start_loop,
    why_not,
)
from tarmac.project import Project
from tarmac.serving.predlog import SCHEMA

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
TRIGGER = {"checks": [{"check": "performance", "metric": "roc_auc", "verdict": "decayed"}]}


@pytest.fixture
def p(tmp_path: Path) -> Iterator[Project]:
    """The ``risk`` project with v1 trained, validated and promoted to champion."""
    project = build(tmp_path / "proj")
    assert project.models.train("risk").version == 1
    assert project.models.validate("risk", 1).status == "passed"
    project.models.promote("risk", 1)
    yield project
    project.close()


@pytest.fixture(params=["sqlite", "postgres"])
def p_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """The same project on each catalog: SQLite, then the real PostgreSQL."""
    catalog = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    project = build(tmp_path / "proj", catalog=catalog)
    project.models.train("risk")
    assert project.models.validate("risk", 1).status == "passed"
    project.models.promote("risk", 1)
    yield project
    project.close()


@pytest.fixture
def watch() -> MonitorDefinition:
    """The monitor of ``risk``; its alerts go to the log."""
    return monitor("risk", alerts=[log("tarmac.test.alerts")])


def trigger_run(p: Project, hour: int = 0) -> str:
    """A real evaluated window of the monitor: the run that triggers the loop."""
    start = int((T - timedelta(days=1)).timestamp() * 1e6) + hour * 3_600_000_000
    run = claim_window(p.catalog, "risk", start, start + 86_400_000_000)
    assert run is not None
    return run.run_id


def champion(p: Project) -> int:
    return p.models.aliases("risk")["risk"]["champion"]


def retrain_steps(p: Project) -> list[tuple[str, dict]]:
    """The retraining loop's audit records, oldest first."""
    records = p.ledger.audit(target="model:risk", limit=500).items
    return [(r.action, json.loads(r.details)) for r in reversed(records)
            if r.action.startswith("retrain.")]


def start(p: Project, watch: MonitorDefinition, *, at: datetime = T,
          **policy: object) -> RetrainLoop | None:
    return start_loop(p, watch, retrain(**policy),  # type: ignore[arg-type]
                      trigger_run=trigger_run(p, int((at - T) / HOUR)), trigger=TRIGGER, now=at)


# -- direct ----------------------------------------------------------------------------------


def test_direct_policy_promotes_a_version_whose_gates_pass(p: Project,
                                                           watch: MonitorDefinition) -> None:
    run_id = trigger_run(p)
    loop = start_loop(p, watch, retrain(promote="direct"), trigger_run=run_id,
                      trigger=TRIGGER, now=T)
    assert loop is not None
    assert (loop.state, loop.champion, loop.version, loop.trigger_run) == \
        ("promoted", 1, 2, run_id)
    assert champion(p) == 2
    # every step audited, in order, each naming the loop and the monitor run that triggered it
    steps = retrain_steps(p)
    assert [a for a, _ in steps] == ["retrain.started", "retrain.trained", "retrain.promoted"]
    assert {d["trigger_run"] for _, d in steps} == {run_id}
    assert {d["loop"] for _, d in steps} == {loop.id}
    assert all(d["trigger"] == TRIGGER for _, d in steps)  # the failing checks, every step
    assert steps[0][1]["champion"] == 1 and steps[0][1]["policy"]["promote"] == "direct"
    # the promotion itself went through the gated registry promotion
    promote = p.ledger.audit(action="model.promote", limit=5).items[0]
    assert json.loads(promote.details)["to"] == 2


def test_the_new_version_has_lineage_to_the_monitor_run_that_triggered_it(
        p: Project, watch: MonitorDefinition) -> None:
    run_id = trigger_run(p)
    loop = start_loop(p, watch, retrain(promote="direct"), trigger_run=run_id,
                      trigger={**TRIGGER, "results_version": 3}, now=T)
    assert loop is not None and loop.version == 2
    record = p.models.version("risk", 2)
    assert record.tags["trigger_run"] == run_id
    assert record.tags["retrain_loop"] == loop.id and record.tags["monitor"] == "risk"
    tree = p.ledger.lineage("model:risk@2").to_dict()
    retrains = [c for c in tree["children"] if c["name"] == "retrain:risk"]
    assert len(retrains) == 1 and retrains[0]["status"] == "succeeded"
    inputs = {(c["name"], c["version"]) for c in retrains[0]["children"]}
    assert inputs == {(f"monitor_run:{run_id}", None), ("monitor_results", 3)}
    # and the training run that fitted it is there too
    assert "train:risk" in {c["name"] for c in tree["children"]}


# -- failures ----------------------------------------------------------------------------------


def test_failed_gates_fail_the_loop_alert_and_leave_the_champion(
        p: Project, watch: MonitorDefinition, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tarmac.test.alerts"):
        loop = start(p, watch, promote="direct", params={"only": "region"})  # a weak model
    assert loop is not None
    assert (loop.state, loop.version) == ("failed", 2)
    assert "did not pass its gates" in (loop.reason or "")
    assert champion(p) == 1
    steps = retrain_steps(p)
    assert [a for a, _ in steps] == ["retrain.started", "retrain.trained",
                                     "retrain.gates_failed"]
    failing = {f["gate"] for f in steps[-1][1]["failing"]}
    assert "roc_auc >= 0.7" in failing
    # the failure alerted through the monitor's channel, and the delivery is recorded
    sent = alert_history(p, "risk")
    assert [(d.check, d.state, d.channel, d.outcome) for d in sent] == \
        [("retrain", "firing", "log", "delivered")]
    payloads = [json.loads(r.getMessage().removeprefix("alert ")) for r in caplog.records
                if r.name == "tarmac.test.alerts"]
    assert payloads[0]["check"] == "retrain" and payloads[0]["severity"] == "critical"
    assert "did not pass its gates" in payloads[0]["summary"]
    # and nothing can promote it by the back door
    with pytest.raises(PromotionRefused, match="did not pass|failed"):
        p.models.promote("risk", 2)


def test_a_training_that_raises_fails_the_loop_and_alerts(p: Project,
                                                          watch: MonitorDefinition) -> None:
    loop = start(p, watch, promote="direct", params={"C": -1.0})  # LogisticRegression refuses
    assert loop is not None
    assert loop.state == "failed" and loop.version is None
    assert (loop.reason or "").startswith("training failed:")
    assert champion(p) == 1
    assert p.models.names()["risk"] == (1, 1)  # no version registered
    assert [a for a, _ in retrain_steps(p)] == ["retrain.started", "retrain.failed"]
    assert [(d.check, d.state) for d in alert_history(p, "risk")] == [("retrain", "firing")]
    # the loop's ledger run ended failed with the reason
    run = p.ledger.runs(job="retrain:risk", limit=1).items[0]
    assert run.status == "failed" and "training failed" in (run.error or "")


def test_a_loop_that_promotes_after_a_failed_one_resolves_the_alert(
        p: Project, watch: MonitorDefinition) -> None:
    assert start(p, watch, promote="direct", params={"C": -1.0}).state == "failed"  # type: ignore[union-attr]
    later = start(p, watch, at=T + timedelta(days=2), promote="direct")
    assert later is not None and later.state == "promoted"
    assert [d.state for d in alert_history(p, "risk")] == ["resolved", "firing"]


# -- one loop at a time, cooldown --------------------------------------------------------------


def test_one_open_loop_per_model_and_the_cooldown(p: Project,
                                                  watch: MonitorDefinition) -> None:
    first = start(p, watch, promote="approval")
    assert first is not None and first.state == "awaiting_approval"
    # a second trigger while it waits starts nothing (even after the cooldown)
    assert start(p, watch, at=T + timedelta(days=3), promote="approval") is None
    assert "is still awaiting approval" in (why_not(p, "risk", retrain(), now=T) or "")
    reject(p, "risk", reason="not now")
    # closed, but the cooldown (1d) since it started holds
    assert start(p, watch, at=T + 2 * HOUR, promote="direct") is None
    assert "cooldown is 1d" in (why_not(p, "risk", retrain(), now=T + 2 * HOUR) or "")
    assert why_not(p, "risk", retrain(cooldown="1h"), now=T + 2 * HOUR) is None
    after = start(p, watch, at=T + timedelta(days=1, hours=1), promote="direct")
    assert after is not None and after.state == "promoted"
    assert [lp.state for lp in loops(p, "risk")] == ["promoted", "rejected"]


def test_the_one_open_loop_check_holds_inside_the_catalog_transaction(
        p_any: Project, watch: MonitorDefinition, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two schedulers that both passed the quick check: the second one's insert is refused
    under the catalog's write lock, so the model still has one open loop."""
    import tarmac.monitoring.loop as loop_module

    first = start(p_any, watch, promote="approval")
    assert first is not None and first.state == "awaiting_approval"
    monkeypatch.setattr(loop_module, "why_not", lambda *a, **k: None)
    assert start(p_any, watch, at=T + timedelta(days=3), promote="direct") is None
    assert [(lp.id, lp.state) for lp in loops(p_any, "risk")] == \
        [(first.id, "awaiting_approval")]
    assert p_any.models.names()["risk"] == (2, 2)  # nothing was trained for it
    assert champion(p_any) == 1


def test_a_loop_left_training_by_a_dead_process_is_failed_and_blocks_nothing(
        p: Project, watch: MonitorDefinition) -> None:
    from tarmac.catalog.monitors import add_loop

    stale = RetrainLoop("0" * 8 + "-dead-loop", "risk", "risk", "r" * 36, {}, retrain().spec(),
                        "training", 1, None, None, None, 0, 0)
    with pytest.raises(RuntimeError), p.ledger.run("retrain:risk", params={"loop": stale.id}):
        p.ledger.commit("retrain.started", "model:risk", {"loop": stale.id},
                        change=lambda conn: add_loop(conn, stale))
        raise RuntimeError("killed")
    assert why_not(p, "risk", retrain(), now=T) is None
    assert loops(p, "risk")[0].state == "failed"
    assert "ended before it finished" in (loops(p, "risk")[0].reason or "")


# -- approval ----------------------------------------------------------------------------------


def test_approval_waits_then_approve_promotes(p: Project, watch: MonitorDefinition) -> None:
    loop = start(p, watch, promote="approval")
    assert loop is not None and (loop.state, loop.version) == ("awaiting_approval", 2)
    assert champion(p) == 1
    assert advance_loops(p, [watch], now=T + timedelta(days=5)) == []  # waiting is waiting
    with pytest.raises(UsageError, match="is of v2, not v7"):
        approve(p, "risk", 7, reason="typo")
    with pytest.raises(UsageError, match="needs a reason"):
        approve(p, "risk", 2, reason=" ")
    done = approve(p, "risk", 2, reason="checked the slices")
    assert done.state == "promoted" and champion(p) == 2
    steps = retrain_steps(p)
    assert [a for a, _ in steps] == ["retrain.started", "retrain.trained",
                                     "retrain.awaiting_approval", "retrain.approved",
                                     "retrain.promoted"]
    assert steps[3][1]["reason"] == "checked the slices"
    with pytest.raises(UsageError, match="no retraining loop of 'risk' is awaiting approval"):
        approve(p, "risk", reason="again")


def test_reject_leaves_the_champion(p: Project, watch: MonitorDefinition) -> None:
    assert start(p, watch, promote="approval") is not None
    done = reject(p, "risk", 2, reason="trained on the outage week")
    assert (done.state, done.reason) == ("rejected", "rejected: trained on the outage week")
    assert champion(p) == 1
    assert retrain_steps(p)[-1][0] == "retrain.rejected"
    with pytest.raises(UsageError, match="nothing to reject"):
        reject(p, "risk", reason="again")


def test_a_champion_changed_by_hand_supersedes_the_waiting_loop(
        p: Project, watch: MonitorDefinition) -> None:
    assert start(p, watch, promote="approval") is not None
    v3 = p.models.train("risk").version
    p.models.promote("risk", v3, force=True, reason="hotfix")
    with pytest.raises(PromotionRefused, match="champion changed from v1 to v3"):
        approve(p, "risk", 2, reason="late")
    assert loops(p, "risk")[0].state == "superseded"
    assert champion(p) == v3


# -- canary ------------------------------------------------------------------------------------


def test_canary_runs_for_its_time_then_promotes_when_it_passes(
        p: Project, watch: MonitorDefinition) -> None:
    loop = start(p, watch, promote="canary", canary_percent=10, canary_for="1h")
    assert loop is not None and loop.state == "canary" and loop.version == 2
    deployed = dcat.get_deployment(p.catalog, "risk")
    assert (deployed.canary_version, deployed.canary_percent) == (2, 10.0)
    assert champion(p) == 1
    asked: list[str] = []

    def verdict(lp: RetrainLoop) -> str:
        asked.append(lp.id)
        return "passed"

    # before canary_for has passed, nothing is judged
    assert advance_loops(p, [watch], now=T + 30 * timedelta(minutes=1),
                         canary_verdict=verdict) == []
    assert asked == []
    changed = advance_loops(p, [watch], now=T + 2 * HOUR, canary_verdict=verdict)
    assert asked == [loop.id]
    assert [(lp.id, lp.state) for lp in changed] == [(loop.id, "promoted")]
    assert champion(p) == 2
    assert dcat.get_deployment(p.catalog, "risk").canary_version is None
    assert [a for a, _ in retrain_steps(p)] == ["retrain.started", "retrain.trained",
                                                "retrain.canary_started", "retrain.promoted"]
    assert p.ledger.audit(action="deploy.promote_canary", limit=1).items


def test_a_failing_canary_is_aborted_and_the_champion_stays(
        p: Project, watch: MonitorDefinition) -> None:
    loop = start(p, watch, promote="canary", canary_for="1h")
    assert loop is not None and loop.state == "canary"
    assert advance_loops(p, [watch], now=T + 2 * HOUR,
                         canary_verdict=lambda lp: "not enough data") == []
    assert loops(p, "risk")[0].state == "canary"
    changed = advance_loops(p, [watch], now=T + 3 * HOUR, canary_verdict=lambda lp: "failed")
    assert [lp.state for lp in changed] == ["failed"]
    assert champion(p) == 1
    assert dcat.get_deployment(p.catalog, "risk").canary_version is None
    assert [(d.check, d.state) for d in alert_history(p, "risk")] == [("retrain", "firing")]
    assert p.ledger.audit(action="deploy.abort", limit=1).items


def test_a_passing_canary_whose_gates_went_stale_is_not_promoted(
        p: Project, watch: MonitorDefinition) -> None:
    """The gates declared for the model changed while the canary ran: its gate results no
    longer count, so the gated promotion refuses, the loop fails and the canary is aborted."""
    loop = start(p, watch, promote="canary", canary_for="1h")
    assert loop is not None and loop.state == "canary"
    redefine(p, definitions(gates='[metric("roc_auc") >= 0.6]'))
    changed = advance_loops(p, [watch], now=T + 2 * HOUR, canary_verdict=lambda lp: "passed")
    assert [lp.state for lp in changed] == ["failed"]
    assert "was refused" in (changed[0].reason or "")
    assert "gates declared for it changed" in (changed[0].reason or "")
    assert champion(p) == 1
    assert dcat.get_deployment(p.catalog, "risk").canary_version is None


def test_a_version_promoted_by_hand_closes_its_loop_as_promoted(
        p: Project, watch: MonitorDefinition) -> None:
    """Someone promoted the waiting version with `tarmac promote` (or a crash came between the
    promotion and the loop's record): the next tick records the loop as promoted."""
    assert start(p, watch, promote="approval") is not None
    p.models.promote("risk", 2)
    changed = advance_loops(p, [watch], now=T + HOUR)
    assert [(lp.state, lp.version) for lp in changed] == [("promoted", 2)]
    assert retrain_steps(p)[-1][1]["via"] == "recovered"


def test_canary_then_approval(p: Project, watch: MonitorDefinition) -> None:
    loop = start(p, watch, promote="canary", canary_for="1h", then="wait_for_approval")
    assert loop is not None and loop.state == "canary"
    changed = advance_loops(p, [watch], now=T + 2 * HOUR, canary_verdict=lambda lp: "passed")
    assert [lp.state for lp in changed] == ["awaiting_approval"]
    assert dcat.get_deployment(p.catalog, "risk").canary_version == 2  # still serving
    assert approve(p, "risk", reason="canary looked fine").state == "promoted"
    assert champion(p) == 2
    assert dcat.get_deployment(p.catalog, "risk").canary_version is None


def test_reject_during_a_canary_aborts_it(p: Project, watch: MonitorDefinition) -> None:
    assert start(p, watch, promote="canary") is not None
    assert reject(p, "risk", reason="wrong week").state == "rejected"
    assert dcat.get_deployment(p.catalog, "risk").canary_version is None
    assert champion(p) == 1


def test_an_endpoint_with_a_canary_of_its_own_keeps_it_until_approved(
        p: Project, watch: MonitorDefinition) -> None:
    human = p.models.train("risk").version  # v2, a person's experiment on the endpoint
    p.serving.deploy("risk", canary=human, percent=5)
    loop = start(p, watch, promote="canary")
    assert loop is not None and loop.state == "awaiting_approval" and loop.version == 3
    assert "already has canary v2" in (loop.reason or "")
    assert dcat.get_deployment(p.catalog, "risk").canary_version == 2  # untouched
    p.serving.deploy("risk", abort=True)
    started = approve(p, "risk", 3, reason="their experiment is over")
    assert started.state == "canary"
    assert dcat.get_deployment(p.catalog, "risk").canary_version == 3


# -- the default canary verdict -----------------------------------------------------------------


def predictions(n: int, *, version: int, errors: int = 0, role: str = "canary",
                at: datetime = T + HOUR) -> pa.Table:
    rows = {name: [None] * n for name in SCHEMA.names}
    rows.update(id=[f"p{i}" for i in range(n)], request_id=[f"r{i}" for i in range(n)],
                time=[at] * n, endpoint=["risk"] * n, model=["risk"] * n, version=[version] * n,
                role=[role] * n, shadow=[False] * n, score=[0.5] * n, latency_ms=[2.0] * n,
                error=["boom"] * errors + [None] * (n - errors))
    return pa.Table.from_pydict(rows, schema=SCHEMA)


def test_default_canary_verdict_reads_the_prediction_log(p: Project,
                                                         watch: MonitorDefinition) -> None:
    loop = start(p, watch, promote="canary", canary_for="1h")
    assert loop is not None and loop.state == "canary"
    assert canary_check(p, loop).verdict == "not enough data"  # no log yet
    p.lake.write("predictions", predictions(5, version=2))
    p.lake.write("predictions", predictions(300, version=1, role="champion"), mode="append")
    check = canary_check(p, loop)
    assert (check.verdict, check.predictions) == ("not enough data", 5)
    p.lake.write("predictions", predictions(40, version=2, errors=2), mode="append")
    check = canary_check(p, loop)
    assert (check.verdict, check.predictions, check.errors) == ("failed", 45, 2)
    assert "2 of 45 canary predictions failed" in check.reason
    assert canary_check(p, loop, max_error_rate=0.05).verdict == "passed"
    # advance_loops uses it when no verdict is given: the canary failed, it is aborted
    changed = advance_loops(p, [watch], now=T + 2 * HOUR)
    assert [lp.state for lp in changed] == ["failed"]
    assert champion(p) == 1


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_lists_loops_and_approves_and_rejects(p: Project,
                                                  watch: MonitorDefinition) -> None:
    runner = CliRunner()
    root = ["--project", str(p.root)]
    assert start(p, watch, promote="approval") is not None
    out = runner.invoke(app, [*root, "monitor", "loops", "risk"])
    assert out.exit_code == 0, out.output
    assert "awaiting_approval" in out.output and "v2" in out.output
    out = runner.invoke(app, [*root, "approve", "risk", "2"])
    assert out.exit_code == 2 and "--reason" in out.output
    out = runner.invoke(app, [*root, "approve", "risk", "2", "--reason", "looks right"])
    assert out.exit_code == 0, out.output
    assert "promoted" in out.output and "v2" in out.output
    assert champion(p) == 2
    out = runner.invoke(app, [*root, "reject", "risk", "--reason", "x"])
    assert out.exit_code == 2 and "nothing to reject" in out.output
    out = runner.invoke(app, [*root, "monitor", "loops", "--json"])
    assert out.exit_code == 0
    listed = json.loads(out.output)
    assert [(r["model"], r["state"], r["version"]) for r in listed] == [("risk", "promoted", 2)]
