"""The story ``tarmac demo`` tells: scattered, messy data becomes governed lake tables.

Each capability Tarmac gains extends this story, so the demo always shows the whole road built
so far. Today: generate the company's scattered sources and start its tickets API; declare them
in ``tarmac.yaml`` with their contracts; survey them (``survey.html``); ingest them through the
SQL, file and HTTP connectors, with the messy records landing in quarantine with their reasons;
let the CRM change and ingest it again incrementally; build a derived table whose lineage reaches
back to its sources; define customer features in ``definitions.py`` and register them; build a
point-in-time-correct training set for the churn labels; materialize the features online, serve
them over HTTP and check online equals offline; train a churn model from the features,
validate it against its gates and promote it; train a worse variant the gates block, force it
through with an audited reason, and roll it back; serve the champion over HTTP to a few hundred
requests, put a challenger on 10% of the customers as a canary and the worse variant in shadow,
then reconcile every answer with the prediction log; and verify the audit chain.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from tarmac.errors import TarmacError, UsageError

MARKER = ".tarmac-demo"
Step = Callable[[str], None]

PROJECT_FILE = """\
# Kestrel Mobile: the Tarmac demo project (made by `tarmac demo`).
name: kestrel
lake: ./lake
catalog: sqlite:///.tarmac/catalog.db
online_store: sqlite:///.tarmac/online.db
streams: embedded
compute: local
owner: data-platform
# Where the company's data lives, and the contract each source must meet. `tarmac survey` maps
# them, `tarmac ingest` loads them; records that break a contract go to `tarmac quarantine`.
sources:
  crm:
    type: sql
    url: "sqlite:///data/crm.db"
    tables: [customers]
    primary_key: customer_id
    cursor: updated_at              # incremental: only rows changed since the last load
    lookback: 1d                    # and a day back, for rows committed late
    tags: [crm, pii]
    columns:
      customer_id: {type: int, required: true}
      name: {tags: [pii]}
      email: {tags: [pii, email], pattern: "[^@ ]+@[^@ ]+\\\\.[a-z]+"}
      phone: {tags: [pii, phone]}
      plan: {allowed: [basic, standard, premium, family]}
      signup_date: {type: timestamp, formats: ["%Y-%m-%d", "%m/%d/%Y"]}
      updated_at: timestamp
  orders:
    type: sql
    url: "sqlite:///data/orders.db"
    tables: [orders]
    primary_key: order_id
    cursor: ordered_at
    columns:
      customer_id: {type: int, required: true}
      quantity: {type: int, min: 1}
      amount: {type: float, min: 0}
      ordered_at: timestamp
      status: {allowed: [completed, cancelled, refunded, pending]}
  products:
    type: file
    path: "data/products/*.csv"     # one price list per year; the newest file wins per sku
    primary_key: sku
    columns:
      sku: string
      price: {type: float, min: 0, aliases: [unit_price]}   # renamed in the 2025 file
  clicks:
    type: file
    path: "data/clicks/*.jsonl"     # a file per day; each file is loaded once
    mode: append
    primary_key: event_id           # re-sent events are dropped as duplicates
    columns:
      customer_id: {type: int, required: true}
      event_time: timestamp
  live_clicks:                      # the same clickstream, live: `tarmac stream run`
    type: stream
    topic: clicks
    partitions: 2
    primary_key: event_id
    key: customer_id                # one customer's clicks stay in order, in one partition
    timestamp: event_time
    allowed_lateness: 1h
    columns:
      event_id: string
      customer_id: {type: int, required: true}
      event_type: string
      event_time: timestamp
  tickets:
    type: http
    url: "${KESTREL_TICKETS_URL:-http://127.0.0.1:8765/tickets}"
    paginate: cursor
    records: data
    page_size: 500
    size_param: limit
    primary_key: ticket_id
    columns:
      customer_id: int
      opened_at: timestamp
      closed_at: timestamp
      satisfaction: {type: int, min: 1, max: 5}
  labels:
    type: file
    path: "data/labels.csv"
    mode: full_refresh              # churn labels are re-issued whole, weeks late
    primary_key: customer_id
    tags: [label]
    description: "churn labels, weeks late"
    columns:
      churned: {type: int, allowed: [0, 1]}
      label_time: timestamp
      observed_until: timestamp
