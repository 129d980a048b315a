"""`tarmac demo` and the tour a newcomer takes afterwards. The demo runs as a user runs it, a
subprocess; the commands that look at what it built run in this process (``tarmac_here``: the
same app, output and exit codes), since the README tour (test_readme_tour.py) already runs every
command as a process of its own."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

TARMAC = shutil.which("tarmac", path=str(Path(sys.executable).parent)) or "tarmac"


from e2e.conftest import tarmac, tarmac_here  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope="module")
def demo_dir(demo_run: tuple[Path, str]) -> Path:
    return demo_run[0]


def test_demo_builds_the_lake(demo_dir: Path) -> None:
    listed = json.loads(tarmac_here("tables", "--json", cwd=demo_dir).stdout)
    tables = {t["name"]: t for t in listed}
    assert set(tables) == {"customers", "orders", "products", "clicks", "tickets", "labels",
                           "customer_activity", "quarantine", "churn_training",
                           "predictions", "live_clicks", "churn_outcomes", "monitor_results"}
    # customers: loaded, the CRM's changes, then the downgrades after the price rise
    assert tables["customers"]["version"] == 2 and tables["customers"]["rows"] > 1000
    assert all(t["owner"] == "data-platform" for t in tables.values())
    assert (demo_dir / "survey.html").read_text().startswith("<!DOCTYPE html>")
    survey = json.loads((demo_dir / "survey.json").read_text())
    assert {s["name"] for s in survey["sources"]} >= {"crm", "orders", "clicks", "tickets"}


def test_messy_records_are_quarantined_with_reasons(demo_dir: Path) -> None:
    rows = json.loads(tarmac_here("quarantine", "orders", "--json", "-n", "1000",
                                  cwd=demo_dir).stdout)
    reasons = {r["reason"] for r in rows}
    assert "'amount' is not a valid float" in reasons
    assert "'customer_id' is required" in reasons
    assert all(r["source"] == "orders" and r["run_id"] for r in rows)
    clicks = json.loads(tarmac_here("quarantine", "clicks", "--json", cwd=demo_dir).stdout)
    assert any("not a JSON object" in r["reason"] for r in clicks)
    sources = {s["source"]: s for s in json.loads(tarmac_here("sources", "--json",
                                                              cwd=demo_dir).stdout)}
    # the CRM: loaded, its changes, the downgrades after the price rise (monitoring chapter)
    assert sources["crm"]["loads"] == 3 and sources["crm"]["cursor"].startswith("20")
    assert sources["live_clicks"]["status"] == "streams"
    assert sources["live_clicks"]["rows_loaded_total"] == 400
    status = json.loads(tarmac("stream", "status", "--json", cwd=demo_dir).stdout)
    assert [r["lag"] for r in status] == [0, 0]
    assert sum(r["committed"] for r in status) == 404  # every message, committed once
    # nothing new in the databases and files: nothing loaded again
    again = tarmac_here("ingest", "crm", "orders", "products", "clicks", "labels", "--json",
                        cwd=demo_dir)
    assert again.returncode == 0, again.stderr
    assert sum(r["rows_loaded"] for r in json.loads(again.stdout) if r["source"] != "labels") \
        == 0
    # the tickets API stopped with the demo: a clear error naming the source, exit code 1
    down = tarmac_here("ingest", "tickets", cwd=demo_dir)
    assert down.returncode == 1 and "source 'tickets'" in down.stderr


def test_tour_commands(demo_dir: Path) -> None:
    out = tarmac_here("sql", "--json", "SELECT count(*) AS n FROM customer_activity",
                      cwd=demo_dir)
    customers = json.loads(tarmac_here("sql", "--json", "SELECT count(*) AS n FROM customers",
                                       cwd=demo_dir).stdout)[0]["n"]
    assert json.loads(out.stdout) == [{"n": customers}]
    older = json.loads(tarmac_here("sql", "--json", "--as-of", "customers=0",
                                   "SELECT count(*) AS n FROM customers",
                                   cwd=demo_dir).stdout)[0]["n"]
    assert 0 < older < customers

    history = json.loads(tarmac_here("history", "customers", "--json", cwd=demo_dir).stdout)
    assert [h["operation"] for h in history] == ["MERGE", "MERGE", "INGEST"]
    assert {h["actor"] for h in history} == {"newcomer"}

    lineage = tarmac_here("lineage", "customer_activity", cwd=demo_dir).stdout
    for name in ("demo.customer_activity", "customers@1", "orders@0", "clicks@", "tickets@0",
                 "ingest.crm"):
        assert name in lineage

    verify = tarmac_here("audit", "verify", cwd=demo_dir)
    assert verify.returncode == 0 and "chain intact" in verify.stdout
    audit = json.loads(tarmac_here("audit", "log", "--since", "1h", "--json", "-n", "500",
                                   cwd=demo_dir).stdout)
    assert {"lake.ingest", "ingest.load", "lake.merge", "run.succeeded"} <= {
        a["action"] for a in audit}


def test_rerun_resets_and_data_only(tmp_path: Path) -> None:
    result = tarmac("demo", "d", "--data-only", "--seed", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "d" / "data"
    assert (data / "crm.db").exists() and (data / "labels.csv").exists()
    assert not (tmp_path / "d" / "lake").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    refused = tarmac("demo", "other", cwd=tmp_path)
    assert refused.returncode == 2 and "not touching it" in refused.stderr
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    bad = tarmac("demo", "d", "--size", "huge", cwd=tmp_path)
    assert bad.returncode == 2 and "small, medium, large" in bad.stderr


def test_the_demo_features_train_and_serve_the_same_values(demo_dir: Path) -> None:
    listed = json.loads(tarmac_here("features", "list", "--json", cwd=demo_dir).stdout)
    assert {(r["kind"], r["name"]) for r in listed} >= {
        ("view", "customer_profile"), ("view", "customer_orders"), ("view", "customer_clicks"),
        ("view", "customer_tickets"), ("on_demand", "order_value"), ("service", "churn"),
        ("view", "live_activity")}
    # live_activity is a stream view: `tarmac stream run` keeps it online, nothing materializes it
    assert all(r["materialized"] for r in listed
               if r["kind"] == "view" and r["name"] != "live_activity")
    train = json.loads(tarmac_here("sql", "SELECT count(*) AS n, count(plan) AS plans, "
                                   "sum(churned) AS churned FROM churn_training", "--json",
                                   cwd=demo_dir).stdout)[0]
    labels = json.loads(tarmac_here("sql", "SELECT count(*) AS n FROM labels", "--json",
                                    cwd=demo_dir).stdout)[0]
    assert train["n"] == labels["n"] and train["plans"] == train["n"]
    assert int(train["churned"]) > 0
    lineage = tarmac_here("lineage", "churn_training", cwd=demo_dir).stdout
    assert "features.training_set:churn_training" in lineage and "labels" in lineage
    customer = json.loads(tarmac_here("sql", "SELECT min(customer_id) AS id FROM customers",
                                      "--json", cwd=demo_dir).stdout)[0]["id"]
    got = json.loads(tarmac_here("features", "get", "churn", "-e", f"customer_id={customer}",
                                 "--json", cwd=demo_dir).stdout)["results"][0]
    assert got["status"]["plan"] == "present" and got["values"]["plan"]
    # the demo carries its own clock: its activity ends 3 days ago, so it is fresh online
    assert got["status"]["sessions_30d"] == "present"
    assert got["values"]["sessions_30d"] is not None
    check = tarmac_here("features", "check", "churn", cwd=demo_dir)
    assert check.returncode == 0 and "consistent" in check.stdout
    report = json.loads(tarmac_here("features", "check", "churn", "--json", cwd=demo_dir).stdout)
    coverage = {c["feature"]: c for c in report["coverage"]}
    assert coverage["plan"]["present"] == 1.0 and coverage["sessions_30d"]["present"] > 0.5


def test_a_demo_whose_data_is_older_than_the_ttl_fails_the_check(tmp_path: Path) -> None:
    """The first round's demo (data ending 2025-06-30): every activity feature is stale online
    while null offline too; the check used to say 'consistent'. Now it fails on coverage."""
    bad = tarmac("demo", "old", "--as-of", "2025-06-31", cwd=tmp_path)
    assert bad.returncode == 2 and "--as-of '2025-06-31': expected a day as YYYY-MM-DD" in (
        bad.stderr)
    made = tarmac("demo", "old", "--seed", "7", "--as-of", "2025-06-30", "--no-loop",
                  cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "activity up to 2025-06-30" in made.stdout and "NOT CONSISTENT" in made.stdout
    check = tarmac_here("features", "check", "churn", "--json", cwd=tmp_path / "old")
    report = json.loads(check.stdout)
    assert check.returncode == 1 and not report["ok"]
    coverage = {c["feature"]: c for c in report["coverage"]}
    assert coverage["sessions_30d"]["present"] == 0 and coverage["sessions_30d"]["drop"] > 0.5
    assert any(p.startswith("sessions_30d: 0% present online") for p in report["problems"])
    materialized = json.loads(tarmac_here("features", "materialize", "customer_clicks",
                                          "--full", "--json", cwd=tmp_path / "old").stdout)[0]
    assert materialized["stale"] == materialized["entities"] > 0


def test_the_demo_model_story_is_visible_everywhere(demo_dir: Path) -> None:
    shown = json.loads(tarmac_here("models", "show", "churn", "--json", cwd=demo_dir).stdout)
    # the monitoring chapter's retrained v4 ends as champion (see test_the_loop_closes)
    assert shown["aliases"] == {"champion": 4}
    # newest first: the retrained v4, the serving story's challenger v3, the worse v2, v1
    by = {v["version"]: v for v in shown["versions"]}
    first, worse = by[1], by[2]
    assert first["validation"]["status"] == "passed", first["validation"]
    assert worse["validation"]["status"] == "failed"
    assert first["metrics"]["roc_auc"] > worse["metrics"]["roc_auc"]
    assert [(h["action"], h["from"], h["to"], h["forced"]) for h in shown["history"]] == [
        ("promote", 1, 4, False), ("rollback", 2, 1, False), ("promote", 1, 2, True),
        ("promote", None, 1, False)]
    report = (demo_dir / "validation-v2.md").read_text()
    assert report.startswith("### ❌ churn v2 failed") and "no regression in roc_auc" in report
    runs = json.loads(tarmac_here("runs", "--model", "churn", "--json", cwd=demo_dir).stdout)
    assert [r["status"] for r in runs] == ["succeeded"] * 4
    assert set(runs[-1]["inputs"]) == {"labels", "customers", "orders", "clicks", "tickets"}
    lineage = tarmac_here("lineage", "model:churn@1", cwd=demo_dir)
    assert lineage.returncode == 0 and "training_set:churn@1" in lineage.stdout
    assert "ingest.crm" in lineage.stdout
    audit = json.loads(tarmac_here("audit", "log", "--json", "-n", "200", cwd=demo_dir).stdout)
    promoted = [r for r in audit if r["action"] == "model.promote"]
    assert any("forced" in r["details"] for r in promoted)
    # validating the champion again against itself passes; CI gets exit 0
    again = tarmac_here("validate", "churn", "1", "--format", "markdown", cwd=demo_dir)
    assert again.returncode == 0 and "churn v1 passed" in again.stdout


def test_the_demo_serves_the_champion_a_canary_and_a_shadow(demo_run: tuple[Path, str]) -> None:
    """The serving story: every answered prediction logged exactly once, the canary near 10%
    of the customers and sticky, the shadow scoring every request answered while deployed,
    unknown customers answered with status missing, and the endpoint left to its champion."""
    demo_dir, out = demo_run
    text = " ".join(out.split())  # the summary, unwrapped
    assert "answered == logged: reconciled" in text, out[-3000:]
    found = re.search(r"(\d[\d,]*) predictions answered 200", text)
    assert found, out[-3000:]
    answered = int(found[1].replace(",", ""))

    audit = json.loads(tarmac_here("audit", "log", "--json", "-n", "1000", cwd=demo_dir).stdout)
    # the serving chapter ends when its canary is aborted; the monitoring chapter serves more
    ended = max(a["time"] for a in audit if a["action"] == "deploy.abort")

    def sql(query: str) -> list[dict[str, Any]]:
        query = query.replace("FROM predictions", "FROM (SELECT * FROM predictions WHERE "
                              f"time <= TIMESTAMPTZ '{ended}')")
        done = tarmac_here("sql", "--json", query, cwd=demo_dir)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    served = sql("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM predictions "
                 "WHERE role <> 'shadow'")[0]
    assert served == {"n": answered, "ids": answered}  # each answered prediction exactly once
    assert answered == 200 + 1 + 250  # 200 requests, one of raw values, 250 with the canary
    # while the canary ran (the requests the shadow also scored): ~10% of customers, sticky
    during = ("FROM predictions WHERE role <> 'shadow' AND request_id IN "
              "(SELECT request_id FROM predictions WHERE role = 'shadow')")
    per = sql("SELECT request->>'customer_id' AS customer, count(*) AS asked, "
              f"count(DISTINCT version) AS versions, min(role) AS role {during} GROUP BY 1")
    assert len(per) == 200
    assert all(c["versions"] == 1 for c in per)
    assert sum(c["asked"] == 2 for c in per) == 50
    share = sum(c["role"] == "canary" for c in per) / len(per)
    assert 0.04 <= share <= 0.18, share
    roles = {(r["role"], r["version"]): r["n"] for r in sql(
        "SELECT role, version, count(*) AS n FROM predictions GROUP BY ALL")}
    assert set(roles) == {("champion", 1), ("canary", 3), ("shadow", 2)}
    requests_during = sql(f"SELECT count(DISTINCT request_id) AS n {during}")[0]["n"]
    assert roles[("shadow", 2)] == requests_during == 250
    assert f"{share:.1%}) got canary v3" in text and "50 of 50 customers asked again" in text
    # before the canary: no shadow; unknown ids answered 200 (they are logged) with no score
    unknown = sql("SELECT count(*) AS n, count(score) AS scored FROM predictions "
                  "WHERE role = 'champion' AND feature_status NOT LIKE '%present%' AND "
                  "feature_status NOT LIKE '%stale%' AND feature_status NOT LIKE '%request%' "
                  "AND CAST(request->>'customer_id' AS BIGINT) NOT IN "
                  "(SELECT customer_id FROM customers)")[0]
    assert unknown == {"n": 5, "scored": 0}
    assert "5 of 5 unknown ids answered with status missing" in text
    assert "the same as from its features fetched online" in text
    # the demo leaves the endpoint to its champion (the retrained v4 after the monitoring
    # chapter's canary): the tour deploys its own canary
    status = json.loads(tarmac_here("deploy", "status", "churn", "--json", cwd=demo_dir).stdout)
    endpoint = status[0] if isinstance(status, list) else status
    assert (endpoint["champion"], endpoint["canary"], endpoint["shadow"]) == (4, None, None)
    total = json.loads(tarmac_here("sql", "--json", "SELECT count(*) AS n FROM predictions",
                                   cwd=demo_dir).stdout)[0]["n"]
    assert endpoint["pending"] == 0 and endpoint["logged"] == total
    assert {"deploy.canary", "deploy.abort", "deploy.stop_shadow"} <= {a["action"] for a in audit}


def test_the_served_features_are_fresh_not_stale(demo_run: tuple[Path, str]) -> None:
    """The demo carries its own clock (its data ends three days before today) and its windowed
    views keep a row for every customer up to the newest day of data, so every feature served
    to a known customer is present: none stale (older than its ttl, served as null) and none
    missing. The only null on purpose: the average order value of a customer with no orders
    (an on-demand feature: present, since it was computed from inputs that were there)."""
    demo_dir = demo_run[0]
    done = tarmac_here("sql", "--json", "SELECT features, feature_status FROM predictions "
                       "WHERE role <> 'shadow' AND TRY_CAST(request->>'customer_id' AS BIGINT) "
                       "IN (SELECT customer_id FROM customers)", cwd=demo_dir)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) >= 400
    statuses = [json.loads(r["feature_status"]) for r in rows]
    values = [json.loads(r["features"]) for r in rows]
    assert all(len(s) == 11 for s in statuses)
    assert sum(v == "stale" for s in statuses for v in s.values()) == 0
    for status, value in zip(statuses, values, strict=True):
        others = {f: v for f, v in status.items() if f != "avg_order_value"}
        assert set(others.values()) == {"present"}, status
        assert status["avg_order_value"] == "present"
        assert value["avg_order_value"] is not None or value["orders_90d"] == 0
    assert sum(json.loads(r["features"])["avg_order_value"] is not None
               for r in rows) > 0.7 * len(rows)


def test_the_loop_closes(demo_run: tuple[Path, str]) -> None:
    """The monitoring chapter: prices rise through the sources, the served inputs drift, late
    labels show the champion decaying, the monitor alerts a local webhook (signatures checked)
    and its policy retrains, gates, canaries and promotes; the audit log tells it in order."""
    demo_dir, out = demo_run
    text = " ".join(out.split())
    assert "the loop: closed:" in text, out[-3000:]
    assert "decay flagged" in text and "champion v1 -> v4" in text
    shown = json.loads(tarmac_here("monitor", "show", "churn", "--json", cwd=demo_dir).stdout)
    checks = shown["checks"]
    assert shown["latest"]["verdict"] == "failed"
    drifted = {c["column"] for c in checks if c["check"] == "drift" and c["verdict"] == "drifted"}
    assert {"plan", "cancel_page_views_30d"} <= drifted  # what the price rise moved
    assert not {"region", "orders_90d"} & drifted  # what it did not
    [perf] = [c for c in checks if c["check"] == "performance" and c["slice"] == "(all)"]
    assert perf["verdict"] == "decayed" and perf["value"] < perf["threshold"]
    [loop] = shown["loops"]
    assert (loop["state"], loop["version"], loop["champion"]) == ("promoted", 4, 1)
    assert loop["trigger_run"] == shown["latest"]["run_id"]
    alerts = [a for a in shown["alerts"] if a["channel"].startswith("webhook")]
    assert alerts and all(a["outcome"] == "delivered" for a in alerts)
    audit = json.loads(tarmac_here("audit", "log", "--json", "-n", "1000", cwd=demo_dir).stdout)
    story = [a["action"] for a in reversed(audit) if a["action"].startswith(
        ("retrain.", "deploy.promote_canary", "alert.delivered"))]
    assert story.index("alert.delivered") < story.index("retrain.started") \
        < story.index("retrain.trained") < story.index("retrain.canary_started") \
        < story.index("deploy.promote_canary") < story.index("retrain.promoted")
    # one of the canary's decisions, traced: the explanation adds up to what it answered
    traced = re.search(r"a decision traced \(tarmac trace ([0-9a-f-]+)\)", text)
    assert traced, out[-3000:]
    shown_trace = tarmac_here("trace", traced[1], "--json", cwd=demo_dir)
    assert shown_trace.returncode == 0, shown_trace.stderr
    t = json.loads(shown_trace.stdout)
    assert (t["version"], t["role"]) == (4, "canary")
    e = t["explanation"]
    assert e["method"] == "linear" and e["exact"]
    logit = e["base"] + sum(c["contribution"] for c in e["contributions"])
    assert abs(1 / (1 + math.exp(-logit)) - t["score"]) < 1e-6
    page = (demo_dir / "churn-monitor.html").read_text()
    assert "cancel_page_views_30d" in page and "<script" not in page
    verify = tarmac_here("audit", "verify", cwd=demo_dir)
    assert verify.returncode == 0, verify.stdout
