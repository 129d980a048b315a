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
through with an audited reason, and roll it back; and verify the audit chain.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tarmac.errors import UsageError

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
  app_events:
    type: stream                    # consumed by `tarmac stream` (a later step of the road)
    topic: app-events
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
             as_of: date | None = None, step: Step = lambda _msg: None) -> DemoReport:
    """Build the demo company's project in ``root`` and run the story so far. Its data ends on
    ``as_of`` (default: three days before today), so the features are fresh online."""
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
        _models(p, report, step)
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


def _models(p: Any, report: DemoReport, step: Step) -> None:
    """Train, gate, promote; a worse variant is blocked, forced through, and rolled back."""
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