"""

ACTIVITY_SQL = """
WITH o AS (
    SELECT customer_id, count(*) AS orders, sum(amount) AS spend, max(ordered_at) AS last_order
    FROM orders GROUP BY customer_id),
c AS (
    SELECT customer_id, count(DISTINCT session_id) AS sessions,
           count(*) FILTER (WHERE event_type = 'cancel_page') AS cancel_page_views,
           max(event_time) AS last_seen
    FROM clicks GROUP BY customer_id),
t AS (
    SELECT customer_id, count(*) AS tickets, avg(satisfaction) AS avg_satisfaction
    FROM tickets GROUP BY customer_id)
SELECT cu.customer_id, upper(cu.region[1]) || lower(cu.region[2:]) AS region, cu.plan,
       coalesce(o.orders, 0) AS orders, coalesce(o.spend, 0) AS spend, o.last_order,
       coalesce(c.sessions, 0) AS sessions,
       coalesce(c.cancel_page_views, 0) AS cancel_page_views, c.last_seen,
       coalesce(t.tickets, 0) AS tickets, t.avg_satisfaction
FROM customers cu
LEFT JOIN o ON o.customer_id = cu.customer_id
LEFT JOIN c ON c.customer_id = cu.customer_id
LEFT JOIN t ON t.customer_id = cu.customer_id
ORDER BY cu.customer_id
"""


@dataclass
class DemoReport:
    """What the demo built, for the closing summary."""

    root: Path
    sources: list[dict[str, Any]]
    loaded: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    survey_headline: str = ""
    features: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    served: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)  # the model story, step by step
    serving: dict[str, Any] = field(default_factory=dict)  # the champion served, canary, shadow
    streams: dict[str, Any] = field(default_factory=dict)  # live clicks through the stream sink
    monitoring: dict[str, Any] = field(default_factory=dict)  # drift, decay, the closed loop
    governance: dict[str, Any] = field(default_factory=dict)  # a promotion refused by role
    runs: int = 0
    audit_records: int = 0
    chain_ok: bool = False
    data_only: bool = False
    as_of: date | None = None  # the demo's clock: the last day of its activity


def prepare(root: Path) -> None:
    """Make ``root`` ready: refuse a non-demo folder with files in it, reset an old demo."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise UsageError(f"{root} is not empty and was not made by `tarmac demo`; "
                             "not touching it", hint="choose another folder: tarmac demo DIR")
        for child in ("lake", ".tarmac", "data"):
            shutil.rmtree(root / child, ignore_errors=True)
        for name in ("tarmac.yaml", "definitions.py", ".gitignore"):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `tarmac demo`; the next run resets this folder\n")


