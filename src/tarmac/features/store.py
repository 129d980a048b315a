"""``p.features``: the feature store of a project, offline and online.

Offline, ``training_set`` joins features onto an entity frame point-in-time-correctly (see
``offline``). Online, ``online`` reads the latest materialized values of entities, marks each
value present, missing or stale (older than the view's ttl: served as null, never as present),
and computes on-demand features with the same function the training set used. The online path
never queries the catalog per request: registered definitions are cached and re-read only when
the registry changes (checked at most every ``REFRESH_S`` seconds).

Example::

    fs = tarmac.open(".").features
    train = fs.training_set("SELECT customer_id, label_time, churned FROM labels", "churn",
                            timestamp="label_time", label="churned").to_pandas()
    fs.online("churn", [{"customer_id": 42}]).rows[0]["sessions_7d"]
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from tarmac.catalog import features as fcat
from tarmac.catalog import now_us
from tarmac.errors import OnDemandError, TarmacError, UsageError, echo
from tarmac.features import registry
from tarmac.features.definitions import (
    SQL_TYPES,
    TYPES,
    FeatureSelection,
    FeatureView,
    OnDemandFeatureView,
    SqlSource,
    suggest,
)
from tarmac.features.keys import encode_key, key_coercer
from tarmac.features.offline import (
    BATCH_ROWS,
    ROW,
    Semantics,
    ViewQuery,
    check_entity_schema,
    fine_times,
    indexed,
    prepare_connection,
    q,
    retrieval_sql,
    tiebreak_columns,
)

if TYPE_CHECKING:
    import pandas as pd

    from tarmac.features.materialize import MaterializeProgress, MaterializeResult
    from tarmac.features.online import OnlineStore
    from tarmac.project import Project

REFRESH_S = 5.0
MAX_PLANS = 1024  # cached online read plans, one per distinct service or ref list
EntityFrame = Any  # pandas.DataFrame | pa.Table | pa.RecordBatchReader | SQL text over the lake


# -- what a request for features resolves to ------------------------------------------------


@dataclass(frozen=True)
class ViewPart:
    """The features one stored view contributes: (feature, output name, feature type)."""

    view: FeatureView
    features: list[tuple[str, str, str]]
    hidden: frozenset[str] = frozenset()  # outputs only an on-demand view needs

    @property
    def ttl_us(self) -> int | None:
        s = self.view.ttl_seconds
        return None if s is None else int(s * 1_000_000)


@dataclass(frozen=True)
class DemandPart:
    """An on-demand view: its input outputs, request columns and the outputs it makes."""

    view: OnDemandFeatureView
    inputs: dict[str, str]  # feature name the function sees -> output column holding it
    features: list[tuple[str, str, str]]  # (feature, output name, feature type)


@dataclass(frozen=True)
class Resolved:
    """A service or list of refs resolved against the registry."""

    name: str
    parts: list[ViewPart]
    demand: list[DemandPart]

    @property
    def outputs(self) -> list[str]:
        """The feature columns the caller sees, in order."""
        out = [o for p in self.parts for _, o, _ in p.features if o not in p.hidden]
        return out + [o for d in self.demand for _, o, _ in d.features]

    @property
    def refs(self) -> dict[str, str]:
        """``view:feature`` -> type, for what the caller sees (recorded as consumed)."""
        refs = {f"{p.view.name}:{f}": t for p in self.parts for f, o, t in p.features
                if o not in p.hidden}
        refs.update({f"{d.view.name}:{f}": t for d in self.demand for f, _, t in d.features})
        return refs

    @property
    def request_fields(self) -> list[str]:
        return [f.name for d in self.demand for f in d.view.request]

    @property
    def join_keys(self) -> list[str]:
        keys: list[str] = []
        for p in self.parts:
            keys.extend(k for k in p.view.join_keys if k not in keys)
        return keys


# -- training sets ---------------------------------------------------------------------------


class TrainingSet:
    """A point-in-time-correct training frame, computed when first read (streamed by DuckDB)."""

    def __init__(self, store: FeatureStore, resolved: Resolved, entities: EntityFrame,
                 entity_schema: pa.Schema, *, timestamp: str, label: str | None,
                 semantics: Semantics, as_of: Mapping[str, int] | None = None) -> None:
        self._store = store
        self.as_of = dict(as_of or {})
        self.resolved = resolved
        self._entities = entities
        self.entity_schema = entity_schema
        self.timestamp = timestamp
        self.label = label
        self.semantics = semantics
        self.inputs: dict[str, int] = {}  # lake table -> version read (once computed)
        self._table: pa.Table | None = None

    @property
    def features(self) -> list[str]:
        return self.resolved.outputs

    def batches(self) -> pa.RecordBatchReader:
        """Stream the rows (a second call recomputes; ``to_arrow`` keeps the result)."""
        return self._store._retrieve(self)

    def to_arrow(self) -> pa.Table:
        if self._table is None:
            self._table = self.batches().read_all()
        return self._table

    def to_pandas(self) -> pd.DataFrame:
        return self.to_arrow().to_pandas()

    def save(self, name: str, *, description: str | None = None) -> int:
        """Store it as a lake table (lineage: source tables -> this table) and record that it
        consumes its features, so ``tarmac apply`` will not silently break it. Returns the
        table version written."""
        project = self._store.project
        params = {"features": self.resolved.name, "semantics": self.semantics,
                  "timestamp": self.timestamp, "label": self.label}
        with project.ledger.run(f"features.training_set:{name}", params=params) as run:
            data = self._table if self._table is not None else self.batches()
            for table, version in self.inputs.items():  # computed before the run, maybe
                run.add_input(table, version)
            result = project.lake.write(
                name, data, mode="overwrite", replace_schema=True,
                description=description or f"training set: {self.resolved.name} "
                                           f"({self.semantics} time) as of {self.timestamp}")
        refs = self.resolved.refs
        project.ledger.commit(
            "features.consume", f"training_set:{name}", {"refs": sorted(refs)},
            change=lambda conn: fcat.set_consumer(conn, f"training_set:{name}", refs))
        return result.version


# -- online reads ----------------------------------------------------------------------------


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
    """Online values: per entity, each feature's value, status and event time."""

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
class _ViewRead:
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
class _Plan:
    """Everything an online read of one feature request needs, precomputed once."""

    resolved: Resolved
    views: list[_ViewRead]
    outputs: list[str]  # resolved.outputs, computed once
    hidden: frozenset[str] = frozenset()


