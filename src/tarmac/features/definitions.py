"""The feature-store vocabulary a project writes in ``definitions.py``.

Entities say what a feature describes and how to find it (its join keys); feature views say where
the values come from (a lake table or SQL over the lake), when each value became true (the event
timestamp), which row wins a tie (the ``created`` timestamp) and how long a value stays valid
(``ttl``); on-demand views compute features from request values and other features with a Python
function; a feature service names the features one model consumes.

Example::

    customer = Entity("customer", join_keys=["customer_id"])
    activity = FeatureView(
        name="customer_activity", entities=[customer], source="activity_daily",
        timestamp="day", ttl="30d",
        features=[Feature("sessions_7d", Int64), Feature("spend_30d", Float64)],
    )
    churn = FeatureService("churn", [activity, profile[["age", "region"]]])

These objects are plain declarations: ``tarmac apply`` validates them against their sources and
registers them, with versions, in the catalog.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa

from tarmac.errors import UsageError, echo
from tarmac.humanize import parse_duration

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")  # '_' first is Tarmac's own (__tarmac_*)

#: the value types a feature may declare, with the Arrow type its values are cast to
TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
Int64, Int32, Float64, Float32, String, Bool, Timestamp = (
    "int64", "int32", "float64", "float32", "string", "bool", "timestamp")

#: DuckDB's name for each value type (what a feature's column is cast to)
SQL_TYPES = {"int64": "BIGINT", "int32": "INTEGER", "float64": "DOUBLE", "float32": "FLOAT",
             "string": "VARCHAR", "bool": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"{kind} name {name!r} is not valid: use letters, digits and '_', "
                         "starting with a letter (at most 63 characters)")
    return name


def type_of(arrow: pa.DataType) -> str | None:
    """The feature type a source column of this Arrow type holds, or None if none fits."""
    if pa.types.is_boolean(arrow):
        return Bool
    if pa.types.is_integer(arrow) or (pa.types.is_decimal(arrow) and arrow.scale == 0):
        return Int64
    if pa.types.is_floating(arrow) or pa.types.is_decimal(arrow):
        return Float64
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return String
    if pa.types.is_timestamp(arrow) or pa.types.is_date(arrow):
        return Timestamp
    return None


@dataclass(frozen=True)
class Entity:
    """What features describe (a customer, a product), identified by its join key columns."""

    name: str
    join_keys: list[str]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("entity", self.name)
        if isinstance(self.join_keys, str):
            object.__setattr__(self, "join_keys", [self.join_keys])
        if not self.join_keys:
            raise UsageError(f"entity '{self.name}' needs at least one join key")
        for key in self.join_keys:
            _check_name(f"join key of entity '{self.name}'", key)
        if len(set(self.join_keys)) != len(self.join_keys):
            raise UsageError(f"entity '{self.name}' repeats a join key: {self.join_keys}")

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys),
                "description": self.description}


@dataclass(frozen=True)
class Feature:
    """One feature: its name, value type, and what it means."""

    name: str
    dtype: str = Float64
    description: str = ""
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("feature", self.name)
        if self.dtype not in TYPES:
            raise UsageError(f"feature '{self.name}' has unknown type {self.dtype!r}; expected "
                             f"one of: {', '.join(TYPES)}")
        object.__setattr__(self, "tags", tuple(self.tags))

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "description": self.description,
                "tags": list(self.tags)}


@dataclass(frozen=True)
class SqlSource:
    """Feature rows computed by DuckDB SQL over lake tables."""

    query: str


def sql(query: str) -> SqlSource:
    """A feature view source written as SQL over lake tables (``FROM orders``)."""
    if not isinstance(query, str) or not query.strip():
        raise UsageError("sql(...) needs a query, got an empty one")
    return SqlSource(" ".join(query.split()))


class _Features:
    """What views and on-demand views share: their features, looked up and selected by name."""

    name: str
    features: list[Feature]
    _kind = "feature view"

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise UsageError(f"{self._kind} '{self.name}' has no feature '{echo(name)}'"
                         + suggest(name, [f.name for f in self.features]))

    def __getitem__(self, names: str | Sequence[str]) -> FeatureSelection:
        """A subset of the features, for a feature service."""
        wanted = [names] if isinstance(names, str) else list(names)
        for n in wanted:
            self.feature(n)
        return FeatureSelection(self, tuple(wanted))  # type: ignore[arg-type]


@dataclass(frozen=True)
class FeatureView(_Features):
    """Features of some entities, read from a lake table or SQL, valid from ``timestamp`` on
    for ``ttl``. ``created`` (optional) is when the row was recorded: it breaks ties between
    rows with the same event time and is what "known at t" means in knowledge-time retrieval."""

    name: str
    entities: list[Entity]
    source: str | SqlSource
    timestamp: str
    features: list[Feature]
    ttl: str | timedelta | None = None
    created: str | None = None
    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("feature view", self.name)
        if isinstance(self.entities, Entity):
            object.__setattr__(self, "entities", [self.entities])
        if not self.entities or not all(isinstance(e, Entity) for e in self.entities):
            raise UsageError(f"feature view '{self.name}': entities must be a list of Entity")
        if not isinstance(self.source, str | SqlSource) or (
                isinstance(self.source, str) and not self.source.strip()):
            raise UsageError(f"feature view '{self.name}': source must be a lake table name or "
                             "sql('SELECT ...')")
        if not self.features:
            raise UsageError(f"feature view '{self.name}' declares no features")
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UsageError(f"feature view '{self.name}' declares {', '.join(dup)} twice")
        clash = sorted(set(names) & (set(self.join_keys) | {self.timestamp, self.created}))
        if clash:
            raise UsageError(f"feature view '{self.name}': {', '.join(clash)} is a join key or "
                             "timestamp column, not a feature")
        if self.ttl is not None:
            self.ttl_seconds  # validates  # noqa: B018
        object.__setattr__(self, "tags", tuple(self.tags))

    @property
    def join_keys(self) -> list[str]:
        keys: list[str] = []
        for entity in self.entities:
            keys.extend(k for k in entity.join_keys if k not in keys)
        return keys

    @property
    def ttl_seconds(self) -> float | None:
        if self.ttl is None:
            return None
        if isinstance(self.ttl, timedelta):
            seconds = self.ttl.total_seconds()
        else:
            try:
                seconds = parse_duration(str(self.ttl)).total_seconds()
            except ValueError as exc:
                raise UsageError(f"feature view '{self.name}': ttl {self.ttl!r}: {exc}") from None
        if seconds <= 0:
            raise UsageError(f"feature view '{self.name}': ttl must be positive, got {self.ttl!r}")
        return seconds

    @property
    def ttl_text(self) -> str | None:
        """The ttl as people write it (``'30d'``), or None."""
        from tarmac.humanize import duration

        seconds = self.ttl_seconds
        return None if seconds is None else duration(seconds)

    def prefixed(self, prefix: str) -> FeatureSelection:
        """All features, output as ``prefix__feature`` (needed when two views share a name)."""
        return FeatureSelection(self, tuple(f.name for f in self.features), prefix)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": [e.name for e in self.entities],
            "join_keys": self.join_keys,
            "source": ({"sql": self.source.query} if isinstance(self.source, SqlSource)
                       else {"table": self.source}),
            "timestamp": self.timestamp,
            "created": self.created,
            "ttl_seconds": self.ttl_seconds,
            "features": [f.spec() for f in self.features],
            "description": self.description,
            "owner": self.owner,
            "tags": list(self.tags),
        }


#: what an aggregate of a stream view computes (count takes no column)
AGGREGATES = ("count", "sum", "mean", "min", "max", "last", "distinct")


@dataclass(frozen=True)
class Aggregation:
    """One aggregate of a stream feature view (build it with ``tarmac.features.agg``):
    ``fn`` of ``column``, output as ``{name}_{window}`` for every window of the view. ``dtype``
    (optional) is the feature type; by default it follows the column (count and distinct count
    are ``int64``, mean ``float64``)."""

    fn: str
    column: str | None = None
    dtype: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.fn not in AGGREGATES:
            raise UsageError(f"unknown aggregate {self.fn!r}; expected one of: "
                             f"{', '.join(AGGREGATES)}")
        if self.fn == "count" and self.column is not None:
            raise UsageError("agg.count() counts events and takes no column")
        if self.fn != "count" and (not isinstance(self.column, str) or not self.column):
            raise UsageError(f"agg.{self.fn}(column) needs the name of a column")
        if self.dtype is not None and self.dtype not in TYPES:
            raise UsageError(f"agg.{self.fn}({self.column!r}): unknown type {self.dtype!r}; "
                             f"expected one of: {', '.join(TYPES)}")
        if self.name is not None:
            _check_name(f"name of agg.{self.fn}", self.name)

    @property
    def base(self) -> str:
        """The start of its feature names: ``count``, ``amount_sum``, ``page_distinct``."""
        if self.name:
            return self.name
        return "count" if self.column is None else f"{self.column}_{self.fn}"

    def __str__(self) -> str:
        return f"agg.{self.fn}({'' if self.column is None else repr(self.column)})"


@dataclass(frozen=True)
class WindowDef:
    """A window of a stream feature view: ``sliding("1h")`` (hops by the tile; plain text
    means sliding) or ``tumbling("1d")`` (epoch-aligned periods)."""

    length: str | timedelta
    tumbling: bool = False


def sliding(length: str | timedelta) -> WindowDef:
    """A sliding window of ``length`` (``"5m"``, ``"1h"``): it hops by the view's tile."""
    return WindowDef(length)