def run_demo(root: Path, *, size: str = "small", seed: int = 0, data_only: bool = False,
             as_of: date | None = None, step: Step = lambda _msg: None,
             loop: bool = True) -> DemoReport:
    """Build the demo company's project in ``root`` and run the story so far. Its data ends on
    ``as_of`` (default: three days before today), so the features are fresh online. ``loop``
    False stops before the last chapter (prices rise, the monitor closes the loop), for tests
    of that chapter's pieces."""
    import tarmac
    from tarmac.demo import TicketsServer, generate
    from tarmac.project import scaffold

    root = root.resolve()
    prepare(root)
    sources = generate(root, size=size, seed=seed, as_of=as_of)
    step(f"generating Kestrel Mobile's scattered data ({size}, seed {seed}, activity up to "
         f"{sources.as_of})")
    report = DemoReport(root, sources.summary(), data_only=data_only, as_of=sources.as_of)
    if data_only:
        return report
    scaffold(root, name="kestrel")
    (root / "tarmac.yaml").write_text(PROJECT_FILE)

    # the tickets API listens on a free port; tarmac.yaml reads its URL from the environment
    with TicketsServer(sources.tickets_json) as api, _env("KESTREL_TICKETS_URL", api.url), \
            tarmac.open(root) as p:
        _survey(p, report, step)
        step("ingesting every source through its connector (contracts on, bad records "
             "quarantined)")
        results = p.ingest()
        results.raise_for_errors()
        for r in results:
            if r.status == "succeeded":
                report.loaded.append({"table": r.table, "source": r.source,
                                      "read": r.rows_read, "rows": r.rows_loaded,
                                      "quarantined": r.rows_quarantined,
                                      "duplicates": r.duplicates, "version": r.version})
        step("the CRM changes (plans upgraded, a new customer): ingest crm again, incrementally")
        changed = _crm_changes(root / "data" / "crm.db")
        again = p.ingest(["crm"])
        again.raise_for_errors()
        for r in again:
            report.loaded.append({"table": f"{r.table} (again)", "source": r.source,
                                  "read": r.rows_read, "rows": r.rows_loaded,
                                  "quarantined": r.rows_quarantined,
                                  "duplicates": r.duplicates, "version": r.version,
                                  "changed": changed})
        report.quarantined = p.sql(
            "SELECT source, reason, count(*) AS records FROM quarantine GROUP BY ALL "
            "ORDER BY records DESC LIMIT 12").to_pylist()
        step("building customer_activity from orders, clicks and tickets")
        with p.ledger.run("demo.customer_activity", params={"sql": " ".join(
                ACTIVITY_SQL.split())}):
            activity = p.sql(ACTIVITY_SQL)
            result = p.lake.write("customer_activity", activity, mode="overwrite",
                                  description="per-customer activity (demo)")
        report.loaded.append({"table": "customer_activity", "source": "SQL over the lake",
                              "read": None, "rows": result.rows_added, "quarantined": None,
                              "duplicates": None, "version": result.version})
        _features(p, report, step)
        worse = _models(p, report, step)
        _serving(p, report, step, worse)
        _streams(p, report, step)
        from tarmac.demo._monitor_story import monitoring_story

        if loop:
            report.monitoring = monitoring_story(p, root, step, size=size, seed=seed,
                                                 as_of=sources.as_of)
        from tarmac.demo._governance_story import governance_story

        report.governance = governance_story(p, step)
        report.runs = p.catalog.count("runs")
        report.audit_records = p.catalog.count("audit_log")
        report.chain_ok = p.ledger.verify().ok
    return report


TRAINING_ENTITIES = "SELECT customer_id, observed_until AS as_of, churned FROM labels"


def _features(p: Any, report: DemoReport, step: Step) -> None:
    """Features defined once, used offline for training and online for serving."""
    from importlib.resources import files

    step("defining customer features in definitions.py and registering them (tarmac apply)")
    text = files("tarmac.demo").joinpath("kestrel_definitions.py").read_text(encoding="utf-8")
    (report.root / "definitions.py").write_text(text, encoding="utf-8")
    plan = p.features.apply()
    step("building a point-in-time-correct training set for the churn labels")
    ts = p.features.training_set(TRAINING_ENTITIES, "churn", timestamp="as_of", label="churned")
    frame = ts.to_arrow()
    version = ts.save("churn_training", description="churn labels with features as of each "
                                                   "customer's observation date")
    present = {f: 1 - frame.column(f).null_count / max(frame.num_rows, 1) for f in ts.features}
    report.training = {"rows": frame.num_rows, "features": len(ts.features), "version": version,
                       "positives": sum(frame.column("churned").to_pylist()),
                       "coverage": present}
    step("materializing the latest feature values to the online store")
    for r in p.features.materialize():
        report.features.append({"view": r.view, "mode": r.mode, "rows": r.rows,
                                "entities": r.entities, "seconds": round(r.seconds, 2),
                                "registered": next(c.version for c in plan.changes
                                                   if c.name == r.view)})
    step("serving the features over HTTP: POST /features")
    import httpx

    from tarmac.serving.server import running

    customer = p.sql("SELECT min(customer_id) AS id FROM customers").to_pylist()[0]["id"]
    with running(p) as url:
        answer = httpx.post(f"{url}/features", json={
            "features": "churn", "entities": [{"customer_id": customer}]}, timeout=10)
    answer.raise_for_status()
    result = answer.json()["results"][0]
    status = list(result["status"].values())
    report.served["http"] = (
        f"POST /features for customer {customer}: {answer.status_code}, plan "
        f"{result['values']['plan']!r}; {status.count('present')} present, "
        f"{status.count('stale')} stale, {status.count('missing')} missing")
    step("checking online coverage and values against the training set")
    check = p.features.check("churn", sample=100)
    report.served["check"] = (f"{check.agreed:,} of {check.compared:,} values of "
                              f"{check.entities} customers equal offline and online"
                              + (f", {check.both_null:,} null on both sides" if check.both_null
                                 else "")
                              + ("" if check.ok else "; " + "; ".join(check.problems)))
    report.served["ok"] = check.ok


