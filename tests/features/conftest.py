"""A small, fully known feature project: customers with activity rows, a profile, labels.

``fs_project`` builds it on the embedded defaults; ``fs_any`` builds it once per online store
(SQLite, then the real Redis; Redis skips on a laptop without it and fails under CI).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import tarmac
from conftest import require_server
from tarmac.project import Project, scaffold

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


DEFINITIONS = '''
from tarmac.features import *

customer = Entity("customer", join_keys=["customer_id"])

activity = FeatureView(
    name="activity", entities=[customer], source="activity", timestamp="ev", created="loaded",
    ttl="10d",
    features=[Feature("sessions", Int64), Feature("spend", Float64), Feature("channel", String)],
)

profile = FeatureView(
    name="profile", entities=[customer], source="profile", timestamp="updated",
    features=[Feature("plan", String), Feature("age", Int64)],
)

@on_demand(inputs=[activity[["spend"]]], request=[Feature("basket", Float64)],
           features=[Feature("basket_share", Float64)])
def basket_share(df):
    return {"basket_share": df["basket"] / (df["spend"] + df["basket"])}

churn = FeatureService("churn", [activity[["sessions", "spend"]], profile[["plan"]]])
scored = FeatureService("scored", [activity, basket_share])
'''


def activity_rows() -> pa.Table:
    """Customer 1: three values, one a late correction; 2: an old value; 3: nothing."""
    rows = [
        # customer, event day, loaded day, sessions, spend, channel
        (1, 1, 1, 3, 10.0, "web"),
        (1, 5, 5, 4, 20.0, "app"),
        (1, 5, 9, 5, 25.0, "app"),   # correction of day 5, recorded on day 9
        (1, 8, 8, 6, None, "web"),   # a null value is a value
        (2, 2, 2, 1, 5.0, "web"),
    ]
    return pa.table({
        "customer_id": pa.array([r[0] for r in rows], pa.int64()),
        "ev": pa.array([day(r[1]) for r in rows], TS),
        "loaded": pa.array([day(r[2]) for r in rows], TS),
        "sessions": pa.array([r[3] for r in rows], pa.int64()),
        "spend": pa.array([r[4] for r in rows], pa.float64()),
        "channel": pa.array([r[5] for r in rows], pa.string()),
    })


def profile_rows() -> pa.Table:
    return pa.table({
        "customer_id": pa.array([1, 2, 3], pa.int64()),
        "updated": pa.array([day(0), day(0), day(3)], TS),
        "plan": ["basic", "premium", "family"],
        "age": pa.array([30, 40, 50], pa.int64()),
    })


def build(root: Path, *, online_store: str | None = None) -> Project:
    scaffold(root, name=f"fs{uuid.uuid4().hex[:8]}")
    if online_store:
        text = (root / "tarmac.yaml").read_text()
        lines = [f"online_store: {online_store}" if line.startswith("online_store:") else line
                 for line in text.splitlines()]
        (root / "tarmac.yaml").write_text("\n".join(lines) + "\n")
    (root / "definitions.py").write_text(DEFINITIONS)
    p = tarmac.open(root)
    p.lake.write("activity", activity_rows())
    p.lake.write("profile", profile_rows())
    p.features.apply()
    return p


@pytest.fixture
def fs_project(tmp_path: Path) -> Iterator[Project]:
    p = build(tmp_path / "proj")
    yield p
    p.close()


REDIS_URL = "redis://127.0.0.1:6379/15"


def on_store(param: str, root: Path, make: Callable[..., Project]) -> Iterator[Project]:
    """``make(root, online_store=...)`` on the online store ``param`` names (``sqlite`` or
    ``redis``), its Redis views cleared afterwards: the body of every store-parametrized
    fixture."""
    store = None
    if param == "redis":
        require_server("Redis", "127.0.0.1", 6379)
        store = REDIS_URL
    p = make(root, online_store=store)
    yield p
    if param == "redis":
        for view in p.features.online_store.views():
            p.features.online_store.clear(view)
    p.close()


@pytest.fixture(params=["sqlite", "redis"])
def fs_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """The same project on each online store."""
    yield from on_store(request.param, tmp_path / "proj", build)


Entities = Callable[..., pa.Table]


def entities(*rows: tuple[int, float]) -> pa.Table:
    """An entity frame of (customer_id, day) rows."""
    return pa.table({"customer_id": pa.array([r[0] for r in rows], pa.int64()),
                     "at": pa.array([day(r[1]) for r in rows], TS)})
