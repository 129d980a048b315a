"""``tarmac monitor report``: one self-contained HTML page per monitor, read from the
``monitor_results`` rows of several windows (drift with real sketches, quality, performance
with a window whose labels are incomplete, SLOs), the evaluated windows and the alerts sent;
checked as text and opened in headless Chromium (no console error, no request leaving the
file, the charts drawn)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from tarmac.catalog.monitors import claim_window, finish_run, put_monitor
from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.monitoring import THRESHOLDS, Alerter, CheckResult, DriftReport, drift, log
from tarmac.monitoring.report import monitor_report
from tarmac.monitoring.results import ResultRow, read_results, to_table, write_results
from tarmac.project import Project

CHROMIUM = "/usr/bin/chromium"
EVIL = "<script>alert(1)</script>"
FIRST_END = datetime(2026, 11, 25, tzinfo=UTC)
DAY = timedelta(days=1)


def reference_table(rng: np.random.Generator, n: int = 4000) -> pa.Table:
    return pa.table({"amount": rng.gamma(2.0, 50.0, n), "tenure": rng.normal(24, 6, n),
                     "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
                     EVIL: rng.normal(0, 1, n)})


def window_table(rng: np.random.Generator, shift: float, n: int = 2000) -> pa.Table:
    """A day of traffic: ``amount`` and ``plan`` drift more each day, ``tenure`` does not."""
    plans = np.array(["basic", "plus", "pro", "enterprise"])
    share = np.array([0.6 - 0.25 * shift, 0.3, 0.1 + 0.15 * shift, 0.1 * shift])
    return pa.table({"amount": rng.gamma(2.0, 50.0 * (1 + shift), n),
                     "tenure": rng.normal(24, 6, n),
                     "plan": rng.choice(plans, n, p=share / share.sum()),
                     EVIL: rng.normal(0, 1, n)})


def drift_rows(report: DriftReport) -> list[ResultRow]:
    """A drift report as the monitor stores it: the statistic as the value, the effect cut of
    ``min_effect`` as the threshold, the two sketches in ``detail``."""
    rows = []
    for c in report:
        cut = THRESHOLDS[c.effect][("small", "medium", "large").index(report.min_effect)] \
            if c.effect else None
        detail = {"reference": c.reference.to_dict(), "current": c.current.to_dict()} \
            if c.reference is not None and c.current is not None else None
        rows.append(ResultRow("drift", c.test or "drift", c.verdict, column=c.column,
                              value=c.statistic, threshold=cut, effect_size=c.effect_size,
                              effect_class=c.effect_class, p_value=c.p_adjusted,
                              n_reference=c.reference_count, n_current=c.current_count,
                              reason=c.reason, detail=detail))
    return rows


def evaluate(p: Project, monitor: str, day: int, reference: pa.Table,
             rng: np.random.Generator, *, days: int) -> None:
    """Write one window's rows the way an evaluation does."""
    shift = day / max(days - 1, 1)
    rows = drift_rows(drift(reference, window_table(rng, shift)))
    null_rate = 0.01 + 0.03 * day
    rows += [
        ResultRow("quality", "null_rate", "failed" if null_rate > 0.1 else "passed",
                  column="tenure", value=null_rate, threshold=0.1,
                  reason=f"{null_rate:.0%} of tenure is null"),
        ResultRow("quality", "freshness", "passed", value=600.0 + day, threshold=7200.0,
                  reason="the newest prediction is 10 minutes old"),
    ]
    last = day == days - 1
    auc = 0.84 - 0.01 * day
    rows += [
        ResultRow("performance", "roc_auc", "labels incomplete" if last else "passed",
                  slice="(all)", value=0.52 if last else auc, threshold=0.79,
                  n_current=2000,
                  reason="only 18% of the window's predictions have labels yet" if last
                  else "within 0.05 of the champion's holdout roc_auc 0.84"),
        ResultRow("performance", "roc_auc", "decayed" if day >= 3 and not last else
                  ("labels incomplete" if last else "passed"), slice="region=South",
                  value=0.80 - 0.03 * day, threshold=0.72, reason="per-slice roc_auc"),
    ]
    p99 = 35.0 + 6.0 * day
    rows += [ResultRow("slo", "p99_ms", "breached" if p99 > 50 else "ok", value=p99,
                       threshold=50.0, reason=f"p99 latency {p99:.0f} ms"),
             ResultRow("slo", "error_rate", "ok", value=0.001, threshold=0.01)]
    end = FIRST_END + day * DAY
    write_results(p, to_table(rows, run_id=f"run-{day}", monitor=monitor, model="churn",
                              version=3, window_start=end - DAY, window_end=end,
                              evaluated_at=end + timedelta(minutes=5)))


