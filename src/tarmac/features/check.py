"""``tarmac features check``: are the online values the offline point-in-time values right now?

Samples entities from the views' sources, builds their training rows at one moment (event-time
semantics) and reads the same entities online at that moment; any difference is skew between
training and serving, and is listed: entity, feature, offline value, online value and status.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tarmac.features.definitions import SqlSource
from tarmac.features.offline import q

if TYPE_CHECKING:
    from tarmac.features.store import FeatureStore


@dataclass
class CheckReport:
    """The outcome: how many values were compared and which differed."""

    features: str
    at: datetime
    entities: int
    compared: int
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "at": self.at.isoformat(), "ok": self.ok,
                "entities": self.entities, "compared": self.compared,
                "mismatches": self.mismatches}


def _same(offline: Any, online: Any) -> bool:
    if offline is None or online is None:
        return offline is None and online is None
    if isinstance(offline, datetime):
        text = str(online).replace("Z", "+00:00")
        try:
            return offline == datetime.fromisoformat(text)
        except ValueError:
            return False
    if isinstance(offline, float) or isinstance(online, float):
        try:
            return math.isclose(float(offline), float(online), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return bool(offline == online)


def check(store: FeatureStore, features: str | Sequence[str], *, sample: int = 100,
          seed: int = 0) -> CheckReport:
    """Compare online and offline values for up to ``sample`` entities."""
    resolved = store.resolve(features)
    keys = resolved.join_keys
    at = datetime.now(UTC)
    from tarmac.lake.sql import query

    # entities come from the source of one view keyed by all the join keys: a lake table if
    # there is one (SQL views may be costly, and the training set below computes them anyway)
    keyed = [p.view for p in resolved.parts if set(keys) <= set(p.view.join_keys)]
    if not resolved.parts:
        return CheckReport(resolved.name, at, 0, 0)
    if not keyed:
        return CheckReport(resolved.name, at, 0, 0, [{"error": "the views of these features "
                                                      "have different join keys; check each "
                                                      "view separately"}])
    v = min(keyed, key=lambda view: isinstance(view.source, SqlSource))
    relation = f"({v.source.query})" if isinstance(v.source, SqlSource) else q(v.source)
    cols = ", ".join(q(k) for k in keys)
    base = query(store.project.lake, f"SELECT DISTINCT {cols} FROM {relation} "
                 f"WHERE {' AND '.join(f'{q(k)} IS NOT NULL' for k in keys)}")
    n = min(sample, base.num_rows)
    rng = np.random.default_rng(seed)
    picked = base.take(pa.array(np.sort(rng.choice(base.num_rows, n, replace=False))))
    entity_rows = picked.to_pylist()
    if resolved.request_fields:  # on-demand features that need request values: compare the
        features = [ref for ref in type(resolved)(  # stored ones, rather than invent requests
            resolved.name, resolved.parts, []).refs]
    frame = picked.append_column("__check_at", pa.array([at] * n, pa.timestamp("us", tz="UTC")))
    offline = store.training_set(frame, features, timestamp="__check_at").to_arrow().to_pylist()
    online = store.online(features, entity_rows, now=at)
    mismatches = []
    compared = 0
    for off, on_vals, on_status, ent in zip(offline, online.rows, online.status, entity_rows,
                                            strict=True):
        for name in online.features:
            compared += 1
            if not _same(off.get(name), on_vals.get(name)):
                mismatches.append({"entity": ent, "feature": name, "offline": off.get(name),
                                   "online": on_vals.get(name), "status": on_status.get(name)})
    return CheckReport(resolved.name, at, n, compared, mismatches)
