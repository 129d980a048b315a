"""`tarmac demo` and the tour a newcomer takes afterwards. The demo runs as a user runs it, a
subprocess; the commands that look at what it built run in this process (``tarmac_here``: the
same app, output and exit codes), since the README tour (test_readme_tour.py) already runs every
command as a process of its own."""

from __future__ import annotations

import json
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
                           "predictions", "live_clicks"}
    assert tables["customers"]["version"] == 1 and tables["customers"]["rows"] > 1000
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
    assert sources["crm"]["loads"] == 2 and sources["crm"]["cursor"].startswith("20")
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
    assert [h["operation"] for h in history] == ["MERGE", "INGEST"]
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
    made = tarmac("demo", "old", "--seed", "7", "--as-of", "2025-06-30", cwd=tmp_path)
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
    assert shown["aliases"] == {"champion": 1}
    # newest first: the serving story's challenger v3, the worse v2, the champion v1
    first, worse = shown["versions"][2], shown["versions"][1]
    assert first["validation"]["status"] == "passed", first["validation"]
    assert worse["validation"]["status"] == "failed"
    assert first["metrics"]["roc_auc"] > worse["metrics"]["roc_auc"]
    assert [(h["action"], h["from"], h["to"], h["forced"]) for h in shown["history"]] == [
        ("rollback", 2, 1, False), ("promote", 1, 2, True), ("promote", None, 1, False)]
    report = (demo_dir / "validation-v2.md").read_text()
    assert report.startswith("### ❌ churn v2 failed") and "no regression in roc_auc" in report
    runs = json.loads(tarmac_here("runs", "--model", "churn", "--json", cwd=demo_dir).stdout)
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    assert set(runs[0]["inputs"]) == {"labels", "customers", "orders", "clicks", "tickets"}
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

    def sql(query: str) -> list[dict[str, Any]]:
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
    # the demo leaves the endpoint to its champion: the tour deploys its own canary
    status = json.loads(tarmac_here("deploy", "status", "churn", "--json", cwd=demo_dir).stdout)
    endpoint = status[0] if isinstance(status, list) else status
    assert (endpoint["champion"], endpoint["canary"], endpoint["shadow"]) == (1, None, None)
    assert endpoint["pending"] == 0 and endpoint["logged"] == answered + 250
    audit = json.loads(tarmac_here("audit", "log", "--json", "-n", "500", cwd=demo_dir).stdout)
    assert {"deploy.canary", "deploy.abort", "deploy.stop_shadow"} <= {a["action"] for a in audit}
