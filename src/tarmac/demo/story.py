"""The story ``tarmac demo`` tells: scattered, messy data becomes governed lake tables.

Each capability Tarmac gains extends this story, so the demo always shows the whole road built
so far. Today: generate the company's sources, start its tickets API, load the clean parts into
the lake (one recorded run per source), refresh the CRM with a merge, build a derived table
whose lineage reaches back to its sources, compact the clickstream, and verify the audit chain.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
# Where the company's data lives. The connectors that load these arrive with the ingestion
# issue; for now `tarmac demo` cleans and loads them through the SDK.
sources:
  crm:      {type: sql, url: "sqlite:///data/crm.db", tables: [customers], primary_key: customer_id, cursor: updated_at}
  orders:   {type: sql, url: "sqlite:///data/orders.db", tables: [orders], primary_key: order_id}
  products: {type: file, path: "data/products/*.csv", primary_key: sku}
  clicks:   {type: file, path: "data/clicks/*.jsonl", primary_key: event_id}
  tickets:  {type: http, url: "http://127.0.0.1:8765/tickets", paginate: cursor}
  labels:   {type: file, path: "data/labels.csv", primary_key: customer_id}
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
SELECT cu.customer_id, cu.region, cu.plan,
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
    runs: int = 0
    audit_records: int = 0
    chain_ok: bool = False
    data_only: bool = False


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
             step: Step = lambda _msg: None) -> DemoReport:
    """Build the demo company's project in ``root`` and run the story so far."""
    import tarmac
    from tarmac.demo import TicketsServer, clean_tables, generate

    root = root.resolve()
    prepare(root)
    step(f"generating Kestrel Mobile's scattered data ({size}, seed {seed})")
    sources = generate(root, size=size, seed=seed)
    report = DemoReport(root, sources.summary(), data_only=data_only)
    if data_only:
        return report
    tarmac.init(root, name="kestrel")
    (root / "tarmac.yaml").write_text(PROJECT_FILE)

    with tarmac.open(root) as p:
        step("reading the sources (tickets through their HTTP API) and cleaning them")
        with TicketsServer(sources.tickets_json) as api:
            clean = clean_tables(sources, tickets_url=api.url)
        _load(p, report, clean, step)
        p.lake.annotate("customers", tags=["pii", "crm"],
                        column_tags={"name": ["pii"], "email": ["pii", "email"],
                                     "phone": ["pii", "phone"]})
        p.lake.annotate("labels", tags=["label"], description="churn labels, weeks late")
        step("building customer_activity from orders, clicks and tickets")
        with p.ledger.run("demo.customer_activity", params={"sql": " ".join(
                ACTIVITY_SQL.split())}):
            activity = p.sql(ACTIVITY_SQL)
            result = p.lake.write("customer_activity", activity, mode="overwrite",
                                  description="per-customer activity (demo)")
        report.loaded.append({"table": "customer_activity", "source": "SQL over the lake",
                              "rows": result.rows_added, "dropped": 0, "version": result.version})
        step("compacting the clickstream's monthly appends")
        p.lake.compact("clicks")
        report.runs = p.catalog.count("runs")
        report.audit_records = p.catalog.count("audit_log")
        report.chain_ok = p.ledger.verify().ok
    return report


def _load(p: Any, report: DemoReport, clean: Any, step: Step) -> None:
    tables: dict[str, pa.Table] = clean.tables
    location = {s["source"]: s["location"] for s in report.sources}
    origin = {"customers": "crm", "orders": "orders", "products": "products",
              "clicks": "clicks", "tickets": "tickets", "labels": "labels"}
    for name, table in tables.items():
        step(f"loading {name} ({len(table):,} clean rows)")
        src = origin.get(name, name)
        dropped = sum(clean.dropped.get(name, {}).values())
        with p.ledger.run(f"demo.load_{name}", params={"source": src,
                                                       "location": location.get(src),
                                                       "dropped": clean.dropped.get(name, {}),
                                                       "repaired": clean.fixed.get(name, {})}):
            if name == "customers":
                version = _load_customers(p, table)
            elif name == "clicks":
                version = _load_clicks(p, table)
            else:
                version = p.lake.write(name, table, mode="overwrite").version
        report.loaded.append({"table": name, "source": src, "rows": len(table),
                              "dropped": dropped, "version": version})


def _load_customers(p: Any, customers: pa.Table) -> int:
    """First the CRM as it was three months ago, then a merge of everything since."""
    updated = customers["updated_at"]
    cutoff = pc.min(updated).as_py() + (pc.max(updated).as_py() - pc.min(updated).as_py()) / 2
    early = customers.filter(pc.less_equal(updated, pa.scalar(cutoff, updated.type)))
    p.lake.write("customers", early, mode="overwrite", description="CRM customers (demo)")
    return p.lake.write("customers", customers, mode="merge", keys=["customer_id"]).version


def _load_clicks(p: Any, clicks: pa.Table) -> int:
    """The clickstream arrives month by month: one append per month."""
    months = pc.strftime(clicks["event_time"], format="%Y-%m")
    version = 0
    first = True
    for month in sorted(set(months.to_pylist())):
        part = clicks.filter(pc.equal(months, month))
        version = p.lake.write("clicks", part, mode="overwrite" if first else "append").version
        first = False
    return version