WORSE_VARIANT = {"only": "plan,region,tenure_days"}  # a model of the CRM fields alone


def _models(p: Any, report: DemoReport, step: Step) -> int:
    """Train, gate, promote; a worse variant is blocked, forced through, and rolled back.
    Returns the worse variant's version (the serving story shadows it)."""
    from tarmac.errors import PromotionRefused

    def note(what: str, **facts: Any) -> None:
        report.models.append({"step": what, **facts})

    step("training the churn model from the feature store (tarmac train churn)")
    first = p.models.train("churn")
    note(f"trained v{first.version}", detail=_metrics(first.metrics))
    step(f"validating churn v{first.version} against its gates (tarmac validate churn)")
    gates = p.models.validate("churn", first.version)
    note(f"validated v{first.version}: {gates.status}", detail=_gate_counts(gates))
    try:
        p.models.promote("churn", first.version)
        note(f"promoted v{first.version} to champion", detail="its gates passed")
    except PromotionRefused as exc:  # e.g. the latency gate on a heavily loaded machine
        note(f"promote v{first.version}: refused", detail=exc.message.split(": ", 1)[-1])
        p.models.promote("churn", first.version, force=True,
                         reason="demo: the story needs a champion to go on")
        note(f"forced v{first.version} to champion", detail="--force --reason, audited")
    step("training a variant on the CRM fields alone (--param only=plan,region,tenure_days)")
    worse = p.models.train("churn", params=WORSE_VARIANT)
    note(f"trained v{worse.version} (CRM fields only)", detail=_metrics(worse.metrics))
    blocked = p.models.validate("churn", worse.version)
    (report.root / f"validation-v{worse.version}.md").write_text(blocked.to_markdown() + "\n",
                                                                encoding="utf-8")
    failed = [r.name for r in blocked.results if r.status == "failed"]
    note(f"validated v{worse.version}: {blocked.status}",
         detail=f"{'; '.join(failed)} (report: validation-v{worse.version}.md)")
    try:
        p.models.promote("churn", worse.version)
        note(f"promoted v{worse.version}", detail="UNEXPECTED: the gates let it through")
    except PromotionRefused as exc:
        note(f"promote v{worse.version}: refused", detail=exc.message.split(": ", 1)[-1])
    step(f"forcing v{worse.version} through with a reason (audited), then rolling back")
    p.models.promote("churn", worse.version, force=True,
                     reason="demo: shipping the CRM-only model for a latency test")
    note(f"forced v{worse.version} to champion", detail="--force --reason, in the audit trail")
    back = p.models.rollback("churn", reason="demo: CRM-only model underperforms", force=True)
    note(f"rolled back to v{back.to_version}", detail=f"champion v{back.from_version} -> "
                                                       f"v{back.to_version}")
    champion = p.models.get("churn")
    sample = p.features.training_set(TRAINING_ENTITIES + " LIMIT 5", "churn",
                                     timestamp="as_of").to_pandas()
    scores = champion.predict_scores(sample)
    note(f"champion v{champion.version} loaded (hash verified)",
         detail="churn risk of 5 customers: " + ", ".join(f"{s:.2f}" for s in scores))
    return int(worse.version)


# The serving story's traffic. Its canary is a challenger trained from the champion's recipe with
# stronger regularisation (cheap: one more fit): a version whose gates were not the problem, so
# 10% of real customers may see its answers. The worse CRM-only variant, whose gates failed, is
# the shadow: it scores every request on live traffic, logged only, and no customer ever sees its
# answers, which is what a shadow is for. The demo ends with both removed, so the endpoint is
# served by its champion alone and the tour's own `tarmac deploy churn --canary 2` works.
CHALLENGER = {"C": 0.3}
CANARY_PERCENT = 10
# a few hundred requests, one customer each (a request costs the model's per-call overhead, ~10
# ms on a small machine, so these keep the demo's serving part to a few seconds)
REQUESTS = 200  # to the champion alone, of which UNKNOWN for ids no customer has
UNKNOWN = 5  # answered 200 with status missing and no score
CANARY_CUSTOMERS = 200  # then, with the canary and the shadow: one request per customer
AGAIN = 50  # and these customers asked a second time: the same version each time
SWITCH_TIMEOUT_S = 15.0
CLIENTS = 8  # requests in flight at once, as from an app's backend