def tumbling(length: str | timedelta) -> WindowDef:
    """A tumbling window of ``length``: the epoch-aligned period holding the time, so far."""
    return WindowDef(length, tumbling=True)


def _stream_field(view: str, what: str, value: Any) -> str:
    return f"stream feature view '{view}': {what} {echo(repr(value))}"


def _whole_seconds(view: str, what: str, value: Any) -> int:
    """A duration given as text or timedelta, in whole seconds (UsageError naming the field)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value).total_seconds()
        except ValueError as exc:
            raise UsageError(f"{_stream_field(view, what, value)}: {exc}") from None
    else:
        raise UsageError(f"{_stream_field(view, what, value)}: expected a duration such as "
                         "'5m', '1h' or '1d'")
    if seconds <= 0 or seconds != int(seconds):
        raise UsageError(f"{_stream_field(view, what, value)}: expected a positive whole "
                         "number of seconds")
    return int(seconds)


@dataclass(frozen=True)
class StreamFeatureView(FeatureView):
    """Windowed aggregates over a ``type: stream`` source, per entity, on event time: kept up
    to date online by ``tarmac stream run`` and computed in batch, from the same definition,
    over the lake table the stream lands in (training sets, ``materialize``, ``check``).

    ``source`` names the stream source in ``tarmac.yaml``; ``aggregates`` (from
    ``tarmac.features.agg``) are computed over every window in ``windows`` (text such as
    ``"1h"`` for a sliding window, or ``sliding(...)`` / ``tumbling(...)``); the features are
    named ``{aggregate}_{window}``: ``count_5m``, ``amount_sum_1h``, ``page_distinct_1d``,
    ``amount_sum_1d_tumbling``. ``tile`` (default: the greatest common divisor of the windows)
    is the step windows hop by; every window is a whole number of tiles. ``timestamp``
    defaults to the source's ``timestamp:`` (its event-time column). The exact semantics are
    in docs/streams.md.

    Example::

        clicks_live = StreamFeatureView(
            name="clicks_live", entities=[customer], source="clicks", ttl="2d",
            aggregates=[agg.count(), agg.sum("amount"), agg.distinct("page")],
            windows=["5m", "1h", "1d"])     # count_5m ... page_distinct_1d
    """

    source: str
    timestamp: str | None = None  # type: ignore[assignment]
    features: list[Feature] = field(default_factory=list)
    aggregates: Sequence[Aggregation] = ()
    windows: Sequence[str | timedelta | WindowDef] = ()
    tile: str | timedelta | None = None

    def __post_init__(self) -> None:
        _check_name("feature view", self.name)
        where = f"stream feature view '{self.name}'"
        if not isinstance(self.source, str) or not self.source.strip():
            raise UsageError(f"{where}: source must name a stream source of tarmac.yaml "
                             "(type: stream)")
        if self.features:
            raise UsageError(f"{where}: features are derived from aggregates and windows "
                             "(e.g. amount_sum_1h); do not pass features=")
        if self.created is not None:
            raise UsageError(f"{where}: created= does not apply (stream rows are counted once "
                             "by primary key and event time)")
        aggs = list(self.aggregates)
        if not aggs:
            raise UsageError(f"{where} declares no aggregates",
                             hint="e.g. aggregates=[agg.count(), agg.sum('amount')]")
        for i, a in enumerate(aggs):
            if not isinstance(a, Aggregation):
                raise UsageError(f"{where}: aggregates[{i}] is {echo(repr(a))}, not an "
                                 "aggregate; build them with tarmac.features.agg (agg.count(), "
                                 "agg.sum('amount'), ...)")
        object.__setattr__(self, "aggregates", tuple(aggs))
        raw = [self.windows] if isinstance(self.windows, str | WindowDef) else list(self.windows)
        if not raw:
            raise UsageError(f"{where} declares no windows", hint="e.g. windows=['5m', '1h']")
        defs = [w if isinstance(w, WindowDef) else WindowDef(w) for w in raw]
        object.__setattr__(self, "windows", tuple(defs))
        spec = self.window_spec(keys=self.join_keys, timestamp=self.timestamp or "__event_time")
        types = {"count": Int64, "distinct": Int64, "mean": Float64}
        feats = [Feature(name, a_decl.dtype or types.get(a_decl.fn, Float64))
                 for name, a_decl in zip([n for n, _a, _w in spec.features],
                                         [a for a in aggs for _w in defs], strict=True)]
        object.__setattr__(self, "features", feats)
        super().__post_init__()

    @property
    def window_defs(self) -> list[WindowDef]:
        """The windows as declared (text given alone means sliding)."""
        return [w if isinstance(w, WindowDef) else WindowDef(w) for w in self.windows]

    def window_spec(self, *, keys: Sequence[str], timestamp: str,
                    primary_key: Sequence[str] = (),
                    sql_types: dict[int, str] | None = None) -> Any:
        """The ``tarmac.streams.windows.WindowSpec`` of this view for a source's columns;
        ``sql_types`` (aggregate index -> DuckDB type) defaults to DOUBLE."""
        from tarmac.streams.windows import Aggregate, Window, WindowSpec, default_tile

        where = f"stream feature view '{self.name}'"
        wins = [Window(_whole_seconds(self.name, f"windows[{i}]", wd.length), wd.tumbling)
                for i, wd in enumerate(self.window_defs)]
        if self.tile is None:
            tile = default_tile(w.seconds for w in wins)
        else:
            tile = _whole_seconds(self.name, "tile", self.tile)
        for i, w in enumerate(wins):
            if w.seconds % tile:
                raise UsageError(f"{where}: windows[{i}] ({w.name}) is not a whole number of "
                                 f"tiles (tile {self.tile})",
                                 hint="choose a tile that divides every window, or leave tile "
                                      "out (the greatest common divisor of the windows)")
        aggs = [Aggregate(a.fn, a.column, a.base, (sql_types or {}).get(i, "DOUBLE"))
                for i, a in enumerate(self.aggregates)]
        try:
            return WindowSpec(keys=tuple(keys), timestamp=timestamp, aggregates=tuple(aggs),
                              windows=tuple(wins), tile_seconds=tile,
                              primary_key=tuple(primary_key))
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}",
                             hint="declare a larger tile= (the windows hop by it)"
                             if "tiles" in str(exc) else None) from None

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "source": {"stream": self.source},
                "aggregates": [{"fn": a.fn, "column": a.column, "dtype": a.dtype,
                                "name": a.name} for a in self.aggregates],
                "windows": [{"length": str(w.length), "tumbling": w.tumbling}
                            for w in self.window_defs],
                "tile": None if self.tile is None else str(self.tile)}


@dataclass(frozen=True)
class FeatureSelection:
    """Some features of a view, optionally output under a prefix."""

    view: FeatureView | OnDemandFeatureView
    names: tuple[str, ...]
    prefix: str | None = None

    def prefixed(self, prefix: str) -> FeatureSelection:
        return FeatureSelection(self.view, self.names, _check_name("prefix", prefix))

    def output(self, name: str) -> str:
        """The column a selected feature comes out as: ``prefix__name`` with a prefix."""
        return f"{self.prefix}__{name}" if self.prefix else name

    def refs(self) -> list[str]:
        return [f"{self.view.name}:{n}" for n in self.names]


@dataclass(frozen=True)
class OnDemandFeatureView(_Features):
    """Features computed at request time by a Python function, offline and online alike.

    The function takes a pandas DataFrame holding the ``inputs`` features (named as in their
    views) and the ``request`` columns, and returns a DataFrame (or dict of columns) with one
    column per declared feature, row for row.
    """

    name: str
    inputs: list[FeatureView | FeatureSelection]
    request: list[Feature]
    features: list[Feature]
    function: Callable[..., Any]
    description: str = ""
    _kind = "on-demand view"

    def __post_init__(self) -> None:
        _check_name("on-demand feature view", self.name)
        if not self.features:
            raise UsageError(f"on-demand view '{self.name}' declares no features")
        if not callable(self.function):
            raise UsageError(f"on-demand view '{self.name}': function is not callable")

    @property
    def input_refs(self) -> list[str]:
        refs: list[str] = []
        for item in self.inputs:
            sel = item if isinstance(item, FeatureSelection) else FeatureSelection(
                item, tuple(f.name for f in item.features))
            refs.extend(sel.refs())
        return refs

    def code_hash(self) -> str:
        return function_hash(self.function)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "inputs": self.input_refs,
                "request": [f.spec() for f in self.request],
                "features": [f.spec() for f in self.features],
                "function": getattr(self.function, "__qualname__", "function"),
                "code_hash": self.code_hash(), "description": self.description}


def on_demand(*, name: str | None = None, inputs: Iterable[FeatureView | FeatureSelection] = (),
              request: Iterable[Feature] = (), features: Iterable[Feature],
              description: str = "") -> Callable[[Callable[..., Any]], OnDemandFeatureView]:
    """Decorator: turn ``fn(frame) -> columns`` into an on-demand feature view."""
    def wrap(fn: Callable[..., Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(name or fn.__name__, list(inputs), list(request),
                                   list(features), fn, description or (fn.__doc__ or "").strip())
    return wrap


@dataclass(frozen=True)
class FeatureService:
    """The features one model consumes, by view (all features) or selection."""

    name: str
    features: list[FeatureView | OnDemandFeatureView | FeatureSelection]
    description: str = ""
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_name("feature service", self.name)
        if not self.features:
            raise UsageError(f"feature service '{self.name}' lists no features")

    def selections(self) -> list[FeatureSelection]:
        out = []
        for item in self.features:
            if isinstance(item, FeatureSelection):
                out.append(item)
            elif isinstance(item, FeatureView | OnDemandFeatureView):
                out.append(FeatureSelection(item, tuple(f.name for f in item.features)))
            else:
                raise UsageError(f"feature service '{self.name}': {item!r} is not a feature "
                                 "view, on-demand view or selection of one")
        return out

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "tags": list(self.tags),
                "features": [{"view": s.view.name, "features": list(s.names),
                              "prefix": s.prefix} for s in self.selections()]}


Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService
KINDS: dict[type, str] = {Entity: "entity", FeatureView: "view", OnDemandFeatureView: "on_demand",
                          FeatureService: "service", StreamFeatureView: "view"}


def function_hash(fn: Any) -> str:
    """A short hash of a function's source code (its name when the source is not available):
    tells whether a registered function was edited since."""
    try:
        code = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__qualname__", repr(fn))
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def spec_hash(spec: dict[str, Any]) -> str:
    """A stable hash of a definition's spec: equal specs, equal hashes."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def suggest(name: str, known: Iterable[str], *,
            none: str = " (none are registered; run `tarmac apply`)") -> str:
    """``"; did you mean 'x'?"`` for the closest known name, the list of names, or ``none``
    when there are no names at all."""
    import difflib

    names = sorted(set(known))
    # a name over 7/3 times as long as every known one is never close at a 0.6 cutoff (and
    # difflib's time grows with its length): a 1 MB name costs nothing
    longest = max(map(len, names), default=0)
    close = (difflib.get_close_matches(name, names, n=1, cutoff=0.6)
             if len(name) <= 3 * longest else [])
    if close:
        return f"; did you mean '{close[0]}'?"
    if not names:
        return none
    shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    return f" (known: {shown})"
