"""Generate the scattered, deliberately messy data of the demo company.

``generate()`` writes everything a real subscription business would have lying
around: a CRM database, an orders database, yearly product price lists as CSV,
a daily clickstream as JSON lines, support tickets (served by a local HTTP API,
see ``_tickets_api``) and churn labels that arrive weeks after the behaviour.
The output is a pure function of ``(size, seed, as_of)``: the demo carries its
own clock, its activity fills the 181 days ending on ``as_of`` (by default three
days before today, so features are fresh online), and the same seed and as-of
date yield byte-identical files.  Another as-of date moves every date by whole
days and leaves everything else as it was.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._clicks import make_events, write_click_files
from ._commerce import make_catalog, order_rows
from ._population import (
    COMPANY,
    Clock,
    Population,
    crm_rows,
    labels_rows,
    make_population,
    ticket_rows,
)

# size -> (customers, click events per customer, orders per customer)
SIZES: dict[str, tuple[int, float, float]] = {
    "small": (2_000, 33.0, 3.0),
    "medium": (20_000, 55.0, 3.0),
    "large": (200_000, 55.0, 3.0),
}
AS_OF_LAG_DAYS = 3  # the default as-of date: this many days before today (UTC)


def default_as_of() -> date:
    """Three days before today (UTC): recent enough that the demo's features are fresh online
    (the shortest ttl is 30 days), old enough that every day of data is complete."""
    return datetime.now(UTC).date() - timedelta(days=AS_OF_LAG_DAYS)


@dataclass(frozen=True)
class DemoSources:
    """Where the demo sources were written and how many records each holds.

    Counts are raw records as written, messiness included: ``clicks`` counts
    every line (duplicates and broken lines too), ``orders`` counts duplicated
    rows, ``products`` counts rows across both CSV files, ``crm_rows`` counts
    every customer version while ``customers`` counts distinct customers.
    """

    company: str
    size: str
    seed: int
    data_dir: Path
    crm_db: Path
    orders_db: Path
    products_dir: Path
    clicks_dir: Path
    tickets_json: Path
    labels_csv: Path
    customers: int
    crm_rows: int
    orders: int
    products: int
    clicks: int
    tickets: int
    labels: int
    as_of: date

    def summary(self) -> list[dict[str, Any]]:
        """One row per source (for display): source, kind, location, records."""
        rows = [
            ("crm", "sqlite", self.crm_db, self.crm_rows),
            ("orders", "sqlite", self.orders_db, self.orders),
            ("products", "csv", self.products_dir, self.products),
            ("clicks", "jsonl", self.clicks_dir, self.clicks),
            ("tickets", "http", self.tickets_json, self.tickets),
            ("labels", "csv", self.labels_csv, self.labels),
        ]
        return [
            {"source": src, "kind": kind, "location": str(loc), "records": n}
            for src, kind, loc, n in rows
        ]


def generate(out_dir: Path, *, size: str = "small", seed: int = 0,
             as_of: date | None = None) -> DemoSources:
    """Write the demo company's messy sources under ``out_dir / "data"``.

    ``size`` is "small" (~2k customers, ~60k clicks, for tests), "medium"
    (~20k customers, ~1M clicks) or "large" (~200k customers, ~10M clicks).
    ``as_of`` is the last day of activity (default: ``default_as_of()``).
    An existing ``data`` directory is replaced so reruns stay byte-identical.
    """
    as_of = as_of or default_as_of()
    n_customers, clicks_per_customer, orders_per_customer = _size(size)
    r_pop, r_crm, r_cat, r_ord, r_tix, r_lab, r_ev, r_file = _streams(seed)

    data = Path(out_dir) / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)

    pop = make_population(n_customers, r_pop, Clock(as_of))

    crm = crm_rows(pop, r_crm)
    crm_db = data / "crm.db"
    _write_sqlite(
        crm_db,
        "CREATE TABLE customers (customer_id INTEGER, name TEXT, email TEXT, phone TEXT,"
        " region TEXT, plan TEXT, signup_date TEXT, updated_at TEXT)",
        "customers",
        {name: crm.column(name).to_pylist() for name in crm.column_names},
    )

    catalog = make_catalog(r_cat)
    products_dir = data / "products"
    products_dir.mkdir()
    _write_csv(catalog.products_2024, products_dir / "products_2024.csv")
    _write_csv(catalog.products_2025, products_dir / "products_2025.csv")

    orders = order_rows(pop, catalog, r_ord, orders_per_customer)
    orders_db = data / "orders.db"
    # `amount` has no declared type (legacy schema), so SQLite keeps each
    # value's own type: REAL, TEXT ("12.50", "n/a") or NULL.
    _write_sqlite(
        orders_db,
        "CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, sku TEXT,"
        " quantity INTEGER, amount, ordered_at TEXT, status TEXT)",
        "orders",
        orders,
    )

    tickets = ticket_rows(pop, r_tix)
    tickets_json = data / "tickets.json"
    records = ",\n".join(json.dumps(r, separators=(",", ":")) for r in tickets.to_pylist())
    tickets_json.write_text(f"[\n{records}\n]\n", encoding="utf-8")

    labels = labels_rows(pop, r_lab)
    labels_csv = data / "labels.csv"
    _write_csv(labels, labels_csv)

    events = make_events(pop, r_ev, clicks_per_customer)
    clicks_dir = data / "clicks"
    n_clicks = write_click_files(events, clicks_dir, r_file)

    return DemoSources(
        company=COMPANY,
        size=size,
        seed=seed,
        data_dir=data,
        crm_db=crm_db,
        orders_db=orders_db,
        products_dir=products_dir,
        clicks_dir=clicks_dir,
        tickets_json=tickets_json,
        labels_csv=labels_csv,
        customers=pop.n,
        crm_rows=crm.num_rows,
        orders=len(orders["order_id"]),
        products=catalog.products_2024.num_rows + catalog.products_2025.num_rows,
        clicks=n_clicks,
        tickets=tickets.num_rows,
        labels=labels.num_rows,
        as_of=as_of,
    )


def _size(size: str) -> tuple[int, float, float]:
    if size not in SIZES:
        raise ValueError(f"unknown demo size {size!r}; allowed sizes: {', '.join(SIZES)}")
    return SIZES[size]


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent random streams per source: changing one generator leaves the others
    alone."""
    root = np.random.SeedSequence([seed, 20250630])
    return [np.random.default_rng(s) for s in root.spawn(8)]


def population(size: str = "small", seed: int = 0, as_of: date | None = None) -> Population:
    """The latent customers behind ``generate(size=, seed=, as_of=)``: the same draw, so the
    demo's later chapters (a price change, late labels) continue the world its data shows."""
    n_customers = _size(size)[0]
    return make_population(n_customers, _streams(seed)[0], Clock(as_of or default_as_of()))


def _write_sqlite(path: Path, ddl: str, table: str, columns: dict[str, list[Any]]) -> None:
    """Create ``path`` with one table and bulk-insert column lists in one transaction."""
    names = list(columns)
    placeholders = ", ".join("?" for _ in names)
    con = sqlite3.connect(path)
    try:
        with con:
            con.execute(ddl)
            con.executemany(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({placeholders})",
                zip(*columns.values(), strict=True),
            )
    finally:
        con.close()


def _write_csv(table: pa.Table, path: Path) -> None:
    """Write a CSV with a header, quoting only where needed (like spreadsheet exports)."""
    table.to_pandas().to_csv(path, index=False, lineterminator="\n")


__all__ = ["SIZES", "DemoSources", "default_as_of", "generate", "population"]
