"""``tarmac features check``: does serving see what training saw, right now?

Two questions, for a sample of entities taken from the views' sources:

* **coverage**: what share of each feature is present online (a value), present but null, stale
  (older than the view's ttl, served as null) or missing (never materialized), against the share
  the training set had a value (a model's stored training profile with ``model=``, else an offline
  training set of the same entities at the end of the data). A model trained on values and served
  nulls scores every customer alike, and nothing else would say so: a feature whose coverage drops
  by more than ``max_drop``, or an online read with no value at all, fails the check.
* **skew**: the entities' training rows built at this moment (event-time semantics) against the
  same entities read online at this moment; every difference is listed. Two nulls are not an
  agreement (both sides may have lost the value): they are counted apart, never as a match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.features.definitions import SqlSource
from tarmac.features.offline import q

if TYPE_CHECKING:
    from tarmac.features.store import FeatureStore

MAX_DROP = 0.25  # default: fail when a feature's coverage falls by more than 25 points


@dataclass
class Coverage:
    """One feature's online shares (of the sampled entities) against training's coverage."""

    feature: str
    present: float  # a non-null value online
    null: float  # present online, but the stored value is null
    stale: float  # older than the view's ttl: served as null
    missing: float  # no online record
    training: float | None  # share with a value in the training set (None: not known)

    @property
    def drop(self) -> float:
        """How much less coverage serving has than training had (0 when not lower)."""
        return max(0.0, (self.training or 0.0) - self.present)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "present": round(self.present, 4),
                "null": round(self.null, 4), "stale": round(self.stale, 4),
                "missing": round(self.missing, 4),
                "training": None if self.training is None else round(self.training, 4),
                "drop": round(self.drop, 4)}


@dataclass
class CheckReport:
    """The outcome: coverage per feature, and the values that differ."""

    features: str
    at: datetime
    entities: int
    compared: int  # values compared (both sides)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    both_null: int = 0  # compared values null on both sides: not verified, not agreement
    coverage: list[Coverage] = field(default_factory=list)
    baseline: str = ""  # where the training coverage comes from
    max_drop: float = MAX_DROP

    @property
    def agreed(self) -> int:
        return self.compared - len(self.mismatches) - self.both_null

    @property
    def empty(self) -> bool:
        """Entities were sampled but not one feature value is present online."""
        return bool(self.entities and self.coverage) and not any(c.present for c in
                                                                  self.coverage)

    @property
    def dropped(self) -> list[Coverage]:
        """Features whose online coverage fell by more than ``max_drop``."""
        return [c for c in self.coverage if c.drop > self.max_drop + 1e-12]

    @property
    def problems(self) -> list[str]:
        """Why the check fails, one line each (empty when it passes)."""
        out = []
        if not self.compared and not self.mismatches:  # nothing checked is not "consistent"
            out.append("nothing to compare: " + (
                f"none of the {self.entities:,} sampled entities has a stored feature"
                if self.entities else "the features' source holds no entity keys"))
        if self.empty:
            out.append(f"online is empty: none of the {self.entities:,} sampled entities has a "
                       f"value for any feature (stale or never materialized)")
        for c in self.dropped:
            out.append(f"{c.feature}: {c.present:.0%} present online against {c.training:.0%} "
                       f"in training (stale {c.stale:.0%}, missing {c.missing:.0%})")
        if self.mismatches:
            out.append(f"{len(self.mismatches)} value(s) differ between offline and online")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "at": self.at.isoformat(), "ok": self.ok,
                "entities": self.entities, "compared": self.compared, "agreed": self.agreed,
                "both_null": self.both_null, "baseline": self.baseline,
                "max_drop": self.max_drop, "empty": self.empty, "problems": self.problems,
                "coverage": [c.to_dict() for c in self.coverage],
                "mismatches": self.mismatches}


def _same(offline: Any, online: Any) -> bool:
    if offline is None or online is None:
        return False  # two nulls are counted apart by the caller; one null is a difference
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


def model_coverage(store: FeatureStore, model: str) -> tuple[dict[str, float], str]:
    """Per feature, the share of a model's training rows that had a value (from the profile
    stored with the version: the champion, else the latest)."""
    registry = store.project.models
    champion = registry.aliases(model).get(model, {}).get("champion")
    record = registry.version(model, champion)  # unknown model: a UsageError naming it
    profile = record.profile
    shares = {name: 1 - s["nulls"] / s["count"] for name, s in profile.items()
              if s.get("count")}
    return shares, f"model {model} v{record.version} (training profile)"


def check(store: FeatureStore, features: str | Sequence[str], *, sample: int = 100,
          seed: int = 0, model: str | None = None, max_drop: float = MAX_DROP) -> CheckReport:
    """Coverage and skew for up to ``sample`` entities (see the module's docstring)."""
    resolved = store.resolve(features)
    keys = resolved.join_keys
    at = datetime.now(UTC)
    from tarmac.lake.sql import query

    # entities come from the source of one view keyed by all the join keys: a lake table if
    # there is one (SQL views may be costly, and the training set below computes them anyway)
    keyed = [p.view for p in resolved.parts if set(keys) <= set(p.view.join_keys)]
    if not resolved.parts:
        return CheckReport(resolved.name, at, 0, 0, max_drop=max_drop)
    if not keyed:
        return CheckReport(resolved.name, at, 0, 0, [{"error": "the views of these features "
                                                      "have different join keys; check each "
                                                      "view separately"}], max_drop=max_drop)
    v = min(keyed, key=lambda view: isinstance(view.source, SqlSource))
    relation = f"({v.source.query})" if isinstance(v.source, SqlSource) else q(v.source)
    cols = ", ".join(q(k) for k in keys)
    # one pass over the source: the entities, and the end of the data (training's moment)
    base = query(store.project.lake, f"SELECT {cols}, max({q(v.timestamp)}) AS __last FROM "
                 f"{relation} WHERE {' AND '.join(f'{q(k)} IS NOT NULL' for k in keys)} "
                 f"GROUP BY ALL ORDER BY {cols}")
    end = pc.max(base.column("__last")).as_py() if base.num_rows else None
    base = base.drop_columns(["__last"])
    n = min(sample, base.num_rows)
    rng = np.random.default_rng(seed)
    picked = base.take(pa.array(np.sort(rng.choice(base.num_rows, n, replace=False))))
    entity_rows = picked.to_pylist()
    if resolved.request_fields:  # on-demand features that need request values: compare the
        features = [ref for ref in type(resolved)(  # stored ones, rather than invent requests
            resolved.name, resolved.parts, []).refs]
    offline = _offline(store, picked, features, at)
    from tarmac.features.store import OnlineFeatures

    if store.online_store.present():
        online = store.online(features, entity_rows, now=at)
    else:  # never materialized (no online store yet): every value is missing online
        names = [c for c in (offline[0] if offline else {})
                 if c not in picked.column_names and c != "__check_at"]
        online = OnlineFeatures(names, entity_rows, [dict.fromkeys(names) for _ in entity_rows],
                                [dict.fromkeys(names, "missing") for _ in entity_rows],
                                [dict.fromkeys(names) for _ in entity_rows])
    report = CheckReport(resolved.name, at, n, 0, max_drop=max_drop)
    for off, on_vals, on_status, ent in zip(offline, online.rows, online.status, entity_rows,
                                            strict=True):
        for name in online.features:
            report.compared += 1
            a, b = off.get(name), on_vals.get(name)
            if a is None and b is None:
                report.both_null += 1
            elif not _same(a, b):
                report.mismatches.append({"entity": ent, "feature": name, "offline": a,
                                          "online": b, "status": on_status.get(name)})
    if model is not None:
        training, report.baseline = model_coverage(store, model)
    else:
        training, report.baseline = _offline_coverage(store, picked, features, end,
                                                      online.features)
    report.coverage = _coverage(online.features, online.rows, online.status, training)
    return report


def _offline(store: FeatureStore, picked: pa.Table, features: Any,
             at: datetime) -> list[dict[str, Any]]:
    """The entities' training rows, all at ``at``."""
    frame = picked.append_column("__check_at", pa.array([at] * picked.num_rows,
                                                        pa.timestamp("us", tz="UTC")))
    return store.training_set(frame, features, timestamp="__check_at").to_arrow().to_pylist()


def _offline_coverage(store: FeatureStore, picked: pa.Table, features: Any, end: Any,
                      names: list[str]) -> tuple[dict[str, float], str]:
    """Coverage of a training set of the same entities at the end of the data (``end``, the
    latest event time in the sampled view's source): what a model trained on it would see."""
    if isinstance(end, date) and not isinstance(end, datetime):  # a DATE event time
        end = datetime.combine(end, time(), UTC)
    if not isinstance(end, datetime) or not picked.num_rows:
        return {}, "offline (no data)"
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    rows = _offline(store, picked, features, end)
    shares = {f: sum(r.get(f) is not None for r in rows) / len(rows) for f in names}
    return shares, f"offline training set of the same entities at {end.isoformat()}"


def _coverage(names: list[str], rows: list[dict[str, Any]], status: list[dict[str, str]],
              training: dict[str, float]) -> list[Coverage]:
    n = max(len(rows), 1)
    out = []
    for f in names:
        counts = {"present": 0, "null": 0, "stale": 0, "missing": 0}
        for vals, st in zip(rows, status, strict=True):
            s = st.get(f, "missing")
            if s == "present" and vals.get(f) is None:
                s = "null"
            counts[s if s in counts else "missing"] += 1
        out.append(Coverage(f, counts["present"] / n, counts["null"] / n, counts["stale"] / n,
                            counts["missing"] / n, training.get(f)))
    return out