class DemoServingError(TarmacError):
    """The demo's predict requests were not answered as the serving story needs."""


def _serving(p: Any, report: DemoReport, step: Step, worse: int) -> None:
    """The champion served over HTTP; a canary at 10% (sticky by customer) and a shadow; the
    server stopped, its prediction log queried and reconciled against what was answered."""
    import random
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tarmac.serving.server import running

    facts: list[dict[str, Any]] = []
    report.serving = {"steps": facts}

    def note(what: str, detail: str) -> None:
        facts.append({"step": what, "detail": detail})

    champion = p.models.aliases("churn")["churn"]["champion"]
    ids = [r["customer_id"] for r in p.sql(
        "SELECT DISTINCT customer_id FROM customers ORDER BY customer_id").to_pylist()]
    rng = random.Random(0)
    known = rng.sample(ids, min(len(ids), REQUESTS - UNKNOWN + CANARY_CUSTOMERS))
    first = known[:REQUESTS - UNKNOWN]
    second = known[REQUESTS - UNKNOWN:]
    unknown = [max(ids) + 1 + i for i in range(UNKNOWN)]
    answered: list[dict[str, Any]] = []  # one per prediction answered 200

    def ask(client: httpx.Client, url: str, body: dict[str, Any], phase: str,
            customer: int | None) -> dict[str, Any]:
        got = client.post(f"{url}/v1/predict/churn", json=body)
        if got.status_code != 200:
            raise DemoServingError(f"POST /v1/predict/churn for customer {customer} answered "
                                   f"{got.status_code}: {got.text[:300]}")
        out = got.json()
        for pred in out["predictions"]:
            answered.append({"id": pred["id"], "request_id": out["request_id"],
                             "phase": phase, "customer": customer,
                             "version": int(pred["model"].rsplit("@", 1)[1]),
                             "score": pred["score"],
                             "status": set(pred["features"]["status"].values())})
        return out["predictions"][0]

    def ask_each(client: httpx.Client, url: str, customers: list[int], phase: str
                 ) -> list[dict[str, Any]]:
        """One request per customer, CLIENTS at a time (as an app's backend would send
        them; the server scores concurrent requests together)."""
        with ThreadPoolExecutor(CLIENTS) as pool:
            return list(pool.map(lambda cid: ask(client, url, {"entities": [
                {"customer_id": cid}]}, phase, cid), customers))

    step(f"serving churn v{champion} over HTTP: {REQUESTS} requests to POST /v1/predict/churn "
         f"from {CLIENTS} clients")
    with running(p) as url, httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        ask_each(client, url, first + unknown, "champion")
        seconds = time.perf_counter() - started
        missing = [a for a in answered if a["customer"] in unknown]
        blank = sum(a["status"] == {"missing"} and a["score"] is None for a in missing)
        note(f"served v{champion} (champion) over HTTP",
             f"{len(answered)} requests answered 200 in {seconds:.1f} s: {len(first)} customers "
             f"scored; {blank} of {len(unknown)} unknown ids answered with status missing and "
             f"no score (never a made-up one)")
        report.serving.update(first=len(answered), unknown=len(unknown), missing=blank,
                              seconds=round(seconds, 2))
        # raw values: what the online store holds for one customer, sent as a row
        cid = first[0]
        values = p.features.online("churn", [{"customer_id": cid}]).rows[0]
        online = next(a["score"] for a in answered if a["customer"] == cid)
        raw = ask(client, url, {"rows": [values]}, "champion", None)["score"]
        note("raw values (rows) scored",
             f"customer {cid}'s {len(values)} feature values sent as a row: score {raw:.3f}"
             + (", the same as from its features fetched online" if abs(raw - online) < 1e-9
                else f", NOT the {online:.3f} of its features fetched online"))
        report.serving["rows_match"] = abs(raw - online) < 1e-9

        step(f"training a challenger (--param C={CHALLENGER['C']}) and deploying it as a "
             f"{CANARY_PERCENT}% canary, the CRM-only v{worse} as a shadow")
        challenger = p.models.train("churn", params=CHALLENGER)
        canary = int(challenger.version)
        note(f"trained v{canary} (C={CHALLENGER['C']})", _metrics(challenger.metrics))
        p.serving.deploy("churn", canary=canary, percent=CANARY_PERCENT, shadow=worse,
                         reason="demo: a challenger on 10% of customers, the CRM-only model "
                                "in shadow")
        # the server polls the catalog about once a second: wait (with a deadline) until it
        # serves the new deployment before sending the traffic to count
        want = {"champion": champion, "canary": canary, "shadow": worse}
        deployed = time.perf_counter()
        while True:
            serving = next(e["serving"] for e in client.get(f"{url}/v1/endpoints").json()[
                "endpoints"] if e["name"] == "churn")
            if serving == want:
                break
            if time.perf_counter() - deployed > SWITCH_TIMEOUT_S:
                raise DemoServingError(f"the server did not switch to canary v{canary} and "
                                       f"shadow v{worse} within {SWITCH_TIMEOUT_S:.0f} s "
                                       f"(it serves {serving})")
            time.sleep(0.05)
        note(f"deployed canary v{canary} at {CANARY_PERCENT}%, shadow v{worse}",
             f"one audited change; the running server switched in "
             f"{time.perf_counter() - deployed:.1f} s (hot reload, no restart)")
        step(f"{len(second) + AGAIN} more requests: which customers get the canary, and does "
             "it stick?")
        got = {cid: answer["model"] for cid, answer in
               zip(second, ask_each(client, url, second, "deployed"), strict=True)}
        on_canary = [c for c, m in got.items() if m == f"churn@{canary}"]
        again = (on_canary + [c for c in second if c not in on_canary])[:AGAIN]
        stuck = sum(answer["model"] == got[cid] for cid, answer in
                    zip(again, ask_each(client, url, again, "deployed"), strict=True))
        share = len(on_canary) / max(len(second), 1)
        note(f"{len(second) + len(again)} requests with the canary",
             f"{len(on_canary)} of {len(second)} customers ({share:.1%}) got canary v{canary}, "
             f"the rest champion v{champion}; {stuck} of {len(again)} customers asked again "
             f"got the same version (sticky by customer: {len(again) - stuck} moved)")
        report.serving.update(champion=champion, canary=canary, shadow=worse,
                              percent=CANARY_PERCENT, customers=len(second),
                              canary_customers=len(on_canary), share=share,
                              asked_again=len(again), sticky=stuck)
    # leaving `running` stopped the server: the shadow queue drained, the log flushed on close
    step("the prediction log: what was answered is what was logged")
    deployed_requests = {a["request_id"] for a in answered if a["phase"] == "deployed"}
    log = p.serving.predictions("churn").select(["id", "request_id", "role", "version"])
    rows = log.to_pylist()
    served = Counter(r["id"] for r in rows if r["role"] != "shadow")
    shadowed = [r for r in rows if r["role"] == "shadow"]
    mine = {a["id"]: a for a in answered}
    twice = sum(n > 1 for n in served.values())
    unlogged = sum(i not in served for i in mine)
    extra = sum(i not in mine for i in served)
    wrong = sum(r["version"] != mine[r["id"]]["version"] for r in rows
                if r["role"] != "shadow" and r["id"] in mine)
    shadow_requests = {r["request_id"] for r in shadowed}
    pending = p.serving.status("churn")[0].pending
    ok = (len(mine) == len(answered) == sum(served.values()) and not (twice or unlogged or extra
                                                                      or wrong)
          and len(shadowed) == len(deployed_requests) and shadow_requests == deployed_requests
          and all(r["version"] == worse for r in shadowed))
    report.serving.update(
        answered=len(answered), logged=sum(served.values()), unlogged=unlogged, twice=twice,
        extra=extra, wrong_version=wrong, shadow_records=len(shadowed),
        shadow_expected=len(deployed_requests), pending=pending, ok=ok)
    problems = [f"{n} {what}" for n, what in (
        (unlogged, "answered but not in the table"), (twice, "in the table more than once"),
        (extra, "in the table but never answered"), (wrong, "logged with another version"))
        if n]
    if shadow_requests != deployed_requests:
        problems.append(f"shadow scored {len(shadow_requests & deployed_requests)} of the "
                        f"{len(deployed_requests)} requests answered while it was deployed")
    report.serving["check"] = (
        f"{len(answered):,} predictions answered 200, {sum(served.values()):,} in the "
        f"predictions table, each exactly once (pending in segments: {pending}); "
        f"shadow v{worse} logged {len(shadowed):,} records for the "
        f"{len(deployed_requests):,} requests answered while it was deployed, none returned"
        + ("" if ok else "; " + "; ".join(problems or ["see the counts"])))
    report.serving["log"] = p.sql(
        "SELECT role, version, count(*) AS predictions, count(DISTINCT request_id) AS requests, "
        "count(DISTINCT request->>'customer_id') AS customers, count(score) AS scored, "
        "round(avg(score), 3) AS avg_score FROM predictions WHERE endpoint = 'churn' "
        "GROUP BY ALL ORDER BY min(time)").to_pylist()
    p.serving.deploy("churn", abort=True, reason="demo: the canary has been looked at")
    p.serving.deploy("churn", stop_shadow=True, reason="demo: the shadow has been looked at")
    note("canary aborted, shadow stopped",
         f"churn is served by champion v{champion} alone again (`tarmac deploy status churn`)")


