"""What ``tarmac features show`` tells about a view or service: schema, source, freshness,
statistics from the last materialization, lineage and who consumes it; and ``freshness``, the
newest event time each view serves online (what a monitor's freshness check reads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tarmac.catalog import features as fcat
from tarmac.catalog import to_datetime
from tarmac.errors import UsageError, echo
from tarmac.features.definitions import FeatureView, SqlSource, suggest
from tarmac.features.offline import q

if TYPE_CHECKING:
    from tarmac.features.store import FeatureStore


def describe(store: FeatureStore, name: str) -> dict[str, Any]:
    """A JSON-able description of one registered view, on-demand view or service."""
    defs = store.registered()
    current = fcat.current_definitions(store.project.catalog)
    if name in defs.views:
        return _view(store, defs.views[name], current[("view", name)])
    if name in defs.on_demand:
        o = defs.on_demand[name]
        return {"kind": "on_demand", "name": name, "version": current[("on_demand", name)].version,
                "description": o.description, "inputs": o.input_refs,
                "features": [{"feature": f.name, "type": f.dtype} for f in o.features]
                + [{"feature": f"(request) {f.name}", "type": f.dtype} for f in o.request]}
    if name in defs.services:
        s = defs.services[name]
        rows = []
        for sel in s.selections():
            for feat in sel.names:
                rows.append({"feature": sel.output(feat),
                             "view": sel.view.name, "type": sel.view.feature(feat).dtype})
        return {"kind": "service", "name": name, "version": current[("service", name)].version,
                "description": s.description, "features": rows,
                "consumers": _consumers(store, [f"{r['view']}:{r['feature']}" for r in rows])}
    raise UsageError(f"no feature view or service named '{name}'"
                     + suggest(name, [*defs.views, *defs.on_demand, *defs.services]))


def freshness(store: FeatureStore, views: Sequence[str] | None = None,
              ) -> dict[str, datetime | None]:
    """The newest event time each stored view (all registered ones by default) serves online,
    or None for a view that never reached the online store.

    * a view ``materialize`` fills: the newest event time among the values it wrote, kept in
      the online store's checkpoint of the view, so reading it costs one key lookup (a view
      last materialized by an older Tarmac: the newest event time of its source at the table
      versions that run read);
    * a stream view: also the newest event its stream has landed in the lake, which the stream
      runner applies online right after each commit.

    A view whose sources stopped receiving data, or that nobody materialized since, gets an
    old time: that is what a monitor's ``quality(freshness=...)`` alarms on.

    Example::

        freshness(p.features, ["signals"])   # {'signals': datetime(2024, 1, 1, tzinfo=UTC)}
    """
    from tarmac.features.materialize import NEWEST

    defs = store.registered()
    names = sorted(defs.views) if views is None else list(views)
    for name in names:
        if name not in defs.views:
            raise UsageError(f"no feature view named {echo(name)!r}"
                             + suggest(str(name), defs.views),
                             hint="freshness is kept for stored and stream views "
                                  "(not on-demand views or services)")
    online = store.online_store
    out: dict[str, datetime | None] = {}
    for name in names:
        view = defs.views[name]
        saved = online.checkpoint(name)
        newest: int | None = json.loads(saved).get(NEWEST) if saved else None
        stream = getattr(view, "streaming", None)
        if stream:
            landed = _newest_us(store, view, q(stream["table"]), None)
            newest = max((v for v in (newest, landed) if v is not None), default=None)
        elif newest is None and saved:  # materialized before checkpoints kept the time
            last = fcat.last_materialization(store.project.catalog, name)
            if last is not None:
                relation = (f"({view.source.query})" if isinstance(view.source, SqlSource)
                            else q(view.source))
                newest = _newest_us(store, view, relation, last.inputs)
        out[name] = None if newest is None else datetime.fromtimestamp(newest / 1e6, UTC)
    return out


def _newest_us(store: FeatureStore, view: FeatureView, relation: str,
               as_of: dict[str, int] | None) -> int | None:
    """The newest event time (UTC microseconds) in ``relation`` (at the ``as_of`` versions),
    None when it has no rows or its lake table does not exist yet."""
    from tarmac.lake.sql import query

    lake = store.project.lake
    if as_of is not None and any(lake.latest(t) is None for t in as_of):
        return None
    stream = getattr(view, "streaming", None)
    if stream and lake.latest(stream["table"]) is None:
        return None
    newest = f"CAST(max({q(view.timestamp)}) AS TIMESTAMPTZ)"
    sql = f"SELECT epoch_us({newest}) AS t FROM {relation}"
    got = query(lake, sql, as_of=as_of).column("t")[0].as_py()
    return None if got is None else int(got)


def _view(store: FeatureStore, view: FeatureView, definition: fcat.Definition) -> dict[str, Any]:
    from tarmac.lake.sql import query

    project = store.project
    relation = f"({view.source.query})" if isinstance(view.source, SqlSource) else q(view.source)
    stream = getattr(view, "streaming", None)
    if stream:  # a stream view: its lake table, not the (costly) window computation
        relation = q(stream["table"])
    if stream and project.lake.latest(stream["table"]) is None:
        freshness = (f"no event has landed yet (lake table {stream['table']} does not "
                     "exist)")
    else:
        try:
            newest = query(project.lake, f"SELECT max({q(view.timestamp)}) AS t, count(*) "
                                         f"AS n FROM {relation}").to_pylist()[0]
            freshness = (f"newest event {newest['t']:%Y-%m-%d %H:%M:%S} UTC, "
                         f"{newest['n']:,} rows" if newest["t"] else "no rows")
        except Exception as exc:  # a broken source is worth showing, not fatal to `show`
            freshness = f"source unreadable: {str(exc).splitlines()[0]}"
    last = fcat.last_materialization(project.catalog, view.name)
    stats = last.stats if last else {}
    try:
        online_records: Any = store.online_store.count(view.name)
    except Exception as exc:
        online_records = f"unavailable ({str(exc).splitlines()[0]})"
    features = []
    for f in view.features:
        s = stats.get(f.name, {})
        row: dict[str, Any] = {"feature": f.name, "type": f.dtype,
                               "description": f.description}
        if s:
            row["nulls"] = s.get("nulls")
            row["mean"] = _round(s.get("mean"))
            row["std"] = _round(s.get("std"))
            row["p50"] = _round((s.get("quantiles") or {}).get("0.5"))
            row["top"] = ", ".join(str(v) for v, _n in s.get("top", [])[:3]) or None
        features.append(row)
    return {
        "kind": "view", "name": view.name, "version": definition.version,
        "description": view.description, "entities": [e.name for e in view.entities],
        "join_keys": view.join_keys,
        "source": (_stream_text(stream) if stream else f"sql: {view.source.query}"
                   if isinstance(view.source, SqlSource) else f"lake table {view.source}"),
        "timestamp": view.timestamp, "created": view.created,
        "ttl": view.ttl_text, "freshness": freshness,
        "materialized": (f"{to_datetime(last.ended_at or last.started_at):%Y-%m-%d %H:%M:%S} "
                         f"UTC ({last.mode}, {last.entities:,} entities)") if last else "never",
        "online_records": online_records,
        "upstream": [f"{t}@{v}" for t, v in (last.inputs if last else {}).items()],
        "consumers": _consumers(store, [f"{view.name}:{f.name}" for f in view.features]),
        "features": features, "stats": stats,
    }


def _stream_text(stream: dict[str, Any]) -> str:
    """``stream clicks (lake table clicks): windows 5m, 1h, 1d tumbling; tile 5m``."""
    from tarmac.streams.windows import WindowSpec, window_text

    spec = WindowSpec.from_dict(stream["spec"])
    windows = ", ".join(window_text(w.seconds) + (" tumbling" if w.tumbling else "")
                        for w in spec.windows)
    return (f"stream {stream['source']} (lake table {stream['table']}): windows {windows}; "
            f"tile {window_text(spec.tile_seconds)}")


def _consumers(store: FeatureStore, refs: list[str]) -> list[str]:
    users = fcat.consumers_of(store.project.catalog, refs)
    return sorted({consumer for pairs in users.values() for consumer, _ in pairs})


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