def _iso(stamps: list[int]) -> list[str]:
    """UTC microsecond stamps as ISO 8601 text (``2026-01-31T12:00:00Z``), vectorized."""
    text = np.array(stamps, dtype="datetime64[us]").astype(str)
    return [t[:-7] + "Z" if t.endswith(".000000") else t + "Z" for t in text.tolist()]


# -- the store -------------------------------------------------------------------------------


class FeatureStore:
    """A project's feature store: definitions, training sets, materialization, online reads."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._lock = threading.Lock()
        self._defs: registry.Definitions | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked_at = 0.0
        self._plans: dict[Any, _Plan] = {}
        self._online: OnlineStore | None = None

    # -- definitions --------------------------------------------------------------------------

    @property
    def definitions_path(self) -> Any:
        return self.project.root / registry.DEFINITIONS_FILE

    def declared(self) -> registry.Definitions:
        """What ``definitions.py`` declares now (not necessarily registered)."""
        return registry.load(self.definitions_path)

    def plan(self) -> registry.Plan:
        return registry.plan(self.project, self.declared())

    def apply(self, *, force: bool = False, dry_run: bool = False,
              reason: str | None = None) -> registry.Plan:
        """Register ``definitions.py`` (see ``tarmac apply``)."""
        result = registry.apply(self.project, self.declared(), force=force, dry_run=dry_run,
                                reason=reason)
        if result.applied:
            self._invalidate()
        return result

    def registered(self) -> registry.Definitions:
        """The registered definitions, cached; re-read when the registry changed."""
        now = time.monotonic()
        if self._defs is not None and now - self._checked_at < REFRESH_S:
            return self._defs
        with self._lock:
            stamp = fcat.registry_stamp(self.project.catalog)
            if self._defs is None or stamp != self._stamp:
                current = fcat.current_definitions(self.project.catalog)
                live: dict[str, OnDemandFeatureView] = {}
                if any(k == "on_demand" for k, _ in current) and self.definitions_path.exists():
                    try:
                        live = self.declared().on_demand
                    except UsageError:  # an unapplied, broken edit must not stop serving:
                        live = {}       # its on-demand views refuse to run, the rest serve
                self._defs = registry.from_specs(current, live)
                self._stamp = stamp
                self._plans = {}
            self._checked_at = now
        return self._defs

    def _invalidate(self) -> None:
        self._defs, self._stamp, self._checked_at, self._plans = None, None, 0.0, {}

    def resolve(self, features: str | Sequence[str], *,
                definitions: registry.Definitions | None = None) -> Resolved:
        """A service name, or refs (``view:feature`` or ``view`` for all of its features);
        ``definitions`` resolves against other definitions than the registered ones (a
        reproduction uses the versions its run recorded)."""
        defs = definitions or self.registered()
        if isinstance(features, str):
            service = defs.services.get(features)
            if service is None:
                if ":" in features or defs.view(features) is not None:
                    return self.resolve([features], definitions=definitions)
                raise UsageError(f"no feature service named '{echo(features)}'"
                                 + suggest(features, [*defs.services, *defs.views]))
            selections, name = service.selections(), service.name
        else:
            # A ref named twice (or 'view' next to 'view:feature') is asked once: the same
            # feature is one output column, stored or on-demand alike.
            refs = list(dict.fromkeys(features))
            chosen: dict[str, dict[str, None]] = {}  # view -> its features, in order
            for ref in refs:
                view_name, _, feat = ref.partition(":")
                view = defs.view(view_name)
                if view is None:
                    raise UsageError(f"no feature view named '{echo(view_name)}' (in "
                                     f"'{echo(ref)}')"
                                     + suggest(view_name, [*defs.views, *defs.on_demand]))
                names = (feat,) if feat else tuple(f.name for f in view.features)
                for n in names:
                    view.feature(n)
                chosen.setdefault(view_name, {}).update(dict.fromkeys(names))
            selections = [FeatureSelection(defs.view(v), tuple(ns))  # type: ignore[arg-type]
                          for v, ns in chosen.items()]
            name = ",".join(refs)
        registry.output_names(selections, f"features '{echo(name)}'")  # refuses colliding names
        by_view: dict[str, list[tuple[str, str, str]]] = {}
        demand: list[DemandPart] = []
        for sel in selections:
            if isinstance(sel.view, OnDemandFeatureView):
                feats = [(n, sel.output(n), sel.view.feature(n).dtype) for n in sel.names]
                demand.append(DemandPart(sel.view, {}, feats))
                continue
            view = defs.views[sel.view.name]
            by_view.setdefault(view.name, []).extend(
                (n, sel.output(n), view.feature(n).dtype) for n in sel.names)
        hidden: dict[str, set[str]] = {}
        for i, part in enumerate(demand):
            inputs: dict[str, str] = {}
            for ref in part.view.input_refs:
                view_name, feat = ref.split(":")
                taken = [o for f, o, _ in by_view.get(view_name, []) if f == feat]
                if taken:
                    inputs[feat] = taken[0]
                    continue
                hidden_name = f"__{view_name}__{feat}"
                view = defs.views.get(view_name)
                if view is None:
                    raise UsageError(f"on-demand view '{part.view.name}' reads '{ref}', which "
                                     "is not registered", hint="run `tarmac apply`")
                by_view.setdefault(view_name, []).append(
                    (feat, hidden_name, view.feature(feat).dtype))
                hidden.setdefault(view_name, set()).add(hidden_name)
                inputs[feat] = hidden_name
            demand[i] = DemandPart(part.view, inputs, part.features)
        parts = [ViewPart(defs.views[v], feats, frozenset(hidden.get(v, ())))
                 for v, feats in by_view.items()]
        return Resolved(name, parts, demand)

    # -- offline -----------------------------------------------------------------------------

    def training_set(self, entities: EntityFrame, features: str | Sequence[str], *,
                     timestamp: str | None = None, label: str | None = None,
                     semantics: Semantics = "event",
                     as_of: Mapping[str, int] | None = None,
                     definitions: registry.Definitions | None = None) -> TrainingSet:
        """One row per entity row, each feature as of that row's ``timestamp``.

        ``entities`` is a pandas or Arrow frame (or SQL over the lake) holding the join keys and
        a time-zone-aware timestamp column (found by itself when there is only one).
        ``semantics='knowledge'`` also hides values recorded after the row's time. ``as_of``
        pins lake tables to versions (time travel: a past training set, rebuilt exactly).

        Example: the ``risk`` feature service's values as of each label's observation time.

        >>> ts = p.features.training_set(
        ...     "SELECT customer_id, observed, churned FROM labels ORDER BY customer_id LIMIT 3",
        ...     "risk", label="churned")
        >>> ts.features, ts.timestamp
        (['a', 'b', 'region'], 'observed')
        >>> frame = ts.to_arrow()
        >>> frame.column_names, frame.num_rows
        (['customer_id', 'observed', 'churned', 'a', 'b', 'region'], 3)
        """
        resolved = self.resolve(features, definitions=definitions)
        schema = _entity_schema(self, entities)
        if timestamp is None:
            stamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
            if len(stamps) != 1:
                raise UsageError(
                    "say which column of the entity frame is its timestamp: "
                    + ("it has none" if not stamps else f"it has {', '.join(stamps)}"),
                    hint="training_set(..., timestamp='label_time')")
            timestamp = stamps[0]
        check_entity_schema(schema, timestamp, resolved.join_keys)
        if label is not None and label not in schema.names:
            raise UsageError(f"the label column '{label}' is not in the entity frame (its "
                             f"columns: {', '.join(schema.names)})")
        clash = sorted(set(resolved.outputs) & set(schema.names))
        if clash:
            raise UsageError(f"the entity frame already has column(s) {', '.join(clash)}, "
                             "which are also feature names",
                             hint="rename them, or select the features with a prefix")
        for part in resolved.parts:
            self._check_keys(part.view, schema)
        missing = [f for f in resolved.request_fields if f not in schema.names]
        if missing:
            raise UsageError(f"on-demand features need request column(s) {', '.join(missing)} "
                             "in the entity frame")
        return TrainingSet(self, resolved, entities, schema, timestamp=timestamp, label=label,
                           semantics=semantics, as_of=as_of)

    def _check_keys(self, view: FeatureView, schema: pa.Schema) -> None:
        kinds = getattr(view, "key_types", {})
        for key in view.join_keys:
            got = schema.field(key).type
            want = kinds.get(key)
            numeric = pa.types.is_integer(got)
            if (want == "int64" and not numeric) or (want == "string" and numeric):
                raise UsageError(f"entity frame column '{key}' holds {got} but feature view "
                                 f"'{view.name}' keys it by {want}",
                                 hint=f"cast the column, e.g. df['{key}'].astype(...)")

    def _retrieve(self, ts: TrainingSet) -> pa.RecordBatchReader:
        from tarmac.lake.sql import _sql_error, connect

        views = []
        for part in ts.resolved.parts:  # the source may have changed since apply
            v = part.view
            schema = registry.source_schema(self.project, v)
            registry.check_source(v, schema)
            relation = (f"({v.source.query})" if isinstance(v.source, SqlSource)
                        else q(v.source))
            views.append(ViewQuery(v.name, relation, v.join_keys, v.timestamp, v.created,
                                   part.ttl_us,
                                   [(f, o, SQL_TYPES[t]) for f, o, t in part.features],
                                   fine=fine_times(schema, v.timestamp, v.created),
                                   tiebreak=tiebreak_columns(v)))
        entity = "__entity"
        sql = retrieval_sql(entity, ts.entity_schema.names, ts.timestamp, views, ts.semantics,
                            fine=fine_times(ts.entity_schema, ts.timestamp))
        binding = sql  # what connect() binds: the views' lake tables, and the entity query's
        if isinstance(ts._entities, str):
            binding = sql.replace(entity, f"({ts._entities})", 1)
        ts.inputs = {}  # the version of each lake table read, as bound
        con = connect(self.project.lake, binding, bound=ts.inputs, as_of=ts.as_of or None)
        try:
            prepare_connection(con)
            if isinstance(ts._entities, str):  # SQL: numbered by DuckDB, in its own order
                con.execute(f"CREATE TEMP TABLE {entity} AS SELECT *, row_number() OVER () - 1 "
                            f"AS {ROW} FROM ({ts._entities})")
            else:
                con.register(entity, indexed(_entity_reader(ts._entities)))
            reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
        except Exception as exc:
            con.close()
            if isinstance(exc, UsageError):
                raise
            raise _sql_error(self.project.lake, exc) from None
        hidden = {h for p in ts.resolved.parts for h in p.hidden}
        keep = [n for n in reader.schema.names if n not in hidden]
        demand = ts.resolved.demand

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for batch in reader:
                    if demand:
                        batch = _with_on_demand(batch, demand)
                    yield batch.select(keep + [o for d in demand for _, o, _ in d.features])
            finally:
                con.close()

        schema = reader.schema
        for d in demand:
            for _, out, typ in d.features:
                schema = schema.append(pa.field(out, TYPES[typ]))
        out_schema = pa.schema([schema.field(n) for n in
                                keep + [o for d in demand for _, o, _ in d.features]])
        return pa.RecordBatchReader.from_batches(out_schema, batches())

    # -- materialization ---------------------------------------------------------------------

    @property
    def online_store(self) -> OnlineStore:
        if self._online is None:
            from tarmac.features.online import open_online_store

            # create=False: reading never creates the store (a deleted SQLite file stays
            # absent and online_state says so); materialize's first write creates it
            self._online = open_online_store(self.project.config.online_store,
                                             namespace=self.project.name,
                                             root=self.project.root, create=False)
        return self._online

    def online_state(self) -> OnlineState:
        """Which registered stored views have materialized values in the online store (a
        checkpoint or records) and which do not; ``present`` is False when the store's data
        is gone (a SQLite file deleted or replaced). What a server's ``/ready`` reads."""
        defs = self.registered()
        online = self.online_store
        present = online.present()
        there = set(online.views()) if present else set()
        names = sorted(defs.views)
        return OnlineState(online.url, present, [v for v in names if v in there],
                           [v for v in names if v not in there])

    def materialize(self, views: Sequence[str] | None = None, *, since: datetime | str | None
                    = None, full: bool = False,
                    progress: Callable[[MaterializeProgress], None] | None = None,
                    ) -> list[MaterializeResult]:
        """Copy the latest value of every entity from the offline sources to the online store:
        incrementally (only data files added since the last run) unless ``full``; ``since``
        limits it to rows with an event time at or after that time.

        Example: the first run copies every entity, a rerun with no new data skips.

        >>> [(r.view, r.mode, r.entities) for r in p.features.materialize()]
        [('signals', 'full', 600)]
        >>> [(r.view, r.mode, r.entities) for r in p.features.materialize()]
        [('signals', 'skipped', 0)]
        """
        from tarmac.features.materialize import materialize

        return materialize(self, views, since=since, full=full, progress=progress)

    # -- online ------------------------------------------------------------------------------

    def _plan(self, features: str | Sequence[str]) -> _Plan:
        key = features if isinstance(features, str) else tuple(features)
        self.registered()  # refresh the cache (and drop old plans) if the registry changed
        found = self._plans.get(key)
        if found is not None:
            return found
        resolved = self.resolve(features)
        views = []
        for part in resolved.parts:
            kinds = getattr(part.view, "key_types", {})
            views.append(_ViewRead(
                part.view.name, part.view.join_keys,
                [key_coercer(kinds.get(k), k) for k in part.view.join_keys],
                part.ttl_us, tuple(f for f, _o, _t in part.features),
                tuple(o for _f, o, _t in part.features), part.hidden))
        plan = _Plan(resolved, views, resolved.outputs,
                     frozenset(h for v in views for h in v.hidden))
        if len(self._plans) >= MAX_PLANS:  # many distinct ref lists (a server): stay bounded
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def online(self, features: str | Sequence[str], entities: Sequence[Mapping[str, Any]], *,
               now: datetime | None = None) -> OnlineFeatures:
        """The latest values of each entity's features; a value older than its view's ttl is
        returned as null with status ``stale``, an unknown entity's as null with ``missing``.

        Example, after ``materialize``:

        >>> _ = p.features.materialize()
        >>> got = p.features.online("risk", [{"customer_id": 1}, {"customer_id": 999_999}])
        >>> got.features, got.rows[0]["region"]
        (['a', 'b', 'region'], 'south')
        >>> got.status[1]
        {'a': 'missing', 'b': 'missing', 'region': 'missing'}
        """
        plan = self._plan(features)
        now_at = now_us() if now is None else int(now.timestamp() * 1_000_000)
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
        found = self.online_store.read(requests)
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
            _online_on_demand(plan, entities, rows, status, times)
        if plan.hidden:
            for d in (rows, status, times):
                for r in d:
                    for h in plan.hidden:
                        r.pop(h, None)
        return OnlineFeatures(plan.outputs, [dict(e) for e in entities], rows, status, times)

    # -- inspection --------------------------------------------------------------------------

    def check(self, features: str | Sequence[str], *, sample: int = 100, seed: int = 0,
              model: str | None = None, max_drop: float = 0.25) -> CheckReport:
        """Sample entities: each feature's online coverage (present, null, stale, missing)
        against the training set's (``model``'s stored profile, else offline), and online values
        against the offline point-in-time values at the same moment (see ``features.check``)."""
        from tarmac.features.check import check

        return check(self, features, sample=sample, seed=seed, model=model, max_drop=max_drop)

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None


