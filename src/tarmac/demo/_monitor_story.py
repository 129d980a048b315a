"""The demo's last chapter: the closed loop. The world changes under the served churn model,
its monitor notices, and a retrained version takes over through a canary.

1. prices rise (``shift_world``): CRM downgrades and new clicks go through the sources, the
   features are materialized again;
2. the monitor is declared in ``definitions.py`` (drift, quality, performance on late labels,
   SLOs; alerts to a local webhook receiver that checks their signatures; on decay: retrain,
   canary, promote);
3. every customer is served once over HTTP: the inputs have drifted;
4. the labels arrive late: the outcome of each served prediction (``churn_outcomes``, joined by
   prediction id) and the new cohort's labels that retraining learns from;
5. the monitor evaluates the window: drift and decay are flagged, the alerts land at the
   receiver, and the policy retrains, gates the new version against the champion and starts
   its canary on half of the customers;
6. the canary serves traffic; once ``canary_for`` has passed its checks are judged and it is
   promoted (gated again), and ``tarmac audit log`` tells the story.

The demo compresses time: its monitor runs every 2 seconds with a 2-second label delay where
a real one would run hourly with a delay of weeks; nothing else is simulated (real requests,
real prediction log, real clocks).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

Step = Callable[[str], None]

#: how the demo's monitor is declared (appended to definitions.py); seconds stand in for days
MONITOR = """

# added by the demo's monitoring step: the served churn model watched window by window. The demo
# compresses time: a real monitor would run every hour with a label delay of weeks.
from tarmac.monitoring.declare import (  # noqa: E402
    drift, monitor, performance, quality, retrain, slo, webhook)

