"""A small project with a learnable model: 600 customers whose risk follows two signals.

``signals`` holds one feature row per customer (day 0); ``labels`` observes each customer on
day 10 and was learned over days 11-40 (``known_at``: the holdout is the latest fifth). The
model ``risk`` is a logistic regression; ``MODEL`` is the definitions file's model part, which
tests edit to declare other gates or training functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import make_project
from tarmac.project import Project

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
N = 600

FEATURES = '''
from tarmac.features import *
from tarmac.gates import *
from tarmac.models import TrainingData, label, model, time_split

customer = Entity("customer", join_keys=["customer_id"])
signals = FeatureView(
    name="signals", entities=[customer], source="signals", timestamp="ev",
    features=[Feature("a", Float64), Feature("b", Float64), Feature("region", String)],
)
risk_features = FeatureService("risk", [signals])
'''

LOGISTIC = '''
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

@model(name="risk", features="risk",
       label=label("labels", "churned", timestamp="observed"),
       split=time_split(test="last 20%", by="known_at"),
       gates=GATES,
       params={"C": 1.0, "only": None})
def train(data: TrainingData):
    keep = data.param("only").split(",") if data.param("only") else data.features
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), [f for f in data.categorical if f in keep]),
        ("passthrough", [f for f in data.numeric if f in keep]))
    return make_pipeline(encode, LogisticRegression(C=data.param("C"))).fit(data.X, data.y)
'''

DEFAULT_GATES = ('[metric("roc_auc") >= 0.7, no_regression("roc_auc", tolerance=0.01), '
                 'slice_metric("roc_auc", by="region") >= 0.5, no_nulls_in_predictions()]')


def definitions(gates: str = DEFAULT_GATES, model: str = LOGISTIC) -> str:
    return FEATURES + "\nGATES = " + gates + "\n" + model


def signal_rows(n: int = N, seed: int = 0, start: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "customer_id": pa.array(np.arange(start, start + n), pa.int64()),
        "ev": pa.array([T0] * n, TS),
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "region": pa.array(rng.choice(["north", "south", "east"], size=n)),
    })


def label_rows(signals: pa.Table, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = signals.num_rows
    a = signals.column("a").to_numpy()
    b = signals.column("b").to_numpy()
    p = 1 / (1 + np.exp(-(1.8 * a - 1.2 * b - 0.5)))
    return pa.table({
        "customer_id": signals.column("customer_id"),
        "observed": pa.array([T0 + timedelta(days=10)] * n, TS),
        "known_at": pa.array([T0 + timedelta(days=11 + int(d)) for d in
                              rng.integers(0, 30, size=n)], TS),
        "churned": pa.array((rng.random(n) < p).astype(np.int64)),
    })


def build(root: Path, *, catalog: str | None = None, text: str | None = None) -> Project:
    p = make_project(root, catalog=catalog)
    (root / "definitions.py").write_text(text or definitions())
    signals = signal_rows()
    p.lake.write("signals", signals)
    p.lake.write("labels", label_rows(signals))
    p.features.apply()
    return p


@pytest.fixture
def mproject(tmp_path: Path) -> Iterator[Project]:
    p = build(tmp_path / "proj")
    yield p
    p.close()


@pytest.fixture(params=["sqlite", "postgres"])
def mproject_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """The same project on each catalog: SQLite, then the real PostgreSQL."""
    catalog = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    p = build(tmp_path / "proj", catalog=catalog)
    yield p
    p.close()


def redefine(p: Project, text: str) -> None:
    """Replace the project's definitions file (models are read from it on every call)."""
    (p.root / "definitions.py").write_text(text)