# -- helpers ---------------------------------------------------------------------------------


def _entity_schema(store: FeatureStore, entities: EntityFrame) -> pa.Schema:
    if isinstance(entities, str):
        from tarmac.lake.sql import query

        return query(store.project.lake, f"SELECT * FROM ({entities}) LIMIT 0").schema
    if isinstance(entities, pa.Table | pa.RecordBatchReader):
        return entities.schema
    import pandas as pd

    if isinstance(entities, pd.DataFrame):
        return pa.Schema.from_pandas(entities, preserve_index=False)
    raise UsageError(f"the entity frame must be a pandas or Arrow frame or SQL text, got "
                     f"{type(entities).__name__}")


def _entity_reader(entities: pa.Table | pa.RecordBatchReader | pd.DataFrame,
                   ) -> pa.Table | pa.RecordBatchReader:
    if isinstance(entities, pa.Table | pa.RecordBatchReader):
        return entities
    return pa.Table.from_pandas(entities, preserve_index=False)


def _call(part: DemandPart, frame: pd.DataFrame) -> dict[str, Any]:
    """Run an on-demand function on a frame; check it returned each declared feature."""
    try:
        out = part.view.function(frame)
    except TarmacError:
        raise
    except Exception as exc:
        raise OnDemandError(f"on-demand view '{part.view.name}' raised {type(exc).__name__}: "
                            f"{exc}", view=part.view.name) from exc
    columns = out if isinstance(out, Mapping) else {c: out[c] for c in out.columns}
    missing = [f for f, _, _ in part.features if f not in columns]
    if missing:
        raise OnDemandError(f"on-demand view '{part.view.name}' did not return "
                            f"{', '.join(missing)} (it returned: "
                            f"{echo(', '.join(map(str, columns)))})", view=part.view.name)
    return {f: columns[f] for f, _, _ in part.features}