@pytest.fixture
def monitored(project: Project) -> Project:
    """Six daily windows of the ``churn`` monitor, its runs in the catalog, and an alert."""
    rng = np.random.default_rng(7)
    reference = reference_table(rng)
    days = 6
    for day in range(days):
        evaluate(project, "churn", day, reference, rng, days=days)
    spec = {"name": "churn", "model": "churn"}
    project.ledger.commit("monitor.declared", "monitor:churn", change=lambda conn: put_monitor(
        conn, "churn", "churn", spec, "h", 3600, 86400))
    end = FIRST_END + (days - 1) * DAY
    us = int(end.timestamp() * 1_000_000)
    run = claim_window(project.catalog, "churn", us - 86_400_000_000, us)
    assert run is not None
    project.ledger.commit("monitor.evaluated", "monitor:churn", change=lambda conn: finish_run(
        conn, run.run_id, status="succeeded", verdict="failing", checks=10, failing=4))
    Alerter(project, [log()]).observe([CheckResult(
        "churn", "drift", "drifted", column="amount", value=0.31, threshold=0.01,
        effect="large", window="2026-11-29/2026-11-30", reason="PSI 0.31")])
    return project


def test_the_report_says_what_fails_per_feature_and_over_time(monitored: Project) -> None:
    page = monitor_report(monitored, "churn")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # the header: monitor, model and version, the latest window, the run's verdict
    assert "Monitor churn" in page and "<b>churn v3</b>" in page
    assert "2026-11-29 → 2026-11-30" in page
    assert 'class="badge verdict fail">failing</span>' in page
    assert page.count('<rect class="window') == 6  # one square per window
    # what fails now: the drifted features, the breached latency, the null rate
    failing = page.split("Failing in the latest window", 1)[1].split("Drift per feature")[0]
    for text in ("amount", "plan", "PSI 0.", "Jensen-Shannon 0.", "p99_ms", "65",
                 "null_rate · tenure", "breached"):
        assert text in failing, text
    assert "<td>tenure</td>" not in failing and "<td>amount</td>" in failing
    # drift cards: every feature with both distributions and an effect-size chart
    rows = read_results(monitored, "churn", check="drift")
    latest = rows.filter(pc.equal(rows.column("window_end"), pc.max(rows.column("window_end"))))
    amount = latest.filter(pc.equal(latest.column("column"), "amount")).to_pylist()[0]
    assert amount["verdict"] == "drifted" and amount["effect_class"] == "large"
    psi = f"{amount['effect_size']:.4f}".rstrip("0")
    assert f"PSI {psi} (large) against threshold 0.01" in page
    assert page.count('class="card drift"') == 4
    assert "new: enterprise" in page  # a category the reference never saw, in the bars
    # performance: the incomplete window is marked, not drawn as a drop
    assert "labels incomplete" in page and 'class="point undecided"' in page
    assert "only 18% of the window" in page
    # SLO and alert history
    assert "p99 latency 65 ms" in page
    alerts = page.split('<h2 class="section">Alerts</h2>', 1)[1]
    assert "firing" in alerts and "delivered" in alerts and "log" in alerts


def test_user_strings_are_escaped(monitored: Project) -> None:
    page = monitored.monitoring.report("churn")  # the SDK's door to the same page
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()


def test_windows_limits_what_is_shown(monitored: Project) -> None:
    page = monitor_report(monitored, "churn", windows=2)
    assert page.count('<rect class="window') == 2
    assert "2026-11-28 → 2026-11-29" in page and "2026-11-26 → 2026-11-27" not in page
    with pytest.raises(UsageError, match="windows must be a whole number >= 1"):
        monitor_report(monitored, "churn", windows=0)


def test_unknown_and_unevaluated_monitors_are_clear_errors(monitored: Project) -> None:
    with pytest.raises(UsageError, match="no monitor named 'chrun'.*did you mean 'churn'"):
        monitor_report(monitored, "chrun")
    monitored.ledger.commit("monitor.declared", "monitor:fraud", change=lambda conn: put_monitor(
        conn, "fraud", "fraud", {}, "h", 3600, 86400))
    with pytest.raises(UsageError, match="monitor 'fraud' has no evaluated windows yet") as exc:
        monitor_report(monitored, "fraud")
    assert "tarmac monitor run fraud" in str(exc.value.hint)


def test_no_monitor_at_all(project: Project) -> None:
    with pytest.raises(UsageError, match="no monitor has been evaluated yet"):
        monitor_report(project, "churn")


