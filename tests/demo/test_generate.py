"""Tests for the demo company's data generator and cleaner (small size only)."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tarmac.demo import CleanResult, DemoSources, clean_tables, default_as_of, generate

TS = pa.timestamp("us", tz="UTC")
AS_OF = date(2025, 6, 30)  # the demo's clock, pinned: these tests assert its dates


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> DemoSources:
    return generate(tmp_path_factory.mktemp("demo"), size="small", seed=0, as_of=AS_OF)


@pytest.fixture(scope="module")
def clean(sources: DemoSources) -> CleanResult:
    return clean_tables(sources)


def _digest(data_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        h.update(path.relative_to(data_dir).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _sql(db: Path, query: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_small_is_fast_and_deterministic(tmp_path: Path, sources: DemoSources) -> None:
    start = time.perf_counter()
    again = generate(tmp_path / "a", size="small", seed=0, as_of=AS_OF)
    assert time.perf_counter() - start < 3.0
    other = generate(tmp_path / "b", size="small", seed=1, as_of=AS_OF)
    assert _digest(again.data_dir) == _digest(sources.data_dir)
    assert _digest(other.data_dir) != _digest(sources.data_dir)
    # rerunning into the same directory replaces the old data, still identical
    assert _digest(generate(tmp_path / "a", size="small", seed=0, as_of=AS_OF).data_dir) == _digest(
        sources.data_dir
    )


def test_the_demo_carries_its_own_clock(tmp_path: Path, sources: DemoSources) -> None:
    """Another as-of day moves every date by whole days and nothing else; the same seed and
    as-of day give byte-identical files; the default is three days before today."""
    moved = generate(tmp_path / "m", size="small", seed=0, as_of=date(2026, 3, 1))
    assert moved.as_of == date(2026, 3, 1) and _digest(moved.data_dir) != _digest(
        sources.data_dir)
    assert _digest(generate(tmp_path / "m2", size="small", seed=0, as_of=date(2026, 3, 1)
                            ).data_dir) == _digest(moved.data_dir)
    assert [(s["source"], s["records"]) for s in moved.summary()] == [
        (s["source"], s["records"]) for s in sources.summary()]
    names = sorted(p.stem for p in moved.clicks_dir.glob("*.jsonl"))
    assert names[0] == "2025-09-02" and "2026-03-01" in names  # 181 days up to as-of
    labels = list(csv.DictReader((moved.labels_csv).open()))
    assert {r["observed_until"] for r in labels} == {"2026-03-01"}
    newest = _sql(moved.crm_db, "SELECT max(updated_at) FROM customers")[0][0]
    assert "2026-02-" in newest or "2026-03-01" in newest
    assert default_as_of() == datetime.now(UTC).date() - timedelta(days=3)
    assert generate(tmp_path / "d", size="small", seed=0).as_of == default_as_of()


def test_unknown_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="small, medium, large"):
        generate(tmp_path, size="huge")


def test_counts_match_files(sources: DemoSources) -> None:
    assert sources.customers == 2_000
    assert _sql(sources.crm_db, "SELECT count(*) FROM customers")[0][0] == sources.crm_rows
    assert _sql(sources.crm_db, "SELECT count(DISTINCT customer_id) FROM customers")[0][0] == 2_000
    assert _sql(sources.orders_db, "SELECT count(*) FROM orders")[0][0] == sources.orders
    lines = sum(len(p.read_bytes().splitlines()) for p in sources.clicks_dir.glob("*.jsonl"))
    assert lines == sources.clicks
    assert 45_000 < sources.clicks < 80_000
    csv_rows = sum(len(p.read_text().splitlines()) - 1 for p in sources.products_dir.glob("*.csv"))
    assert csv_rows == sources.products
    assert len(json.loads(sources.tickets_json.read_text())) == sources.tickets
    assert len(sources.labels_csv.read_text().splitlines()) - 1 == sources.labels
    summary = {row["source"]: row for row in sources.summary()}
    assert set(summary) == {"crm", "orders", "products", "clicks", "tickets", "labels"}
    assert summary["clicks"]["records"] == sources.clicks
    assert all(set(r) == {"source", "kind", "location", "records"} for r in summary.values())


def test_crm_is_messy(sources: DemoSources) -> None:
    dup = _sql(
        sources.crm_db,
        "SELECT count(*) FROM (SELECT customer_id FROM customers GROUP BY 1 HAVING count(*) > 1)",
    )[0][0]
    assert dup > 100  # customers updated over time
    changed = _sql(
        sources.crm_db,
        "SELECT count(*) FROM (SELECT customer_id FROM customers GROUP BY 1"
        " HAVING count(DISTINCT plan) > 1)",
    )[0][0]
    assert changed > 50
    assert _sql(sources.crm_db, "SELECT count(*) FROM customers WHERE email IS NULL")[0][0] > 0
    assert _sql(sources.crm_db, "SELECT count(*) FROM customers WHERE phone IS NULL")[0][0] > 0
    regions = {r for (r,) in _sql(sources.crm_db, "SELECT DISTINCT region FROM customers")}
    assert "North" in regions and "north" in regions
    us_dates = _sql(
        sources.crm_db, "SELECT count(*) FROM customers WHERE signup_date LIKE '__/__/____'"
    )
    assert us_dates[0][0] > 0


def test_orders_are_messy(sources: DemoSources) -> None:
    types = dict(_sql(sources.orders_db, "SELECT typeof(amount), count(*) FROM orders GROUP BY 1"))
    assert types["real"] > 0 and types["text"] > 0
    assert _sql(sources.orders_db, "SELECT count(*) FROM orders WHERE amount = 'n/a'")[0][0] > 0
    numeric_text = (
        "SELECT count(*) FROM orders WHERE typeof(amount) = 'text' AND amount LIKE '%.__'"
    )
    assert _sql(sources.orders_db, numeric_text)[0][0] > 0
    assert (
        _sql(sources.orders_db, "SELECT count(*) FROM orders WHERE customer_id IS NULL")[0][0] > 0
    )
    dup = "SELECT count(*) FROM (SELECT order_id FROM orders GROUP BY 1 HAVING count(*) > 1)"
    assert _sql(sources.orders_db, dup)[0][0] > 0


def test_products_have_renamed_column(sources: DemoSources) -> None:
    def read(name: str) -> list[dict[str, str]]:
        with open(sources.products_dir / name, newline="") as f:
            return list(csv.DictReader(f))

    old, new = read("products_2024.csv"), read("products_2025.csv")
    assert list(old[0]) == ["sku", "name", "category", "price"]
    assert list(new[0]) == ["sku", "name", "category", "unit_price"]
    assert {r["sku"] for r in new} - {r["sku"] for r in old}  # new products
    assert any(r["unit_price"] == "" for r in new)
    assert any(r["price"] == "" for r in old)


def test_clicks_are_messy(sources: DemoSources) -> None:
    invalid = string_ids = late = 0
    ids: list[str] = []
    unsorted_files = 0
    for path in sorted(sources.clicks_dir.glob("*.jsonl")):
        times = []
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                invalid += 1
                continue
            ids.append(event["event_id"])
            string_ids += isinstance(event["customer_id"], str)
            late += event["event_time"][:10] < path.stem
            times.append(event["event_time"])
        unsorted_files += times != sorted(times)
    assert 5 <= invalid < 200
    assert string_ids > 0
    assert late > 0
    assert unsorted_files > 0
    assert len(ids) > len(set(ids))  # duplicate event ids
    names = sorted(p.stem for p in sources.clicks_dir.glob("*.jsonl"))
    assert names[0] == "2025-01-01" and "2025-06-30" in names


def test_clean_tables_types_and_keys(clean: CleanResult, sources: DemoSources) -> None:
    t = clean.tables
    assert set(t) == {"customers", "orders", "products", "clicks", "tickets", "labels"}
    keys = {
        "customers": "customer_id",
        "orders": "order_id",
        "products": "sku",
        "clicks": "event_id",
        "tickets": "ticket_id",
        "labels": "customer_id",
    }
    for name, key in keys.items():
        col = t[name].column(key)
        assert pc.count_distinct(col).as_py() == len(col), name
        assert col.null_count == 0, name
    assert t["customers"].num_rows == sources.customers
    assert t["customers"].schema.field("signup_date").type == TS
    assert t["customers"].column("signup_date").null_count == 0
    assert set(t["customers"].column("region").to_pylist()) == {
        "North",
        "South",
        "East",
        "West",
        "Central",
    }
    assert t["orders"].schema.field("amount").type == pa.float64()
    assert t["orders"].schema.field("customer_id").type == pa.int64()
    assert t["orders"].column("customer_id").null_count == 0
    assert t["products"].schema.field("price").type == pa.float64()
    assert t["clicks"].schema.field("customer_id").type == pa.int64()
    assert t["clicks"].schema.field("event_time").type == TS
    times = t["clicks"].column("event_time").to_numpy()
    assert (np.diff(times.astype("int64")) >= 0).all()
    assert t["tickets"].schema.field("opened_at").type == TS
    assert t["tickets"].schema.field("closed_at").type == TS
    assert t["labels"].schema.field("label_time").type == TS
    d = clean.dropped
    assert d["orders"]["duplicate_order_id"] > 0 and d["orders"]["bad_amount"] > 0
    assert d["orders"]["null_customer_id"] > 0
    assert d["clicks"]["invalid_json"] >= 5 and d["clicks"]["duplicate_event_id"] > 0
    assert d["customers"]["superseded_version"] == sources.crm_rows - sources.customers
    assert clean.fixed["clicks"]["customer_id_from_string"] > 0
    assert clean.fixed["products"]["renamed_price_column"] > 0
    raw_lines = sources.clicks - d["clicks"]["invalid_json"] - d["clicks"]["duplicate_event_id"]
    assert t["clicks"].num_rows == raw_lines


def test_latest_customer_version_wins(clean: CleanResult, sources: DemoSources) -> None:
    latest = dict(
        _sql(
            sources.crm_db,
            "SELECT customer_id, plan FROM (SELECT customer_id, plan, row_number() OVER"
            " (PARTITION BY customer_id ORDER BY updated_at DESC, rowid DESC) AS rn"
            " FROM customers) WHERE rn = 1",
        )
    )
    customers = clean.tables["customers"]
    ids, plans = customers.column("customer_id").to_pylist(), customers.column("plan").to_pylist()
    got = dict(zip(ids, plans, strict=True))
    assert got == latest


def test_products_unified(clean: CleanResult) -> None:
    products = clean.tables["products"].to_pylist()
    by_sku = {p["sku"]: p for p in products}
    assert "KM-P007" in by_sku  # only in the 2025 file
    assert len(by_sku) == 26
    assert clean.fixed["products"]["price_from_older_file"] > 0


def test_churn_is_sane_and_learnable(clean: CleanResult) -> None:
    labels = clean.tables["labels"]
    ids, ys = labels.column("customer_id").to_pylist(), labels.column("churned").to_pylist()
    churned = dict(zip(ids, ys, strict=True))
    rate = np.mean(list(churned.values()))
    assert 0.05 <= rate <= 0.40

    def per_customer_mean(table: pa.Table, mask: pa.Array | None = None) -> tuple[float, float]:
        ids = table.column("customer_id").to_numpy()
        if mask is not None:
            ids = ids[mask.to_numpy(zero_copy_only=False)]
        keys, n = np.unique(ids, return_counts=True)
        counts = dict(zip(keys.tolist(), n.tolist(), strict=True))
        churn = [counts.get(c, 0) for c, y in churned.items() if y == 1]
        stay = [counts.get(c, 0) for c, y in churned.items() if y == 0]
        return float(np.mean(churn)), float(np.mean(stay))

    clicks = clean.tables["clicks"]
    cancel_churn, cancel_stay = per_customer_mean(
        clicks, pc.equal(clicks.column("event_type"), "cancel_page")
    )
    assert cancel_churn > 1.5 * cancel_stay
    events_churn, events_stay = per_customer_mean(clicks)
    assert events_churn < events_stay
    tickets_churn, tickets_stay = per_customer_mean(clean.tables["tickets"])
    assert tickets_churn > tickets_stay