LIVE_CLICKS = 400


def _streams(p: Any, report: DemoReport, step: Step) -> None:
    """Live clicks on a stream: produced now (some broken, one re-sent, one an hour too late),
    then `tarmac stream run --once` puts them in the lake exactly once."""
    import json
    from datetime import UTC, datetime, timedelta

    from tarmac.streams.runner import StreamRunner

    step(f"live clicks arrive on a stream: {LIVE_CLICKS} events to topic 'clicks', then "
         "tarmac stream run --once")
    rng = np.random.default_rng(7)
    now = datetime.now(UTC)
    customers = p.sql("SELECT customer_id FROM customers ORDER BY customer_id LIMIT 200")
    ids = customers["customer_id"].to_numpy()
    events: list[Any] = [
        {"event_id": f"live-{i:05d}", "customer_id": int(rng.choice(ids)),
         "event_type": str(rng.choice(["page_view", "search", "add_to_cart", "checkout"])),
         "event_time": (now - timedelta(seconds=float(LIVE_CLICKS - i))).isoformat()}
        for i in range(LIVE_CLICKS)]
    events.append(dict(events[10]))                                   # re-sent by the app
    events.append({**events[11], "event_id": "live-late",              # two hours late
                   "event_time": (now - timedelta(hours=2)).isoformat()})
    events += [b'{"event_id": "live-cut", "customer_id": 10', b"\xff not text"]  # broken
    from tarmac.features.streaming import runner_hook

    with open(report.root / "definitions.py", "a", encoding="utf-8") as f:
        f.write(STREAM_VIEW)
    p.features.apply()
    hooks = [h for h in [runner_hook(p, ["live_clicks"])] if h is not None]
    p.streams.create_topic("clicks", 2, exist_ok=True)
    busiest = int(Counter(e["customer_id"] for e in events[:LIVE_CLICKS]).most_common(1)[0][0])
    refs = ["live_activity:count_1h", "live_activity:event_type_distinct_1h"]
    seen = []
    half = LIVE_CLICKS // 2
    for part in (events[:half], events[half:]):  # two arrivals: the feature moves online
        p.streams.produce("clicks", part, key="customer_id")
        StreamRunner(p, ["live_clicks"], once=True, hooks=hooks).run()
        seen.append(p.features.online(refs, [{"customer_id": busiest}]).rows[0]["count_1h"])
    total = StreamRunner(p, ["live_clicks"], once=True).run()["live_clicks"]  # nothing left
    more = [{"event_id": f"live-more-{i}", "customer_id": int(ids[0]), "event_type": "search",
             "event_time": (now + timedelta(seconds=i)).isoformat()} for i in range(5)]
    (report.root / "data" / "more_clicks.jsonl").write_text(  # for the README's tour
        "".join(json.dumps(e) + "\n" for e in more), encoding="utf-8")
    t = _totals(p)
    check = p.features.check(refs)
    rows = p.sql("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM live_clicks")
    ok = (total.messages == 0 and t["messages"] == len(events)
          and t["loaded"] == LIVE_CLICKS and t["quarantined"] == 3
          and rows["n"][0].as_py() == rows["d"][0].as_py() == LIVE_CLICKS
          and seen[0] < seen[1] and check.compared > 0 and not check.mismatches)
    report.streams = {**t, "online": seen, "customer": busiest, "ok": ok,
                      "compared": check.compared, "mismatches": len(check.mismatches),
                      "check": (
        f"{t['messages']} messages: {t['loaded']} in live_clicks (each once), "
        f"{t['quarantined']} in quarantine with topic/partition/offset (2 broken, 1 too late), "
        f"1 re-sent event dropped; offsets committed in the Delta log, lag 0. Stream view "
        f"live_activity: customer {busiest}'s clicks in the last hour went {seen[0]} -> "
        f"{seen[1]} online as the events arrived; features check: {check.compared} values "
        f"compared with the batch definition, {len(check.mismatches)} differ")}


