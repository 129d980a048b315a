"""Monitors end to end on a real project: the ``risk`` model of tests/models as champion, its
served traffic in the ``predictions`` table, late labels in ``live_labels``; each window is
evaluated by ``run_monitor`` (or ``tarmac monitor run``) as the scheduler would."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from models.conftest import build, definitions
from monitoring.monitor_data import TS, traffic
from tarmac.catalog import monitors as moncat
from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.monitoring.alerts import alert_history
from tarmac.monitoring.monitor import declared_monitors, run_monitor, window_due
from tarmac.monitoring.results import read_results
from tarmac.project import Project

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)

MONITOR = '''
from tarmac.monitoring.declare import drift, log, monitor, performance, slo
risk_monitor = monitor("risk", window="1d", every="1h", quality=None,
    performance=performance(label("live_labels", "outcome", timestamp="observed_at"),
                            metrics=["roc_auc"], delay="6h", max_drop=0.05),
    slo=slo(p99_ms=50, error_rate=0.01), alerts=[log()], cooldown="1d")
'''


def declare(p: Project, text: str = MONITOR) -> None:
    (p.root / "definitions.py").write_text(definitions() + text)


@pytest.fixture
def mon(tmp_path: Path) -> Iterator[Project]:
    p = build(tmp_path / "proj")
    version = p.models.train("risk").version
    p.models.promote("risk", version, force=True, reason="the monitor tests' champion")
    declare(p)
    yield p
    p.close()


def rewrite_features(p: Project, change: Callable[[int, dict[str, Any]], dict[str, Any]]
                     ) -> None:
    """Rewrite each logged prediction's features JSON (what a broken client would send)."""
    rows = p.lake.read("predictions")
    texts = [json.dumps(change(i, json.loads(f)))
             for i, f in enumerate(rows.column("features").to_pylist())]
    p.lake.write("predictions", rows.set_column(
        rows.schema.get_field_index("features"), "features", pa.array(texts)),
        mode="overwrite")


def by(ev: object, check: str, column: str | None = None, metric: str | None = None) -> list:
    return [r for r in ev.rows if r.check == check  # type: ignore[attr-defined]
            and (column is None or r.column == column) and (metric is None or r.metric == metric)]


def test_windows_end_on_multiples_of_every(mon: Project) -> None:
    d = declared_monitors(mon)["risk"]
    start, end = window_due(d, datetime(2026, 6, 1, 12, 59, 59, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 5, 31, 12, tzinfo=UTC), AT)


def test_undrifted_traffic_passes_every_check(mon: Project) -> None:
    labels = traffic(mon, AT - timedelta(hours=20), 2000, seed=3)
    mon.lake.write("live_labels", labels)
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    assert ev.predictions == 2000
    assert ev.verdict == "passed", [(r.check, r.column, r.verdict, r.reason) for r in ev.failing]
    assert {r.column for r in by(ev, "drift")} == {"a", "b", "region", "score"}
    assert {r.verdict for r in by(ev, "drift")} == {"not drifted"}
    perf = by(ev, "performance", metric="roc_auc")[0]
    assert perf.verdict == "ok" and perf.value is not None and perf.value > 0.7
    assert perf.n_current == 2000  # every prediction labelled, joined by prediction id
    assert {r.metric: r.verdict for r in by(ev, "slo")} == {"p99_ms": "ok", "error_rate": "ok"}
    stored = read_results(mon, "risk")
    assert stored.num_rows == len(ev.rows)
    assert set(stored.column("run_id").to_pylist()) == {ev.run_id}
    run = moncat.monitor_runs(mon.catalog, "risk")[0]
    assert (run.status, run.verdict, run.checks, run.failing) == \
        ("succeeded", "passed", len(ev.rows), 0)


def test_drift_and_decay_are_reported_and_alerted(mon: Project) -> None:
    labels = traffic(mon, AT - timedelta(hours=20), 2000, seed=4, shift=1.0, flip=True)
    mon.lake.write("live_labels", labels)
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None and ev.verdict == "failed"
    drifted = {r.column for r in by(ev, "drift") if r.verdict == "drifted"}
    assert drifted == {"a", "score"}  # the shifted input and the output; b and region held
    a = by(ev, "drift", "a")[0]
    assert a.effect_class in ("medium", "large") and a.p_value is not None and a.p_value < 0.05
    detail = json.loads(read_results(mon, "risk", check="drift").filter(
        pa.compute.equal(pa.compute.field("column"), "a")).column("detail")[0].as_py())
    assert detail["reference"]["kind"] == "numeric" and detail["current"]["count"] == 2000
    perf = by(ev, "performance", metric="roc_auc")[0]
    assert perf.verdict == "decayed" and perf.value < perf.threshold
    assert "holdout roc_auc" in perf.reason
    history = alert_history(mon, "risk")
    fired = {(h.check, h.column) for h in history if h.state == "firing"}
    assert ("drift", "a") in fired and ("performance:roc_auc", "") in fired
    assert all(h.outcome == "delivered" for h in history)