churn_monitor = monitor(
    "churn", reference="training", window="1h", every="2s",
    drift=drift(features="all", predictions=True),
    quality=quality(nulls=True, ranges=True, new_categories=True),
    performance=performance(label("churn_outcomes", "churned", timestamp="observed_at"),
                            metrics=["roc_auc"], join="id", delay="2s", max_drop=0.03),
    slo=slo(p99_ms=1000, error_rate=0.01),
    alerts=[webhook("${KESTREL_ALERT_URL:-http://127.0.0.1:9/alerts}",
                    secret="${KESTREL_ALERT_SECRET:-unset}", retries=1, timeout=2)],
    on_decay=retrain(promote="canary", canary_percent=50, canary_for="2s"),
)
"""
EVERY = timedelta(seconds=2)
DELAY = timedelta(seconds=2)
CANARY_FOR = timedelta(seconds=2)
#: customers served after the shift (all of them at the small size)
SERVED = 1200
CANARY_REQUESTS = 240
CLIENTS = 8
OUTCOMES = "churn_outcomes"
#: audit actions that tell the loop's story
STORY = ("monitor.", "alert.", "retrain.", "deploy.canary", "deploy.promote_canary",
         "model.promote")


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    import os

    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _serve(p: Any, customers: list[int]) -> dict[str, int]:
    """One POST /v1/predict/churn per customer, CLIENTS at a time; versions answering."""
    from tarmac.serving.server import running

    answered: dict[str, int] = {}
    with running(p) as url, httpx.Client(timeout=30) as client:
        def ask(cid: int) -> str:
            got = client.post(f"{url}/v1/predict/churn", json={"entities": [
                {"customer_id": cid}]})
            got.raise_for_status()
            return str(got.json()["predictions"][0]["model"])

        with ThreadPoolExecutor(CLIENTS) as pool:
            for model in pool.map(ask, customers):
                answered[model] = answered.get(model, 0) + 1
    return answered  # leaving `running` stopped the server and flushed its log


def _ceil(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    n = -(-(at - epoch) // step)
    return epoch + step * n


def monitoring_story(p: Any, root: Path, step: Step, *, size: str, seed: int,
                     as_of: Any) -> dict[str, Any]:
    """Run the chapter (see the module's docstring); returns the summary's facts."""
    from tarmac.demo._drift_story import issue_labels, late_labels, shift_world
    from tarmac.demo._receiver import WebhookReceiver
    from tarmac.monitoring.loop import advance_loops
    from tarmac.monitoring.monitor import declared_monitors, run_monitor

    facts: list[dict[str, Any]] = []
    out: dict[str, Any] = {"steps": facts}

    def note(what: str, detail: str) -> None:
        facts.append({"step": what, "detail": detail})

    started = datetime.now(UTC)
    champion = p.models.aliases("churn")["churn"]["champion"]
    step("the world changes: premium and family prices rise 25% (CRM downgrades and new "
         "clicks through the sources, features materialized again)")
    shift = shift_world(p, size=size, seed=seed, as_of=as_of)
    note("prices rose", shift.summary())
    with open(root / "definitions.py", "a", encoding="utf-8") as f:
        f.write(MONITOR)
    definition = declared_monitors(p)["churn"]

    ids = [r["customer_id"] for r in p.sql(
        "SELECT DISTINCT customer_id FROM customers ORDER BY customer_id").to_pylist()]
    rng = random.Random(seed)
    served = rng.sample(ids, min(len(ids), SERVED))
    step(f"serving churn v{champion} to {len(served):,} customers after the change")
    answered = _serve(p, served)
    note(f"served v{champion}", f"{sum(answered.values()):,} predictions answered over HTTP, "
                                "each in the prediction log")

    step("labels arrive late: each served prediction's outcome (churn_outcomes, by prediction "
         "id) and the new cohort's labels (what retraining learns from)")
    outcomes = late_labels(p, shift, path=root / "data" / "outcomes.csv")
    p.monitoring.ingest_labels(outcomes, label_column="churned", id_column="prediction_id",
                               table=OUTCOMES)
    issued = issue_labels(p, shift)
    note("late labels", f"{outcomes.num_rows:,} outcomes of served predictions in "
                        f"{OUTCOMES}; {issued['rows']:,} labels of the new cohort in "
                        f"labels (churn {shift.churn_before:.1%} -> {shift.churn_after:.1%})")

    newest = p.sql("SELECT max(time) AS t FROM predictions")["t"][0].as_py()
    window_end = _ceil(newest + timedelta(microseconds=1), EVERY)
    wait = (window_end + DELAY - datetime.now(UTC)).total_seconds()
    if wait > 0:  # the window must have ended and its label delay passed
        time.sleep(wait)
    secret = secrets.token_hex(16)
    with WebhookReceiver(secret=secret) as hooks, _env(
            {"KESTREL_ALERT_URL": hooks.url, "KESTREL_ALERT_SECRET": secret}):
        step("the monitor evaluates the window: drift, quality, performance on the late "
             "labels, SLOs; alerts to a local webhook; on decay, the retraining policy")
        evaluation = run_monitor(p, definition, window_end=window_end)
        if evaluation is None:
            raise RuntimeError("the demo's monitor window was evaluated already")
        drifted = [r.column for r in evaluation.rows
                   if r.check == "drift" and r.verdict == "drifted"]
        perf = next((r for r in evaluation.rows if r.check == "performance"
                     and r.slice == "(all)"), None)
        note("monitor churn", f"window ending {window_end:%H:%M:%S}: {evaluation.verdict}; "
                              f"{evaluation.predictions:,} predictions; drifted: "
                              f"{', '.join(map(str, drifted)) or 'nothing'}; "
                              + (f"roc_auc {perf.value:.3f} vs {perf.threshold:.3f} needed "
                                 f"({perf.verdict})" if perf is not None and perf.value
                                 is not None and perf.threshold is not None
                                 else "performance not judged"))
        delivered = hooks.wait(1, timeout=10) if evaluation.failing else []
        accepted = [r for r in hooks.received if r.accepted]
        note("alerts", f"{len(accepted)} signed notices received by the local webhook "
                       f"(signatures verified), e.g. "
                       + (f"'{delivered[0].payload.get('summary', '')[:100]}'"
                          if delivered and delivered[0].payload else "none"))
        loop = evaluation.loop
        out.update(verdict=evaluation.verdict, drifted=drifted,
                   decayed=perf is not None and perf.verdict == "decayed",
                   alerts=len(accepted), run_id=evaluation.run_id)
        if loop is None:
            note("retraining", "not started")
            out.update(ok=False, check="the monitor did not start the retraining loop")
            return out
        note("retraining", f"v{loop.version} trained on the newest labels: {loop.state}"
                           + (f" ({loop.reason})" if loop.reason else ""))
        if loop.state != "canary":
            out.update(ok=False, check=f"the retrained version did not reach its canary "
                                       f"({loop.state}: {loop.reason})")
            return out

        step(f"canary v{loop.version} on {definition.on_decay.canary_percent:.0f}% of the "  # type: ignore[union-attr]
             f"customers: {CANARY_REQUESTS} requests, then its checks")
        answered = _serve(p, rng.sample(ids, min(len(ids), CANARY_REQUESTS)))
        note("canary traffic", ", ".join(f"{n} by {m}" for m, n in sorted(answered.items())))
        since = datetime.fromtimestamp((loop.canary_since or 0) / 1e6, UTC)
        wait = (since + CANARY_FOR - datetime.now(UTC)).total_seconds()
        if wait > 0:
            time.sleep(wait)
        moved = advance_loops(p, [definition])
        final = next((m for m in moved if m.id == loop.id), None)
        state = final.state if final else loop.state
        now_champion = p.models.aliases("churn")["churn"]["champion"]
        note("promotion", f"canary v{loop.version}: {state}; champion v{champion} -> "
                          f"v{now_champion}")
    step("why did the canary decide what it decided? tarmac trace ID")
    [traced] = p.sql(f"SELECT id FROM predictions WHERE role = 'canary' AND version = "
                     f"{int(loop.version or 0)} AND score IS NOT NULL ORDER BY time DESC "
                     "LIMIT 1")["id"].to_pylist() or [None]
    if traced is not None:
        trace = p.trace(traced)
        out["trace"] = {"id": traced, "summary": trace.summary(),
                        "exact": bool(trace.explanation and trace.explanation.exact)}
        note("trace", " ".join(trace.summary().split())[:400])
    story = [r for r in reversed(p.ledger.audit(since_us=int(started.timestamp() * 1e6)))
             if r.action.startswith(STORY)]
    out["audit"] = [{"action": r.action, "target": r.target} for r in story]
    (root / "churn-monitor.html").write_text(p.monitoring.report("churn"), encoding="utf-8")
    ok = (evaluation.verdict == "failed" and bool(drifted) and out["decayed"]
          and len(accepted) > 0 and state == "promoted" and now_champion == loop.version)
    out.update(ok=ok, champion_before=champion, champion=now_champion, version=loop.version,
               seconds=round((datetime.now(UTC) - started).total_seconds(), 1),
               check=(f"drift in {', '.join(map(str, drifted))} and decay flagged, "
                      f"{len(accepted)} alert(s) delivered and verified, v{loop.version} "
                      f"retrained, gated, canaried and promoted: champion v{champion} -> "
                      f"v{now_champion}; {len(story)} audit records tell it "
                      "(tarmac audit log), the report is churn-monitor.html"))
    return out