def _with_on_demand(batch: pa.RecordBatch, demand: list[DemandPart]) -> pa.RecordBatch:
    """Append on-demand features to a batch: the one code path, offline and online. The
    function sees a pandas frame of its input features (named as in their views) and its
    request values, each cast to its declared type."""
    for part in demand:
        arrays, names = [], []
        for feat, col in part.inputs.items():
            arrays.append(batch.column(col))
            names.append(feat)
        for req in part.view.request:
            try:
                arrays.append(batch.column(req.name).cast(TYPES[req.dtype]))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise UsageError(f"request value '{req.name}' of on-demand view "
                                 f"'{part.view.name}' must be {req.dtype}, got "
                                 f"{batch.column(req.name).type}") from None
            names.append(req.name)
        frame = pa.RecordBatch.from_arrays(arrays, names=names).to_pandas()
        values = _call(part, frame)
        for f, out, typ in part.features:
            try:
                arr = pa.array(values[f], from_pandas=True).cast(TYPES[typ])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise OnDemandError(f"on-demand view '{part.view.name}' returned {f} values that "
                                    f"are not {SQL_TYPES[typ]}: {exc}",
                                    view=part.view.name) from exc
            if len(arr) != batch.num_rows:
                raise OnDemandError(f"on-demand view '{part.view.name}' returned {len(arr)} {f} "
                                    f"values for {batch.num_rows} rows", view=part.view.name)
            batch = batch.append_column(out, arr)
    return batch


