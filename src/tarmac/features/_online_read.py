"""The online read path: the latest materialized values of some entities, with a status each.

``OnlineReader`` turns a feature request into a ``ReadPlan`` once (join keys and their
coercions, ttls, output names, the answer dicts every entity starts from) and then serves
each call with one batched read of the online store: a value is ``present``, ``missing`` (no
record for the entity), ``stale`` (older than its view's ttl: served as null, never as
present) or, for an on-demand feature, ``invalid`` (not a finite number). On-demand features
are computed from the values read by the same function the training set uses
(``_on_demand``). ``FeatureStore.online`` and, through it, ``POST /features`` and model
serving all read here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from tarmac.catalog import now_us
from tarmac.errors import UsageError, echo
from tarmac.features import registry
from tarmac.features._on_demand import online_on_demand
from tarmac.features._resolve import Resolved, resolve
from tarmac.features.keys import encode_key, key_coercer

if TYPE_CHECKING:
    from tarmac.features.online import OnlineStore

MAX_PLANS = 1024  # cached online read plans, one per distinct service or ref list


@dataclass(frozen=True)
class OnlineState:
    """What the online store holds of the registered views (``FeatureStore.online_state``)."""

    url: str
    present: bool  # the store's data is there (False: a SQLite file deleted or replaced)
    materialized: list[str]  # registered stored views with values online
    missing: list[str]  # registered stored views with nothing online

    @property
    def ready(self) -> bool:
        """Serving makes sense: the data is there, and some view is materialized when any is
        registered (a newly registered view not yet materialized does not make the server
        unready: its values answer 'missing')."""
        return self.present and (bool(self.materialized) or not self.missing)


@dataclass
class OnlineFeatures:
    """Online values: per entity, each feature's value, status and event time.

    ``rows[i]``, ``status[i]`` and ``event_time[i]`` answer for ``entities[i]``, in the order
    asked; each maps every name of ``features`` (a value is ``None`` unless its status is
    ``present``). What ``FeatureStore.online`` returns, and what ``POST /features`` and model
    serving answer from.
    """

    features: list[str]
    entities: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # feature -> value (None unless present)
    status: list[dict[str, str]]  # feature -> present | missing | stale | invalid
    event_time: list[dict[str, str | None]]  # feature -> ISO time of the value (None if absent)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape ``POST /features`` answers with."""
        return {"features": self.features, "results": [
            {"entity": ent, "values": vals, "status": st, "event_time": et}
            for ent, vals, st, et in zip(self.entities, self.rows, self.status, self.event_time,
                                         strict=True)]}


@dataclass(frozen=True)
class ViewRead:
    """How to read one view online, precomputed: keys, ttl, and the dicts every answer for an
    entity starts from (copied with ``dict.update``, not rebuilt feature by feature)."""

    name: str
    keys: list[str]
    coerce: list[Callable[[Any], Any]]
    ttl_us: int | None
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    hidden: frozenset[str]
    nulls: dict[str, None] = field(init=False)
    missing: dict[str, str] = field(init=False)
    stale: dict[str, str] = field(init=False)
    present: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nulls", dict.fromkeys(self.outputs))
        for st in ("missing", "stale", "present"):
            object.__setattr__(self, st, dict.fromkeys(self.outputs, st))


@dataclass
class ReadPlan:
    """Everything an online read of one feature request needs, precomputed once."""

    resolved: Resolved
    views: list[ViewRead]
    outputs: list[str]  # resolved.outputs, computed once
    hidden: frozenset[str] = frozenset()
    #: when worked out (monotonic seconds), and the personal outputs -> (``hash`` | ``redact``,
    #: the ``table:`` resource whose ``read:pii`` shows them raw, or None); filled by the
    #: feature store, which knows the column tags
    personal: tuple[float, dict[str, tuple[str, str | None]]] | None = None


def _iso(stamps: list[int]) -> list[str]:
    """UTC microsecond stamps as ISO 8601 text (``2026-01-31T12:00:00Z``), vectorized."""
    text = np.array(stamps, dtype="datetime64[us]").astype(str)
    return [t[:-7] + "Z" if t.endswith(".000000") else t + "Z" for t in text.tolist()]