def test_late_labels_fill_in_an_earlier_window(mon: Project) -> None:
    labels = traffic(mon, AT - timedelta(hours=3), 1500, seed=5)
    first = run_monitor(mon, "risk", at=AT)
    assert first is not None
    perf = by(first, "performance")[0]
    assert perf.verdict == "not enough data" and "no labels yet" in perf.reason
    # labels arrive; the next hour's evaluation joins them to the earlier window too
    mon.lake.write("live_labels", labels)
    later = run_monitor(mon, "risk", at=AT + timedelta(hours=7))
    assert later is not None
    rows = read_results(mon, "risk", check="performance").to_pylist()
    by_run = {r["run_id"]: r for r in rows if r["slice"] == "(all)"}
    # and per slice: the model's gates judge roc_auc by region, so the monitor does too
    assert {r["slice"] for r in rows if r["run_id"] == first.run_id} == {
        "(all)", "region=east", "region=north", "region=south"}
    assert set(by_run) == {first.run_id, later.run_id}  # replaced, not added
    assert by_run[first.run_id]["verdict"] == "ok"
    assert by_run[first.run_id]["n_current"] == 1500


def test_window_whose_labels_may_still_arrive_is_incomplete_not_decayed(mon: Project) -> None:
    labels = traffic(mon, AT - timedelta(hours=2), 1500, seed=6, flip=True)
    mon.lake.write("live_labels", labels.slice(0, 300))  # a fifth has arrived so far
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    perf = by(ev, "performance")[0]
    assert perf.verdict == "incomplete"
    assert "labels may still arrive" in perf.reason
    assert all(r.check != "performance" for r in ev.failing)


def test_a_window_is_evaluated_once_and_force_replaces_its_rows(mon: Project) -> None:
    traffic(mon, AT - timedelta(hours=2), 500, seed=7)
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    assert run_monitor(mon, "risk", at=AT + timedelta(minutes=30)) is None  # same window
    again = run_monitor(mon, "risk", at=AT, force=True)
    assert again is not None and again.run_id == ev.run_id and again.attempts == 2
    assert read_results(mon, "risk").num_rows == len(ev.rows)  # not doubled


def test_a_dead_evaluators_window_is_taken_over(mon: Project) -> None:
    traffic(mon, AT - timedelta(hours=2), 500, seed=8)
    start, end = window_due(declared_monitors(mon)["risk"], AT)
    us = int(end.timestamp() * 1_000_000)
    claim = moncat.claim_window(mon.catalog, "risk", us - 86_400_000_000, us)
    assert claim is not None
    # the claim now belongs to a process that no longer exists
    with mon.catalog.engine.begin() as conn:
        from sqlalchemy import update

        from tarmac.catalog import _tables as t
        conn.execute(update(t.monitor_runs).values(owner=claim.owner.rsplit(":", 1)[0]
                                                   + ":999999999"))
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None and ev.run_id == claim.run_id and ev.attempts == 2


def test_no_prediction_log_yet_is_no_data_not_an_alarm(mon: Project) -> None:
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    assert ev.verdict == "no data" and not ev.failing
    assert "no prediction log yet" in ev.rows[0].reason


def test_an_empty_window_is_no_data(mon: Project) -> None:
    traffic(mon, AT - timedelta(days=3), 200, seed=9)  # an older window only
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None and ev.verdict == "no data" and ev.predictions == 0
    assert {r.verdict for r in by(ev, "drift")} == {"not enough data"}


def test_a_reference_with_zero_rows_is_refused_and_recorded(mon: Project) -> None:
    mon.lake.write("empty_ref", pa.table({"a": pa.array([], pa.float64()),
                                          "b": pa.array([], pa.float64())}))
    declare(mon, MONITOR.replace('window="1d"', 'reference="empty_ref", window="1d"'))
    traffic(mon, AT - timedelta(hours=2), 300, seed=10)
    with pytest.raises(UsageError, match="reference 'empty_ref' has no rows"):
        run_monitor(mon, "risk", at=AT)
    run = moncat.monitor_runs(mon.catalog, "risk")[0]
    assert run.status == "failed" and "has no rows" in (run.error or "")