def _online_on_demand(plan: _Plan, entities: Sequence[Mapping[str, Any]],
                      rows: list[dict[str, Any]], status: list[dict[str, str]],
                      times: list[dict[str, str | None]]) -> None:
    """The online code path of on-demand features: the values fetched are put in a batch of
    the same schema the training set has, and go through the same function."""
    types = {out: TYPES[typ] for p in plan.resolved.parts for _, out, typ in p.features}
    fields, columns = [], []
    for part in plan.resolved.demand:
        for col in part.inputs.values():
            if col not in types:
                continue
            fields.append(pa.field(col, types.pop(col)))
            columns.append([r.get(col) for r in rows])
        for req in part.view.request:
            if any(f.name == req.name for f in fields):
                continue
            try:
                values = [e[req.name] for e in entities]
            except KeyError:
                raise UsageError(f"on-demand view '{part.view.name}' needs request value "
                                 f"'{req.name}' for every entity") from None
            try:
                column = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise UsageError(f"request value '{req.name}' must be {req.dtype}, got "
                                 f"{echo(values[:3])}") from None
            fields.append(pa.field(req.name, column.type))
            columns.append(column)
    batch = pa.RecordBatch.from_arrays(
        [c if isinstance(c, pa.Array) else pa.array(c, type=f.type)
         for c, f in zip(columns, fields, strict=True)], schema=pa.schema(fields))
    out = _with_on_demand(batch, plan.resolved.demand)
    for part in plan.resolved.demand:
        for _f, name, _typ in part.features:
            for i, v in enumerate(out.column(name).to_pylist()):
                if v is None:
                    rows[i][name], status[i][name] = None, "missing"
                elif type(v) is float and not math.isfinite(v):  # inf, -inf or NaN: no value
                    rows[i][name], status[i][name] = None, "invalid"  # JSON has none for it
                else:
                    rows[i][name], status[i][name] = v, "present"
                times[i][name] = None


# late import for the annotation only
from tarmac.features.check import CheckReport  # noqa: E402