STREAM_VIEW = """

# added by the demo's streams step: windowed counts over the live clickstream, kept online by
# `tarmac stream run` and equal to the same definition computed in batch over the lake table
from tarmac.features import StreamFeatureView, agg  # noqa: E402

live_activity = StreamFeatureView(
    name="live_activity", entities=[customer], source="live_clicks", ttl="1d",
    aggregates=[agg.count(), agg.distinct("event_type")], windows=["5m", "1h"],
    description="a customer's clicks in the last 5 minutes and hour, live",
)
"""


def _totals(p: Any) -> dict[str, int]:
    """Where every message of the live_clicks source went, from the catalog and the lake."""
    from tarmac.streams.status import stream_status

    status = stream_status(p)
    rows = [s for s in status if s["source"] == "live_clicks"]
    loaded = p.sql("SELECT count(*) AS n FROM live_clicks")["n"][0].as_py()
    return {"messages": sum(s["committed"] or 0 for s in rows), "loaded": loaded,
            "quarantined": rows[0]["quarantined"] if rows else 0,
            "lag": sum(s["lag"] or 0 for s in rows)}


def _metrics(found: dict[str, float]) -> str:
    return ", ".join(f"{k} {found[k]:.3f}" for k in ("roc_auc", "pr_auc", "accuracy")
                     if k in found)