def test_a_feature_missing_from_the_window_is_not_enough_data(mon: Project) -> None:
    traffic(mon, AT - timedelta(hours=2), 800, seed=11)
    rewrite_features(mon, lambda _i, f: {k: v for k, v in f.items() if k != "b"})
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    b = by(ev, "drift", "b")[0]
    assert b.verdict == "not enough data"
    assert by(ev, "drift", "a")[0].verdict == "not drifted"


def test_a_column_whose_type_changed_is_not_silently_null(mon: Project) -> None:
    traffic(mon, AT - timedelta(hours=2), 800, seed=12)
    rewrite_features(mon, lambda i, f: {**f, "a": f"v{i % 7}"})
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    a = by(ev, "drift", "a")[0]
    assert a.verdict == "not enough data"
    assert "type" in a.reason or "string" in a.reason


def test_slo_breach_is_failing(mon: Project) -> None:
    traffic(mon, AT - timedelta(hours=2), 500, seed=13, error_every=20, latency_ms=80)
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    slos = {r.metric: r for r in by(ev, "slo")}
    assert slos["p99_ms"].verdict == "breached" and slos["p99_ms"].value > 50
    assert slos["error_rate"].verdict == "breached"
    assert slos["error_rate"].value == pytest.approx(25 / 500)


def test_labels_with_duplicate_ids_and_unknown_predictions_are_counted(mon: Project) -> None:
    labels = traffic(mon, AT - timedelta(hours=20), 1000, seed=14)
    unknown = pa.table({"prediction_id": [f"nope{i}" for i in range(5)],
                        "customer_id": pa.array([1] * 5, pa.int64()),
                        "observed_at": pa.array([AT] * 5, TS),
                        "outcome": pa.array([1] * 5, pa.int64())})
    mon.lake.write("live_labels", pa.concat_tables([labels, labels.slice(0, 50), unknown]))
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None
    perf = by(ev, "performance")[0]
    assert perf.verdict == "ok" and perf.n_current == 1000  # duplicates once, unknown not
    counts = perf.detail["labels"]
    assert (counts["labels"], counts["joined"], counts["duplicates"], counts["unknown"]) == \
        (1055, 1000, 50, 5)


def test_a_webhook_that_fails_never_blocks_the_monitor(mon: Project) -> None:
    declare(mon, MONITOR.replace("alerts=[log()]", 'alerts=[webhook("http://127.0.0.1:9/hook", '
                                 "retries=2, backoff=0.01, timeout=0.5), log()]").replace(
        "import drift,", "import drift, webhook,"))
    traffic(mon, AT - timedelta(hours=2), 800, seed=17, shift=1.5)
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None and ev.verdict == "failed"
    run = moncat.monitor_runs(mon.catalog, "risk")[0]
    assert run.status == "succeeded"  # recorded, alerts or not
    hook = [d for d in alert_history(mon, "risk") if d.channel.startswith("webhook")]
    assert hook and all(d.outcome == "failed" and d.attempts == 3 for d in hook)
    assert all(d.outcome == "delivered" for d in alert_history(mon, "risk")
               if d.channel == "log")


def test_unknown_monitor_is_named_with_a_suggestion(mon: Project) -> None:
    with pytest.raises(UsageError, match="no monitor named 'rsik'.*risk"):
        run_monitor(mon, "rsik")


