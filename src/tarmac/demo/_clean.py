"""Read the demo company's messy sources and return their clean parts.

This is the demo's stand-in for what Tarmac's connectors and cleaning steps do
for real: every source is read in bulk (sqlite3, pyarrow.csv, pyarrow.json),
repaired where the intent is unambiguous (types, casing, renamed columns, date
formats, string ids) and filtered where it is not (unparseable amounts,
broken JSON lines, duplicates).  Every dropped or repaired record is counted,
so the demo can show *what* was cleaned and *why*.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ._clean_clicks import read_clicks
from ._generate import DemoSources
from ._tickets_api import fetch_all_tickets

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class CleanResult:
    """Clean tables plus bookkeeping of what cleaning did.

    ``dropped[table][reason]`` counts records removed; ``fixed[table][reason]``
    counts records kept but repaired (coerced, renamed, re-formatted, re-sorted).
    """

    tables: dict[str, pa.Table]
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    fixed: dict[str, dict[str, int]] = field(default_factory=dict)


def clean_tables(sources: DemoSources, *, tickets_url: str | None = None) -> CleanResult:
    """Read every demo source and return typed, de-duplicated pyarrow tables.

    Tickets come from the HTTP API when ``tickets_url`` is given (as they would
    in production), otherwise straight from ``tickets.json``.
    """
    tables: dict[str, pa.Table] = {}
    dropped: dict[str, dict[str, int]] = {}
    fixed: dict[str, dict[str, int]] = {}
    for name, reader in (
        ("customers", lambda: _customers(sources.crm_db)),
        ("orders", lambda: _orders(sources.orders_db)),
        ("products", lambda: _products(sources.products_dir)),
        ("clicks", lambda: read_clicks(sources.clicks_dir)),
        ("tickets", lambda: _tickets(sources.tickets_json, tickets_url)),
        ("labels", lambda: _labels(sources.labels_csv)),
    ):
        tables[name], dropped[name], fixed[name] = reader()
    return CleanResult(tables, dropped, fixed)


Cleaned = tuple[pa.Table, dict[str, int], dict[str, int]]


def to_utc(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """ISO 8601 strings with a zone ("...Z", "+00:00") -> timestamp[us, UTC]."""
    return pc.cast(values, TS)


def date_to_utc(
    values: pa.Array | pa.ChunkedArray, fmt: str = "%Y-%m-%d"
) -> pa.Array | pa.ChunkedArray:
    """Date strings -> midnight UTC timestamps (null where the format does not match)."""
    parsed = pc.strptime(values, format=fmt, unit="us", error_is_null=True)
    return pc.cast(parsed, TS)


def _query(path: Path, sql: str) -> dict[str, list[Any]]:
    """Run a query and return its result as column lists."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {n: list(c) for n, c in zip(names, cols, strict=True)}


