"""Product catalogue and orders of the demo company.

The catalogue is small and fixed (it does not grow with ``size``); orders scale
with the number of customers.  Messiness is injected on purpose: the 2025 price
list renamed ``price`` to ``unit_price`` and has blank prices, and the orders
table mixes REAL, TEXT ("12.50", "n/a") and NULL in ``amount``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ._population import DAY_MS, Population, iso_utc

# sku, name, category, 2024 list price, popularity weight
_CATALOG: list[tuple[str, str, str, float, float]] = [
    ("KM-P001", "Nimbus X1", "phone", 699.0, 1.0),
    ("KM-P002", "Nimbus X1 Pro", "phone", 999.0, 0.6),
    ("KM-P003", "Nimbus Lite", "phone", 349.0, 1.4),
    ("KM-P004", "Orca 5G", "phone", 549.0, 1.0),
    ("KM-P005", "Orca Mini", "phone", 399.0, 0.9),
    ("KM-P006", "Pebble Flip", "phone", 89.0, 0.5),
    ("KM-A001", "Clear Case X1", "accessory", 19.99, 3.0),
    ("KM-A002", "Rugged Case Orca", "accessory", 29.99, 2.0),
    ("KM-A003", "USB-C Fast Charger 30W", "accessory", 24.99, 4.0),
    ("KM-A004", "Wireless Charging Pad", "accessory", 34.99, 1.5),
    ("KM-A005", "Earbuds Air", "accessory", 79.0, 1.8),
    ("KM-A006", "Screen Protector 2-pack", "accessory", 12.99, 3.5),
    ("KM-A007", "Car Mount", "accessory", 22.5, 1.0),
    ("KM-D001", "Data Boost 10GB", "add-on", 10.0, 8.0),
    ("KM-D002", "Data Boost 50GB", "add-on", 30.0, 3.0),
    ("KM-D003", "Roaming Pack EU 7 days", "add-on", 15.0, 4.0),
    ("KM-D004", "Roaming Pack World 7 days", "add-on", 35.0, 1.5),
    ("KM-D005", "International Minutes 300", "add-on", 12.0, 2.5),
    ("KM-D006", "Device Insurance 12 months", "add-on", 108.0, 1.2),
    ("KM-D007", "Streaming Bundle 3 months", "add-on", 27.0, 2.0),
    ("KM-H001", "Home Router AX3000", "home", 129.0, 0.8),
    ("KM-H002", "Mesh Extender", "home", 79.0, 0.7),
    ("KM-H003", "5G Home Hub", "home", 249.0, 0.5),
    ("KM-H004", "Ethernet Cable 5m", "home", 9.99, 1.0),
]
# Launched in 2025: only in products_2025.csv, only ordered after launch.
_NEW_2025: list[tuple[str, str, str, float, float]] = [
    ("KM-P007", "Nimbus X2", "phone", 799.0, 1.2),
    ("KM-D008", "Data Day Pass Unlimited", "add-on", 4.99, 5.0),
]
_LAUNCH_DAY = 59  # new products launch 59 days into the window (2025-03-01 by default)


@dataclass(frozen=True)
class Catalog:
    """Both price lists plus the "true" 2025 prices used to price orders."""

    products_2024: pa.Table  # sku, name, category, price
    products_2025: pa.Table  # sku, name, category, unit_price (renamed!)
    sku: np.ndarray  # all skus (2024 + new), aligned with the arrays below
    true_price: np.ndarray  # float, 2025 price, never blank
    weight: np.ndarray  # float, ordering popularity
    is_new: np.ndarray  # bool, launched 2025-03-01


def _price_column(prices: np.ndarray, blank: np.ndarray) -> pa.Array:
    """Prices as 2-decimal strings, empty where blank (as a CSV export shows them)."""
    text = np.char.mod("%.2f", prices)
    return pa.array(np.where(blank, "", text), pa.string())


def make_catalog(rng: np.random.Generator) -> Catalog:
    """Build the 2024 and 2025 price lists (the latter with a renamed column)."""
    rows = _CATALOG + _NEW_2025
    sku = np.array([r[0] for r in rows])
    name = np.array([r[1] for r in rows])
    category = np.array([r[2] for r in rows])
    price_2024 = np.array([r[3] for r in rows])
    weight = np.array([r[4] for r in rows])
    is_new = np.zeros(sku.size, dtype=bool)
    is_new[len(_CATALOG) :] = True

    change = rng.random(sku.size) < 0.35
    factor = rng.choice([0.9, 0.95, 1.05, 1.1], size=sku.size)
    price_2025 = np.where(change & ~is_new, np.round(price_2024 * factor, 0) - 0.01, price_2024)
    price_2025 = np.where(price_2025 < 1, price_2024, price_2025)

    old = ~is_new
    blank_2024 = np.zeros(sku.size, dtype=bool)
    blank_2024[rng.choice(np.flatnonzero(old), 1, replace=False)] = True
    blank_2025 = np.zeros(sku.size, dtype=bool)
    blank_2025[rng.choice(np.flatnonzero(old & ~blank_2024), 2, replace=False)] = True
    blank_2025[np.flatnonzero(is_new)[-1]] = True  # a new product nobody priced yet

    p24 = pa.table(
        {
            "sku": pa.array(sku[old]),
            "name": pa.array(name[old]),
            "category": pa.array(category[old]),
            "price": _price_column(price_2024[old], blank_2024[old]),
        }
    )
    p25 = pa.table(
        {
            "sku": pa.array(sku),
            "name": pa.array(name),
            "category": pa.array(category),
            "unit_price": _price_column(price_2025, blank_2025),
        }
    )
    return Catalog(p24, p25, sku, price_2025, weight, is_new)


def order_rows(
    pop: Population, catalog: Catalog, rng: np.random.Generator, per_customer: float
) -> dict[str, list[object]]:
    """Orders as column lists of plain Python values, ready for ``executemany``.

    ``amount`` deliberately mixes float, text ("12.50"), "n/a" and NULL; some
    ``customer_id`` are NULL and ~0.4% of rows are re-synced duplicates.
    """
    plan_mult = np.array([0.8, 1.0, 1.3, 1.6])[pop.plan]
    rate = (
        per_customer
        * pop.active_fraction
        * plan_mult
        * np.exp(0.5 * pop.engagement - 0.1 * pop.intent)
    )
    c = np.repeat(np.arange(pop.n), rng.poisson(rate))
    m = c.size
    start = pop.active_start_ms[c]
    end = pop.clock.end_ms
    at = start + (rng.random(m) * (end - DAY_MS // 4 - start)).astype(np.int64)
    order = np.argsort(at, kind="stable")
    c, at = c[order], at[order]

    p = catalog.weight / catalog.weight.sum()
    item = rng.choice(catalog.sku.size, size=m, p=p)
    too_early = catalog.is_new[item] & (at < pop.clock.day(_LAUNCH_DAY))
    old_items = np.flatnonzero(~catalog.is_new)
    item = np.where(too_early, rng.choice(old_items, size=m), item)
    quantity = 1 + (rng.random(m) < 0.15).astype(np.int64) + (rng.random(m) < 0.05)
    discount = np.where(rng.random(m) < 0.1, 0.9, 1.0)
    amount = np.round(quantity * catalog.true_price[item] * discount, 2)
    status = rng.choice(
        np.array(["completed", "pending", "refunded", "cancelled"]),
        size=m,
        p=[0.86, 0.04, 0.05, 0.05],
    )
    # pending orders are recent
    status = np.where(
        (status == "pending") & (at < end - 7 * DAY_MS), "completed", status
    )

    amount_obj = np.array(amount.tolist(), dtype=object)
    r = rng.random(m)
    as_text = r < 0.03
    amount_obj[as_text] = np.char.mod("%.2f", amount[as_text]).tolist()
    amount_obj[(r >= 0.03) & (r < 0.04)] = "n/a"
    cust_obj = np.array(pop.customer_id[c].tolist(), dtype=object)
    cust_obj[rng.random(m) < 0.01] = None

    cols: dict[str, np.ndarray] = {
        "order_id": np.arange(700_001, 700_001 + m, dtype=np.int64),
        "customer_id": cust_obj,
        "sku": catalog.sku[item],
        "quantity": quantity,
        "amount": amount_obj,
        "ordered_at": np.asarray(iso_utc(at).to_pylist(), dtype=object),
        "status": status,
    }
    dup = np.sort(rng.choice(m, size=max(3, m // 250), replace=False)) if m > 3 else np.arange(m)
    return {k: np.concatenate([v, v[dup]]).tolist() for k, v in cols.items()}