def test_cli_run_exits_1_when_a_check_fails_and_show_lists_it(mon: Project) -> None:
    traffic(mon, AT - timedelta(hours=3), 1500, seed=15, shift=1.5)
    runner = CliRunner()
    at = AT.strftime("%Y-%m-%dT%H:%MZ")
    result = runner.invoke(app, ["-p", str(mon.root), "monitor", "run", "--at", at, "--json"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    assert out[0]["verdict"] == "failed"
    assert {f["column"] for f in out[0]["failing"] if f["check"] == "drift"} >= {"a"}
    again = runner.invoke(app, ["-p", str(mon.root), "monitor", "run", "--at", at])
    assert again.exit_code == 1 and "evaluated already" in again.output
    shown = runner.invoke(app, ["-p", str(mon.root), "monitor", "show", "risk", "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["latest"]["verdict"] == "failed"
    assert any(c["column"] == "a" and c["verdict"] == "drifted" for c in body["checks"])
    listed = runner.invoke(app, ["-p", str(mon.root), "monitor", "list", "--json"])
    assert json.loads(listed.output)[0]["verdict"] == "failed"


def test_bad_declarations_say_what_is_wrong() -> None:
    from tarmac.models import label
    from tarmac.monitoring.declare import monitor, performance, retrain, slo

    with pytest.raises(UsageError, match="window: expected a duration"):
        monitor("m", window="soon")
    with pytest.raises(UsageError, match="on_decay= needs performance"):
        monitor("m", on_decay=retrain())
    with pytest.raises(UsageError, match="slo\\(\\) needs"):
        slo()
    with pytest.raises(UsageError, match="canary_percent"):
        retrain(canary_percent=100)
    with pytest.raises(UsageError, match="unknown metric|roc_acu"):
        performance(label("l", "y"), metrics=["roc_acu"])
    with pytest.raises(UsageError, match="monitor name"):
        monitor("1 bad")


def test_quality_alarms_on_stale_and_empty_features(mon: Project) -> None:
    declare(mon, MONITOR.replace("quality=None", 'quality=quality(freshness="2h")').replace(
        "import drift,", "import drift, quality,"))
    traffic(mon, AT - timedelta(hours=5), 800, seed=16, status="stale")
    rewrite_features(mon, lambda _i, f: {**f, "b": None})
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None and ev.verdict == "failed"
    failing = {(r.metric, r.column) for r in ev.failing if r.check == "quality"}
    assert ("stale_features", None) in failing  # every prediction scored on a stale 'a'
    assert ("null_rate", "b") in failing  # scored on an empty feature: it must alarm
    assert ("freshness", None) in failing  # the newest prediction is 4h old, over 2h
    stale = next(r for r in ev.failing if r.metric == "stale_features" and r.column is None)
    assert stale.value == pytest.approx(1.0)
    alerted = {h.check for h in alert_history(mon, "risk")}
    assert "quality:stale_features" in alerted and "quality:null_rate" in alerted


def test_decay_starts_the_retraining_loop_and_a_passing_version_is_promoted(
        mon: Project) -> None:
    declare(mon, MONITOR.replace('cooldown="1d")', 'cooldown="1d",\n'
                                 '    on_decay=retrain(promote="direct"))').replace(
        "import drift,", "import drift, retrain,"))
    labels = traffic(mon, AT - timedelta(hours=20), 2000, seed=18, flip=True)
    mon.lake.write("live_labels", labels)
    before = mon.models.aliases("risk")["risk"]["champion"]
    ev = run_monitor(mon, "risk", at=AT)
    assert ev is not None and ev.loop is not None
    assert ev.loop.state == "promoted" and ev.loop.trigger_run == ev.run_id
    assert ev.loop.trigger["because"] == "decay"
    after = mon.models.aliases("risk")["risk"]["champion"]
    assert after == ev.loop.version and after != before
    story = [r.action for r in reversed(mon.ledger.audit())  # oldest first
             if r.action.startswith(("monitor.", "retrain.", "model.promote"))]
    assert story.index("retrain.started") < story.index("retrain.promoted")
    assert story[-1] == "monitor.evaluated"
    assert mon.models.version("risk", after).tags["trigger_run"] == ev.run_id
    # the new version's lineage reaches the monitor run and the results that asked for it
    [retrain] = mon.ledger.runs(job="retrain:risk")
    inputs = {str(i) for i in retrain.inputs}
    assert f"monitor_run:{ev.run_id}" in inputs
    assert any(i.startswith("monitor_results@") for i in inputs), inputs
    # the next window with the same decay starts nothing: the policy's cooldown holds
    again = run_monitor(mon, "risk", at=AT + timedelta(hours=1))
    assert again is not None and again.loop is None


def test_apply_registers_monitors_and_says_what_changed(mon: Project) -> None:
    runner = CliRunner()
    planned = runner.invoke(app, ["-p", str(mon.root), "apply", "--dry-run", "--json"])
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.output)["monitors"] == [
        {"kind": "monitor", "name": "risk", "model": "risk", "action": "add"}]
    assert moncat.monitor_records(mon.catalog) == {}  # a dry run registers nothing
    done = runner.invoke(app, ["-p", str(mon.root), "apply"])
    assert done.exit_code == 0 and "+ monitor risk of risk" in done.output
    assert set(moncat.monitor_records(mon.catalog)) == {"risk"}
    assert [c.action for c in mon.monitoring.apply()] == ["unchanged"]
    declare(mon, MONITOR.replace('every="1h"', 'every="2h"'))
    assert [c.action for c in mon.monitoring.apply()] == ["change"]
    declare(mon, "")
    assert [(c.name, c.action) for c in mon.monitoring.apply()] == [("risk", "undeclared")]
    assert [r.action for r in mon.ledger.audit()].count("monitor.declared") == 2