def test_one_window_with_missing_and_nan_figures(project: Project) -> None:
    rows = [ResultRow("drift", "ks", "not enough data", column="amount",
                      reason="12 values in the current window; 100 needed",
                      detail={"reference": {"kind": "bogus"}}),
            ResultRow("performance", "roc_auc", "not enough data", slice="(all)",
                      reason="one class only"),
            ResultRow("slo", "p99_ms", "ok", value=12.0, threshold=50.0),
            ResultRow("quality", "null_rate", "passed", column="plan", value=0.0,
                      threshold=0.05)]
    table = to_table(rows, run_id="r1", monitor="solo", model=None, version=None,
                     window_start=FIRST_END - DAY, window_end=FIRST_END,
                     evaluated_at=FIRST_END)
    nan = pa.array([float("nan"), None, 12.0, float("nan")], pa.float64())
    table = table.set_column(table.schema.get_field_index("value"), "value", nan)
    write_results(project, table)
    page = monitor_report(project, "solo")
    assert "Monitor solo" in page and "not decided" in page
    assert "NaN" not in page and ">nan<" not in page  # shown as a dash
    assert "No distributions stored with this row." in page
    assert page.count('<rect class="window') == 1
    assert "No alert has been sent for this monitor." in page


def test_a_wide_model_folds_its_quiet_features(project: Project) -> None:
    """Failing features first and open; past a dozen, the quiet ones are folded."""
    rows = [ResultRow("drift", "ks", "drifted" if i in (3, 17) else "not drifted",
                      column=f"f{i:02d}", value=0.1, threshold=0.01,
                      effect_size=0.3 if i in (3, 17) else i / 1000, effect_class="small")
            for i in range(20)]
    for day in range(2):
        end = FIRST_END + day * DAY
        write_results(project, to_table(rows, run_id=f"w{day}", monitor="wide", model="m",
                                         version=1, window_start=end - DAY, window_end=end,
                                         evaluated_at=end))
    page = monitor_report(project, "wide")
    shown, folded = page.split('<details class="more">')
    assert "8 more features, none failing" in folded
    # the two drifted first, then the largest effects; the smallest eight folded
    assert shown.index(">f03 ") < shown.index(">f17 ") < shown.index(">f19 ") \
        < shown.index(">f10 ")
    assert all(f">f{i:02d} " in folded and f">f{i:02d} " not in shown for i in range(3))
    assert ">f08 " in folded and ">f09 " in shown and ">f19 " not in folded


def test_cli_writes_the_page_and_prints_its_path(monitored: Project, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "reports" / "churn.html"
    args = ["--project", str(monitored.root), "monitor", "report"]
    result = runner.invoke(app, [*args, "churn", "-o", str(out), "--windows", "3"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output.replace("\n", "")
    page = out.read_text(encoding="utf-8")
    assert page.count('<rect class="window') == 3
    assert not list(out.parent.glob(".*partial"))
    bad = runner.invoke(app, [*args, "chrun", "-o", str(tmp_path / "x.html")])
    assert bad.exit_code != 0 and "did you mean 'churn'" in bad.output
    assert not (tmp_path / "x.html").exists()


# -- in a real browser ----------------------------------------------------------------------


def _require_browser() -> Any:
    """Playwright's sync API with Debian's Chromium: skip on a laptop without them, fail in
    CI (which installs both: .ci/run and the dev extras)."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        problem = f"playwright is not installed ({exc}); pip install -e '.[dev]'"
    if problem is None and not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        problem = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if problem is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{problem}; CI must open the report in a browser")
        pytest.skip(problem)
    return sync_playwright


def test_the_page_opens_offline_in_chromium(monitored: Project, tmp_path: Path) -> None:
    sync_playwright = _require_browser()
    path = tmp_path / "churn.html"
    path.write_text(monitor_report(monitored, "churn"), encoding="utf-8")
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file://") else route.abort())
            page.goto(path.as_uri(), wait_until="load")
            assert page.title() == "Monitor churn"
            assert page.locator("h1").inner_text().startswith("Monitor churn")
            assert page.locator("svg").count() >= 15
            assert page.locator(".card.drift svg rect").count() > 20  # the bars
            assert page.locator("svg polyline.threshold").count() >= 8
            assert page.locator("circle.point.undecided").count() >= 2  # incomplete labels
            assert page.locator("table.alerts tbody tr").count() == 1
            # the escaped column name is text on the page, and no script ran
            assert page.locator(".card.drift h2", has_text=EVIL).count() == 1
            assert page.evaluate("document.scripts.length") == 0
            # every chart has a size a person can see
            boxes = page.evaluate("[...document.querySelectorAll('svg.chart')]"
                                  ".map(s => s.getBoundingClientRect().width)")
            assert boxes and min(boxes) > 300
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests and all(u.startswith("file://") for u in requests), requests
