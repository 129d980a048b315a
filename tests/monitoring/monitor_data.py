"""Served traffic for monitor tests: the ``risk`` model of tests/models, predictions written to
the ``predictions`` lake table as the serving log writes them, and late labels.

``traffic(p, start, n, shift=..., flip=...)`` scores ``n`` new customers whose signals may be
shifted (``shift`` added to ``a``: input drift) and whose outcomes may follow another rule
(``flip``: the world changed, so the model decays), logs them in ``[start, start + 1h)`` and
returns the labels that will arrive later (by prediction id, and by customer and time).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from tarmac.project import Project
from tarmac.serving.predlog import SCHEMA

TS = pa.timestamp("us", tz="UTC")


def traffic(p: Project, start: datetime, n: int = 1500, *, seed: int = 0, shift: float = 0.0,
            flip: bool = False, span: timedelta = timedelta(hours=1), error_every: int = 0,
            latency_ms: float = 5.0, status: str = "present", first_id: int = 10_000,
            version: int | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n) + shift
    b = rng.normal(size=n)
    region = rng.choice(["north", "south", "east"], size=n)
    model = p.models.get("risk", version)
    frame = pa.table({"a": a, "b": b, "region": region}).to_pandas()
    scores = model.predict_scores(frame)
    times = [start + span * float(x) for x in np.sort(rng.random(n))]
    ids = [uuid.uuid4().hex for _ in range(n)]
    customers = np.arange(first_id, first_id + n)
    logit = (-1.8 * a + 1.2 * b - 0.5) if flip else (1.8 * a - 1.2 * b - 0.5)
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    rows = {
        "id": ids, "request_id": ids, "time": pa.array(times, TS),
        "endpoint": ["risk"] * n, "model": ["risk"] * n,
        "version": [model.version] * n, "role": ["champion"] * n, "shadow": [False] * n,
        "features": [json.dumps({"a": float(x), "b": float(y), "region": str(r)})
                     for x, y, r in zip(a, b, region, strict=True)],
        "feature_times": [None] * n,
        "feature_status": [json.dumps({"a": status, "b": "present", "region": "present"})] * n,
        "request": [json.dumps({"customer_id": int(c)}) for c in customers],
        "score": scores.astype(float),
        "label": [json.dumps(int(s >= 0.5)) for s in scores],
        "latency_ms": rng.gamma(2.0, latency_ms / 2, size=n),
        "error": [("boom" if error_every and i % error_every == 0 else None)
                  for i in range(n)],
    }
    table = pa.table({f.name: pa.array(rows[f.name], f.type) if f.name in rows else
                      pa.nulls(n, f.type) for f in SCHEMA}, schema=SCHEMA)
    p.lake.write("predictions", table)
    return pa.table({"prediction_id": ids, "customer_id": pa.array(customers, pa.int64()),
                     "observed_at": pa.array([t + timedelta(hours=2) for t in times], TS),
                     "outcome": pa.array(churned)})