class OnlineReader:
    """The online read path of one feature store: a read plan per distinct request (service
    name or ref list), resolved once and cached until the definitions change, then one batched
    read of the online store per call.

    Per request it costs one key coercion and encoding per entity and view and one
    ``dict.update`` per entity and view: no per-feature Python, no catalog query.
    """

    def __init__(self) -> None:
        self._plans: dict[Any, ReadPlan] = {}
        self._defs: registry.Definitions | None = None

    def plan(self, defs: registry.Definitions, features: str | Sequence[str]) -> ReadPlan:
        """The cached read plan of ``features`` against ``defs`` (resolved on first use; all
        plans are dropped when ``defs`` is another object, i.e. the registry changed)."""
        if defs is not self._defs:
            self._plans, self._defs = {}, defs
        key = features if isinstance(features, str) else tuple(features)
        found = self._plans.get(key)
        if found is not None:
            return found
        resolved = resolve(defs, features)
        views = []
        for part in resolved.parts:
            kinds = getattr(part.view, "key_types", {})
            views.append(ViewRead(
                part.view.name, part.view.join_keys,
                [key_coercer(kinds.get(k), k) for k in part.view.join_keys],
                part.ttl_us, tuple(f for f, _o, _t in part.features),
                tuple(o for _f, o, _t in part.features), part.hidden))
        plan = ReadPlan(resolved, views, resolved.outputs,
                        frozenset(h for v in views for h in v.hidden))
        if len(self._plans) >= MAX_PLANS:  # many distinct ref lists (a server): stay bounded
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def read(self, store: OnlineStore, plan: ReadPlan, entities: Sequence[Mapping[str, Any]],
             now_at: int | None = None) -> OnlineFeatures:
        """Read ``entities`` (each holding the plan's join keys) from ``store``: values older
        than their view's ttl at ``now_at`` (UTC microseconds; default now) come back null and
        ``stale``, unknown entities' null and ``missing``; on-demand features are computed from
        what was read. A missing join key raises ``UsageError`` naming the entity."""
        if now_at is None:
            now_at = now_us()
        requests = []
        for v in plan.views:
            encoded = []
            for i, entity in enumerate(entities):
                try:
                    values = [c(entity[k]) for k, c in zip(v.keys, v.coerce, strict=True)]
                except KeyError as exc:
                    raise UsageError(f"entity {i} has no '{exc.args[0]}' (needed by feature "
                                     f"view '{v.name}'; it has: "
                                     f"{echo(', '.join(map(str, entity))) or 'nothing'})"
                                     ) from None
                encoded.append(encode_key(values))
            requests.append((v.name, encoded))
        found = store.read(requests)
        rows: list[dict[str, Any]] = [{} for _ in entities]
        status: list[dict[str, str]] = [{} for _ in entities]
        times: list[dict[str, str | None]] = [{} for _ in entities]
        for v, records in zip(plan.views, found, strict=True):
            stamps = iter(_iso([r[0] for r in records if r is not None]))
            nulls = v.nulls
            for i, record in enumerate(records):
                if record is None:
                    rows[i].update(nulls)
                    status[i].update(v.missing)
                    times[i].update(nulls)
                    continue
                event_us, payload = record
                times[i].update(dict.fromkeys(v.outputs, next(stamps)))
                if v.ttl_us is not None and now_at - event_us > v.ttl_us:
                    rows[i].update(nulls)
                    status[i].update(v.stale)
                    continue
                got = orjson.loads(payload)
                rows[i].update(zip(v.outputs, map(got.get, v.features), strict=True))
                status[i].update(v.present)
        if plan.resolved.demand:
            online_on_demand(plan.resolved, entities, rows, status, times)
        if plan.hidden:
            for d in (rows, status, times):
                for r in d:
                    for h in plan.hidden:
                        r.pop(h, None)
        return OnlineFeatures(plan.outputs, [dict(e) for e in entities], rows, status, times)