def _gate_counts(report: Any) -> str:
    counts = {s: sum(r.status == s for r in report.results)
              for s in ("passed", "failed", "error", "skipped")}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _crm_changes(crm_db: Path, upgrades: int = 25) -> int:
    """What a day in the CRM looks like: some customers upgrade their plan, one signs up.
    Returns the number of rows changed (the incremental load reads these, plus its lookback)."""
    import sqlite3

    con = sqlite3.connect(crm_db)
    try:
        newest = con.execute("SELECT max(updated_at) FROM customers").fetchone()[0]
        later = newest[:10] + "T23:59:00Z"
        ids = [row[0] for row in con.execute(
            "SELECT customer_id FROM customers WHERE plan = 'basic' GROUP BY customer_id "
            "ORDER BY customer_id LIMIT ?", (upgrades,))]
        for cid in ids:
            con.execute("INSERT INTO customers (customer_id, name, email, phone, region, plan, "
                        "signup_date, updated_at) SELECT customer_id, name, email, phone, region, "
                        "'premium', signup_date, ? FROM customers WHERE customer_id = ? "
                        "ORDER BY updated_at DESC LIMIT 1", (later, cid))
        con.execute("INSERT INTO customers (customer_id, name, email, phone, region, plan, "
                    "signup_date, updated_at) VALUES (99999, 'Ada Newcomer', "
                    "'ada.newcomer@example.net', '+1-555-000-0000', 'North', 'standard', ?, ?)",
                    (later[:10], later))
        con.commit()
    finally:
        con.close()
    return len(ids) + 1


def _survey(p: Any, report: DemoReport, step: Step) -> None:
    """Map the sources before loading anything: terminal summary, JSON and HTML reports."""
    import json

    from tarmac.ingest.report import to_html
    from tarmac.ingest.survey import survey

    step("surveying the sources before loading anything (survey.html, survey.json)")
    found = survey(p)
    (report.root / "survey.html").write_text(to_html(found), encoding="utf-8")
    (report.root / "survey.json").write_text(json.dumps(found.to_dict(), indent=2,
                                                        default=str), encoding="utf-8")
    report.survey_headline = found.headline()


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