def _first_per_key(keys: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each key, in original order."""
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def _customers(crm_db: Path) -> Cleaned:
    cols = _query(
        crm_db,
        "SELECT customer_id, name, email, phone, region, plan, signup_date, updated_at,"
        " rowid AS _row FROM customers",
    )
    t = pa.table(
        {
            "customer_id": pa.array(cols["customer_id"], pa.int64()),
            **{
                k: pa.array(cols[k], pa.string())
                for k in ("name", "email", "phone", "region", "plan")
            },
            "signup_raw": pa.array(cols["signup_date"], pa.string()),
            "updated_at": to_utc(pa.array(cols["updated_at"], pa.string())),
            "_row": pa.array(cols["_row"], pa.int64()),
        }
    )
    n = t.num_rows
    # Latest version wins; the physical row order breaks exact ties.
    t = t.sort_by(
        [("customer_id", "ascending"), ("updated_at", "descending"), ("_row", "descending")]
    )
    ids = t.column("customer_id").to_numpy()
    keep = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if n else np.arange(0)
    t = t.take(pa.array(keep))

    region = t.column("region")
    title = pc.utf8_title(region)
    iso = date_to_utc(t.column("signup_raw"))
    us = date_to_utc(t.column("signup_raw"), "%m/%d/%Y")
    signup = pc.coalesce(iso, us)
    fixed = {
        "region_case": _count(pc.not_equal(region, title)),
        "signup_date_format": _count(pc.and_(pc.is_null(iso), pc.is_valid(us))),
    }
    out = pa.table(
        {
            "customer_id": t.column("customer_id"),
            "name": t.column("name"),
            "email": t.column("email"),
            "phone": t.column("phone"),
            "region": title,
            "plan": t.column("plan"),
            "signup_date": signup,
            "updated_at": t.column("updated_at"),
        }
    )
    return out, {"superseded_version": n - out.num_rows}, fixed


def _orders(orders_db: Path) -> Cleaned:
    cols = _query(
        orders_db,
        "SELECT order_id, customer_id, sku, quantity, amount, typeof(amount) AS amount_type,"
        " ordered_at, status FROM orders ORDER BY rowid",
    )
    order_id = np.asarray(cols["order_id"], dtype=np.int64)
    first = _first_per_key(order_id)
    amount = pd.to_numeric(pd.Series(cols["amount"], dtype=object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    amount_type = np.asarray(cols["amount_type"], dtype=object)
    customer = pd.array(cols["customer_id"], dtype="Int64")
    null_customer = np.asarray(customer.isna())

    unique = np.zeros(order_id.size, dtype=bool)
    unique[first] = True
    bad_amount = ~np.isfinite(amount)
    keep = unique & ~null_customer & ~bad_amount
    dropped = {
        "duplicate_order_id": int((~unique).sum()),
        "null_customer_id": int((unique & null_customer).sum()),
        "bad_amount": int((unique & ~null_customer & bad_amount).sum()),
    }
    fixed = {"amount_from_text": int((keep & (amount_type == "text")).sum())}
    idx = np.flatnonzero(keep)
    out = pa.table(
        {
            "order_id": pa.array(order_id[idx]),
            "customer_id": pa.array(np.asarray(customer[idx], dtype=np.int64)),
            "sku": pa.array(_pick(cols["sku"], idx), pa.string()),
            "quantity": pa.array(np.asarray(cols["quantity"], dtype=np.int64)[idx]),
            "amount": pa.array(amount[idx]),
            "ordered_at": to_utc(pa.array(_pick(cols["ordered_at"], idx), pa.string())),
            "status": pa.array(_pick(cols["status"], idx), pa.string()),
        }
    )
    return out, dropped, fixed


def _pick(values: Sequence[Any], idx: np.ndarray) -> list[Any]:
    return np.asarray(values, dtype=object)[idx].tolist()


def _products(products_dir: Path) -> Cleaned:
    """Union all yearly price lists; the newest file wins per sku.

    Newer files renamed ``price`` to ``unit_price``.  A blank price in the
    newest file falls back to the most recent file that does have one (a blank
    is missing data, not a price of nothing).
    """
    frames = []
    renamed = 0
    files = sorted(products_dir.glob("products_*.csv"))
    for rank, path in enumerate(files):
        t = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "sku": pa.string(),
                    "price": pa.float64(),
                    "unit_price": pa.float64(),
                },
                strings_can_be_null=True,
            ),
        )
        if "unit_price" in t.column_names and "price" not in t.column_names:
            t = t.rename_columns(["price" if c == "unit_price" else c for c in t.column_names])
            renamed += t.num_rows
        df = t.select(["sku", "name", "category", "price"]).to_pandas()
        df["_rank"] = rank
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no products_*.csv files in {products_dir}")
    df = pd.concat(frames, ignore_index=True).sort_values(["sku", "_rank"], kind="stable")
    latest = df.groupby("sku", sort=True).last()  # last() skips blanks per column
    newest_price = df.groupby("sku", sort=True)["price"].nth(-1).to_numpy()
    fallback = int((np.isnan(newest_price) & latest["price"].notna().to_numpy()).sum())
    out = pa.table(
        {
            "sku": pa.array(latest.index.to_numpy(dtype=object), pa.string()),
            "name": pa.array(latest["name"].to_numpy(dtype=object), pa.string()),
            "category": pa.array(latest["category"].to_numpy(dtype=object), pa.string()),
            "price": pa.array(
                latest["price"].to_numpy(dtype=np.float64), pa.float64(), from_pandas=True
            ),
        }
    )
    dropped = {"superseded_by_newer_file": len(df) - out.num_rows}
    return out, dropped, {"renamed_price_column": renamed, "price_from_older_file": fallback}


TICKETS_SCHEMA = pa.schema(
    [
        ("ticket_id", pa.string()),
        ("customer_id", pa.int64()),
        ("opened_at", pa.string()),
        ("closed_at", pa.string()),
        ("category", pa.string()),
        ("priority", pa.string()),
        ("satisfaction", pa.int64()),
    ]
)


def _tickets(tickets_json: Path, tickets_url: str | None) -> Cleaned:
    if tickets_url is not None:
        rows = fetch_all_tickets(tickets_url)
    else:
        rows = json.loads(tickets_json.read_text(encoding="utf-8"))
    t = pa.Table.from_pylist(rows, schema=TICKETS_SCHEMA)
    n = t.num_rows
    first = _first_per_key(t.column("ticket_id").to_numpy(zero_copy_only=False))
    t = t.take(pa.array(first))
    t = t.set_column(2, "opened_at", to_utc(t.column("opened_at")))
    t = t.set_column(3, "closed_at", to_utc(t.column("closed_at")))
    return t, {"duplicate_ticket_id": n - t.num_rows}, {}


def _labels(labels_csv: Path) -> Cleaned:
    t = pacsv.read_csv(
        labels_csv,
        convert_options=pacsv.ConvertOptions(
            column_types={
                "customer_id": pa.int64(),
                "churned": pa.int64(),
                "label_time": pa.string(),
                "observed_until": pa.string(),
            }
        ),
    )
    out = pa.table(
        {
            "customer_id": t.column("customer_id"),
            "churned": t.column("churned"),
            "label_time": date_to_utc(t.column("label_time")),
            "observed_until": date_to_utc(t.column("observed_until")),
        }
    )
    return out, {}, {}


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    """Number of true values in a boolean array (nulls count as false)."""
    return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)
