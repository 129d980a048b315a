"""The offline point-in-time engine against a brute-force reference written as plain loops.

For every entity row (time ``t``, key ``k``) and every view, the reference scans all the view's
rows, keeps the candidates (same key with no null part, event time set, ``event <= t``,
``event >= t - ttl`` when the view has a ttl and, under knowledge semantics, ``created <= t``
with a null created counting as the event time) and takes the maximum by (event, created with
null lowest, feature values with null lowest). No candidate, a null key or a null ``t`` gives
nulls. Hypothesis draws several views (single, composite int + string and string-only keys,
different timestamp columns and ttls, with or without a created column), entities with no
history or before all history, duplicate entity rows, ties, null values and times from a small
range so that collisions and ttl edges at exactly ``t - ttl`` are common. Hand-written cases
pin the documented behaviour and the errors for bad entity frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tarmac.errors import UsageError
from tarmac.features.offline import ViewQuery, check_entity_schema, point_in_time

TS = pa.timestamp("us", tz="UTC")
SEC = 1_000_000
BASE = 1_700_000_000 * SEC
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def at(n: int) -> int:
    """Microseconds since the epoch of the small time value ``n`` (seconds after BASE)."""
    return BASE + n * SEC


# ---------------------------------------------------------------------------------------------
# The reference: plain loops over rows, times as integer microseconds


Row = dict[str, Any]


def _low_null(value: Any) -> tuple[int, Any]:
    """Sort key putting a null below every value."""
    return (0, 0) if value is None else (1, value)


def candidates(rows: Sequence[Row], view: ViewQuery, entity: Row, t: int | None,
               semantics: str) -> list[Row]:
    """The view's rows the entity row may see at ``t``."""
    if t is None or any(entity[k] is None for k in view.keys):
        return []
    found = []
    for row in rows:
        if any(row[k] is None or row[k] != entity[k] for k in view.keys):
            continue
        event = row[view.timestamp]
        if event is None or event > t:
            continue
        if view.ttl_us is not None and event < t - view.ttl_us:
            continue
        if semantics == "knowledge":
            created = row[view.created] if view.created else None
            if (event if created is None else created) > t:
                continue
        found.append(row)
    return found


def rank(row: Row, view: ViewQuery) -> tuple[Any, ...]:
    """Order of preference: event, then created (null lowest), then the values (null lowest)."""
    created = row[view.created] if view.created else None
    return (row[view.timestamp], _low_null(created),
            tuple(_low_null(row[src]) for src, _out, _typ in view.features))


def tied_best(found: list[Row], view: ViewQuery) -> list[Row]:
    """The candidates tied at the top on (event, created): any of them is a defensible answer."""
    if not found:
        return []
    top = max(rank(r, view)[:2] for r in found)
    return [r for r in found if rank(r, view)[:2] == top]


def reference(entities: Sequence[Row], entity_columns: Sequence[str],
              views: Sequence[tuple[Sequence[Row], ViewQuery]], timestamp: str,
              semantics: str) -> list[Row]:
    """The expected output, one dict per entity row, in entity-row order."""
    out = []
    for entity in entities:
        result = {c: entity[c] for c in entity_columns}
        for rows, view in views:
            found = candidates(rows, view, entity, entity[timestamp], semantics)
            winner = max(found, key=partial(rank, view=view)) if found else None
            for src, name, _typ in view.features:
                result[name] = None if winner is None else winner[src]
        out.append(result)
    return out


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return bool(a == b)


# ---------------------------------------------------------------------------------------------
# Arrow frames from rows


def to_table(rows: Sequence[Row], schema: pa.Schema) -> pa.Table:
    return pa.table({f.name: pa.array([r[f.name] for r in rows], type=f.type) for f in schema},
                    schema=schema)


def as_python(rows: Sequence[Row], schema: pa.Schema) -> list[Row]:
    """The rows as Arrow hands them back (timestamps as aware datetimes)."""
    return to_table(rows, schema).to_pylist()


def check_against_reference(entities: list[Row], entity_schema: pa.Schema, chunks: list[int],
                            views: list[tuple[list[Row], ViewQuery, pa.Schema]], timestamp: str,
                            semantics: str) -> pa.Table:
    table = to_table(entities, entity_schema)
    if chunks:  # several record batches: the row index must run across them
        cuts = sorted({c % (len(entities) + 1) for c in chunks} | {0, len(entities)})
        table = pa.concat_tables([table.slice(a, b - a) for a, b in zip(cuts, cuts[1:],
                                                                          strict=False)]
                                 or [table])
    pairs = [(to_table(rows, schema), view) for rows, view, schema in views]
    got = point_in_time(table, pairs, timestamp=timestamp, semantics=semantics)  # type: ignore[arg-type]

    columns = entity_schema.names
    features = [(name, typ) for _r, view, _s in views for _src, name, typ in view.features]
    assert got.schema.names == [*columns, *(n for n, _t in features)]
    assert got.num_rows == len(entities)
    for name, typ in features:
        kind = got.schema.field(name).type
        assert {"BIGINT": pa.types.is_int64, "DOUBLE": pa.types.is_float64,
                "VARCHAR": lambda k: pa.types.is_string(k) or pa.types.is_large_string(k)
                }[typ](kind), (name, kind)

    shown = as_python(entities, entity_schema)  # entity columns compare as Arrow returns them
    for i, row in enumerate(got.to_pylist()):
        for c in columns:
            assert row[c] == shown[i][c], (i, c, row, shown[i])
        for rows, view, _s in views:
            # rows tied on (event, created) are settled by a hash of their values: any of them
            # is right, as long as the same one comes back every time (tested separately)
            tied = tied_best(candidates(rows, view, entities[i], entities[i][timestamp],
                                        semantics), view)
            outs = [(src, out) for src, out, _t in view.features]
            if not tied:
                assert all(row[out] is None for _src, out in outs), (i, view.name, row)
            else:
                assert any(all(same(row[out], r[src]) for src, out in outs) for r in tied), (
                    i, view.name, row, tied, entities[i])
    return got


# ---------------------------------------------------------------------------------------------
# Strategies


INTS = st.sampled_from([None, -2, 0, 1, 3, 7])
FLOATS = st.sampled_from([None, -1.5, 0.0, 0.25, 2.5, 1e9])
STRS = st.sampled_from([None, "", "a", "ab", "b", "é"])
UIDS = st.sampled_from([0, 1, 2, None])  # entities also ask for uid 3: no history
REGIONS = st.sampled_from(["a", "b", None])  # entities also ask for region "c"


@dataclass(frozen=True)
class Shape:
    name: str
    keys: list[str]
    timestamp: str
    created: str
    features: list[tuple[str, str, str, pa.DataType, st.SearchStrategy[Any]]]


SHAPES = [
    Shape("clicks", ["uid"], "ts", "cr",
          [("x", "clicks_x", "BIGINT", pa.int64(), INTS),
           ("y", "clicks_y", "DOUBLE", pa.float64(), FLOATS)]),
    Shape("orders", ["uid", "region"], "event_time", "recorded_at",
          [("s", "orders_s", "VARCHAR", pa.string(), STRS),
           ("n", "orders_n", "BIGINT", pa.int64(), INTS)]),
    Shape("regions", ["region"], "at", "created",
          [("z", "regions_z", "DOUBLE", pa.float64(), FLOATS)]),
]
KEY_TYPES = {"uid": pa.int64(), "region": pa.string()}

# event time in 0..6 (a null one time in eight), created in 0..8 (a null one time in ten)
EVENTS = st.integers(-1, 6).map(lambda n: None if n < 0 else at(n))
CREATEDS = st.integers(-1, 8).map(lambda n: None if n < 0 else at(n))
# entity time in -2..9: before all history, inside it and after it; a null one time in thirteen
ENTITY_TIMES = st.integers(-3, 9).map(lambda n: None if n < -2 else at(n))
TTLS = st.one_of(st.none(), st.integers(0, 4).map(lambda n: n * SEC))


@st.composite
def view_of(draw: st.DrawFn, shape: Shape,
            semantics: str) -> tuple[list[Row], ViewQuery, pa.Schema]:
    """One view's rows (as dicts of integer microseconds), its query and its table schema."""
    declared = semantics == "knowledge" or draw(st.booleans())
    fields = [pa.field(k, KEY_TYPES[k]) for k in shape.keys] + [pa.field(shape.timestamp, TS)]
    if declared:
        fields.append(pa.field(shape.created, TS))
    fields += [pa.field(src, arrow) for src, _o, _t, arrow, _s in shape.features]
    row = st.fixed_dictionaries({
        **{k: UIDS if k == "uid" else REGIONS for k in shape.keys},
        shape.timestamp: EVENTS,
        **({shape.created: CREATEDS} if declared else {}),
        **{src: values for src, _o, _t, _a, values in shape.features},
    })
    rows = draw(st.lists(row, max_size=24))
    if declared and draw(st.integers(0, 3)) == 0:  # a view whose created times are all unknown
        rows = [{**r, shape.created: None} for r in rows]
    view = ViewQuery(shape.name, "unused", list(shape.keys), shape.timestamp,
                     shape.created if declared else None, draw(TTLS),
                     [(src, out, typ) for src, out, typ, _a, _s in shape.features])
    return rows, view, pa.schema(fields)


@st.composite
def scenario(draw: st.DrawFn, semantics: str) -> dict[str, Any]:
    shapes = draw(st.permutations(SHAPES))[: draw(st.integers(0, 3))]
    views = [draw(view_of(shape, semantics)) for shape in shapes]
    timestamp = draw(st.sampled_from(["ts", "when", "event_time"]))  # may share a view's name
    row = st.fixed_dictionaries({
        "uid": st.sampled_from([0, 1, 2, 3, None]),
        "region": st.sampled_from(["a", "b", "c", None]),
        timestamp: ENTITY_TIMES,
        "label": st.integers(0, 9),
    })
    entities = draw(st.lists(row, max_size=24))
    if draw(st.booleans()):  # and every key at every instant
        entities += [{"uid": u, "region": r, timestamp: None if n is None else at(n), "label": 0}
                     for u in (0, 1, 2, 3, None) for r in ("a", "b", "c", None)
                     for n in (None, *range(-2, 10))]
    if entities:  # duplicate some entity rows, at the end and next to themselves
        for i in draw(st.lists(st.integers(0, len(entities) - 1), max_size=4)):
            entities.insert(draw(st.integers(i, len(entities))), dict(entities[i]))
    types = {"uid": pa.int64(), "region": pa.string(), timestamp: TS, "label": pa.int64()}
    order = draw(st.permutations(list(types)))
    schema = pa.schema([pa.field(c, types[c]) for c in order])
    chunks = draw(st.lists(st.integers(0, 20), max_size=3))
    return {"entities": entities, "entity_schema": schema, "chunks": chunks, "views": views,
            "timestamp": timestamp}


# ---------------------------------------------------------------------------------------------
# Properties


@PROPERTY
@given(scenario("event"))
def test_event_semantics_match_the_reference(s: dict[str, Any]) -> None:
    check_against_reference(**s, semantics="event")


@PROPERTY
@given(scenario("knowledge"))
def test_knowledge_semantics_match_the_reference(s: dict[str, Any]) -> None:
    check_against_reference(**s, semantics="knowledge")


@st.composite
def dense_knowledge(draw: st.DrawFn) -> dict[str, Any]:
    """One view, two keys, a handful of instants: corrections, backfills and rows recorded
    before their event collide all the time."""
    def recorded(event: Any) -> st.SearchStrategy[int | None]:
        near = st.just(None) if event is None else st.integers(-2, 3).map(lambda d: event + d * SEC)
        return st.one_of(st.none(), st.integers(0, 6).map(at), near)  # often at or near event

    row = st.fixed_dictionaries({
        "uid": st.sampled_from([0, 1]),
        "ts": st.integers(-1, 4).map(lambda n: None if n < 0 else at(n)),
        "x": INTS, "y": FLOATS}).flatmap(
            lambda r: recorded(r["ts"]).map(lambda cr: {**r, "cr": cr}))
    view = ViewQuery("clicks", "unused", ["uid"], "ts", "cr", draw(TTLS),
                     [("x", "clicks_x", "BIGINT"), ("y", "clicks_y", "DOUBLE")])
    schema = pa.schema([("uid", pa.int64()), ("ts", TS), ("cr", TS), ("x", pa.int64()),
                        ("y", pa.float64())])
    entity = st.fixed_dictionaries({
        "uid": st.sampled_from([0, 1, None]),
        "when": st.integers(-2, 7).map(lambda n: None if n < -1 else at(n))})
    grid = [{"uid": uid, "when": None if n is None else at(n)}  # every key at every instant
            for uid in (0, 1, None) for n in (None, *range(-1, 8))]
    return {"entities": draw(st.lists(entity, max_size=8)) + grid,
            "entity_schema": pa.schema([("uid", pa.int64()), ("when", TS)]), "chunks": [],
            "views": [(draw(st.lists(row, min_size=2, max_size=16)), view, schema)],
            "timestamp": "when"}


@settings(max_examples=30, deadline=None)
@given(dense_knowledge())
def test_knowledge_semantics_on_dense_collisions(s: dict[str, Any]) -> None:
    check_against_reference(**s, semantics="knowledge")


@st.composite
def tied_view(draw: st.DrawFn) -> dict[str, Any]:
    """A view without created whose rows collide on (key, event) with different values."""
    slots = st.tuples(st.sampled_from([0, 1]), st.integers(0, 3))
    rows = [{"uid": uid, "ts": at(n), "x": draw(INTS), "y": draw(FLOATS)}
            for uid, n in draw(st.lists(slots, min_size=1, max_size=16))]
    ttl = draw(TTLS)
    view = ViewQuery("clicks", "unused", ["uid"], "ts", None, ttl,
                     [("x", "clicks_x", "BIGINT"), ("y", "clicks_y", "DOUBLE")])
    schema = pa.schema([("uid", pa.int64()), ("ts", TS), ("x", pa.int64()), ("y", pa.float64())])
    entities = [{"uid": uid, "when": at(n)}
                for uid, n in draw(st.lists(st.tuples(st.sampled_from([0, 1]),
                                                      st.integers(-1, 5)), max_size=16))]
    return {"rows": rows, "view": view, "schema": schema, "entities": entities}


@settings(max_examples=15, deadline=None)
@given(tied_view())
def test_ties_without_created_give_one_of_the_tied_rows_every_time(s: dict[str, Any]) -> None:
    entity_schema = pa.schema([("uid", pa.int64()), ("when", TS)])
    frame = to_table(s["entities"], entity_schema)
    view_table = to_table(s["rows"], s["schema"])
    first = point_in_time(frame, [(view_table, s["view"])], timestamp="when")
    again = point_in_time(frame, [(view_table, s["view"])], timestamp="when")
    assert first.to_pylist() == again.to_pylist()
    for entity, row in zip(s["entities"], first.to_pylist(), strict=True):
        tied = tied_best(candidates(s["rows"], s["view"], entity, entity["when"], "event"),
                         s["view"])
        if not tied:
            assert row["clicks_x"] is None and row["clicks_y"] is None
        else:
            assert any(same(row["clicks_x"], r["x"]) and same(row["clicks_y"], r["y"])
                       for r in tied), (row, tied)


@settings(max_examples=20, deadline=None)
@given(tied_view())
def test_ties_on_key_event_and_created_give_one_of_them_every_time(s: dict[str, Any]) -> None:
    """Rows tied on key, event and created time are settled by a hash of their values: one of
    the tied rows, the same one on every call."""
    entity_schema = pa.schema([("uid", pa.int64()), ("when", TS)])
    first = check_against_reference(s["entities"], entity_schema, [],
                                    [(s["rows"], s["view"], s["schema"])], "when", "event")
    again = check_against_reference(s["entities"], entity_schema, [],
                                    [(s["rows"], s["view"], s["schema"])], "when", "event")
    assert first.to_pylist() == again.to_pylist()


# ---------------------------------------------------------------------------------------------
# Hand-written cases: the documented behaviour, readable


CLICKS = ViewQuery("clicks", "unused", ["uid"], "ts", "cr", None,
                   [("x", "clicks_x", "BIGINT")])
CLICKS_SCHEMA = pa.schema([("uid", pa.int64()), ("ts", TS), ("cr", TS), ("x", pa.int64())])
ENTITY_SCHEMA = pa.schema([("uid", pa.int64()), ("when", TS)])


def run(rows: Sequence[Row], times: Sequence[int | None], view: ViewQuery = CLICKS,
        semantics: str = "event", uid: int | None = 1) -> list[Any]:
    entities = to_table([{"uid": uid, "when": t} for t in times], ENTITY_SCHEMA)
    got = point_in_time(entities, [(to_table(rows, CLICKS_SCHEMA), view)], timestamp="when",
                        semantics=semantics)  # type: ignore[arg-type]
    expected = reference([{"uid": uid, "when": t} for t in times], ["uid", "when"],
                         [(rows, view)], "when", semantics)
    values = got["clicks_x"].to_pylist()
    assert values == [e["clicks_x"] for e in expected]
    return values


def click(ts: int, cr: int | None, x: int | None, uid: int = 1) -> Row:
    return {"uid": uid, "ts": ts, "cr": cr, "x": x}


def test_ttl_is_inclusive_at_exactly_t_minus_ttl() -> None:
    view = ViewQuery("clicks", "unused", ["uid"], "ts", "cr", 3 * SEC,
                     [("x", "clicks_x", "BIGINT")])
    rows = [click(at(2), None, 7)]
    assert run(rows, [at(2), at(5), at(5) + 1, at(1)], view) == [7, 7, None, None]
    zero = ViewQuery("clicks", "unused", ["uid"], "ts", "cr", 0, [("x", "clicks_x", "BIGINT")])
    assert run(rows, [at(2), at(2) + 1], zero) == [7, None]


def test_a_null_value_on_the_winning_row_stays_null() -> None:
    rows = [click(at(1), None, 5), click(at(2), None, None)]
    assert run(rows, [at(1), at(2), at(3)]) == [5, None, None]


def test_knowledge_hides_late_corrections_and_backfills() -> None:
    rows = [click(at(1), at(1), 10),  # on time
            click(at(1), at(5), 11),  # a correction of the same event, recorded at 5
            click(at(3), at(8), 30)]  # a backfilled later event, recorded at 8
    times = [at(0), at(1), at(4), at(5), at(7), at(8)]
    assert run(rows, times, semantics="event") == [None, 11, 30, 30, 30, 30]
    assert run(rows, times, semantics="knowledge") == [None, 10, 10, 11, 11, 30]


def test_null_created_counts_as_event_time_and_loses_ties() -> None:
    rows = [click(at(2), None, 1), click(at(2), at(1), 2)]
    assert run(rows, [at(2)], semantics="knowledge") == [2]
    assert run(rows, [at(2)], semantics="event") == [2]


def test_null_entity_key_or_time_gives_nulls_and_history_does_not_leak_across_keys() -> None:
    rows = [click(at(1), None, 5), click(at(1), None, 9, uid=2)]
    assert run(rows, [None, at(3)]) == [None, 5]
    assert run(rows, [at(3)], uid=None) == [None]
    assert run(rows, [at(3)], uid=3) == [None]


def test_an_empty_entity_frame_and_an_empty_view() -> None:
    assert run([click(at(1), None, 5)], []) == []
    assert run([], [at(1), None]) == [None, None]


# ---------------------------------------------------------------------------------------------
# Bad input


def entity_frame(**columns: pa.Array) -> pa.Table:
    return pa.table(columns)


GOOD_TIMES = pa.array([at(1)], type=TS)


def test_entity_frame_without_a_join_key() -> None:
    frame = entity_frame(uid=pa.array([1]), when=GOOD_TIMES)
    view = ViewQuery("orders", "unused", ["uid", "region"], "event_time", None, None,
                     [("n", "orders_n", "BIGINT")])
    empty = pa.table({"uid": pa.array([], pa.int64()), "region": pa.array([], pa.string()),
                      "event_time": pa.array([], TS), "n": pa.array([], pa.int64())})
    with pytest.raises(UsageError, match="'region'"):
        point_in_time(frame, [(empty, view)], timestamp="when")
    with pytest.raises(UsageError, match="'region'") as info:
        check_entity_schema(frame.schema, "when", ["uid", "region"], what="label frame")
    assert "label frame" in str(info.value)


def test_entity_frame_without_its_timestamp_column() -> None:
    frame = entity_frame(uid=pa.array([1]), when=GOOD_TIMES)
    with pytest.raises(UsageError, match="'as_of'"):
        point_in_time(frame, [], timestamp="as_of")
    with pytest.raises(UsageError, match="'as_of'"):
        check_entity_schema(frame.schema, "as_of", ["uid"])


def test_naive_entity_timestamps_are_refused() -> None:
    frame = entity_frame(uid=pa.array([1]), when=pa.array([at(1)], type=pa.timestamp("us")))
    with pytest.raises(UsageError, match="'when'.*naive"):
        point_in_time(frame, [], timestamp="when")
    with pytest.raises(UsageError, match="'when'.*naive"):
        check_entity_schema(frame.schema, "when", ["uid"])


@pytest.mark.parametrize("column", [pa.array([1]), pa.array(["2024-01-01T00:00:00Z"]),
                                    pa.array([1.5]), pa.array([None], pa.date32())])
def test_a_column_that_is_not_timestamps_is_refused(column: pa.Array) -> None:
    frame = entity_frame(uid=pa.array([1]), when=column)
    with pytest.raises(UsageError, match="'when'.*not timestamps"):
        point_in_time(frame, [], timestamp="when")
    with pytest.raises(UsageError, match="'when'"):
        check_entity_schema(frame.schema, "when", ["uid"])


def test_unknown_semantics_is_refused() -> None:
    frame = entity_frame(uid=pa.array([1]), when=GOOD_TIMES)
    with pytest.raises(UsageError, match="'bitemporal'"):
        point_in_time(frame, [], timestamp="when", semantics="bitemporal")  # type: ignore[arg-type]


def test_knowledge_semantics_need_a_created_column() -> None:
    frame = entity_frame(uid=pa.array([1]), when=GOOD_TIMES)
    view = ViewQuery("clicks_nocr", "unused", ["uid"], "ts", None, None,
                     [("x", "clicks_x", "BIGINT")])
    table = to_table([], pa.schema([("uid", pa.int64()), ("ts", TS), ("x", pa.int64())]))
    with pytest.raises(UsageError, match="'clicks_nocr'.*created"):
        point_in_time(frame, [(table, view)], timestamp="when", semantics="knowledge")
    assert point_in_time(frame, [(table, view)], timestamp="when")["clicks_x"].to_pylist() == [None]


# ---------------------------------------------------------------------------------------------
# Found while writing these tests, and failing on offline.py as first written: times finer
# than a microsecond, and entity columns named like the engine's own


NS = pa.timestamp("ns", tz="UTC")


@pytest.mark.parametrize("before_ns", [1, 400])
def test_nanosecond_entity_times_do_not_see_an_event_just_after_them(before_ns: int) -> None:
    """pandas gives ns timestamps; DuckDB's CAST to TIMESTAMPTZ rounds them to the nearest
    microsecond, so a row up to 0.5 µs before an event saw it: a leak from the future."""
    view = pa.table({"uid": pa.array([1], pa.int64()), "ts": pa.array([at(1)], TS),
                     "x": pa.array([7], pa.int64())})
    query = ViewQuery("clicks", "unused", ["uid"], "ts", None, None, [("x", "clicks_x", "BIGINT")])
    frame = pa.table({"uid": pa.array([1, 1], pa.int64()),
                      "when": pa.array([at(1) * 1000 - before_ns, at(1) * 1000], NS)})
    got = point_in_time(frame, [(view, query)], timestamp="when")
    assert got["clicks_x"].to_pylist() == [None, 7]


@pytest.mark.parametrize("semantics", ["event", "knowledge"])
def test_nanosecond_view_times_are_not_visible_before_they_happen(semantics: str) -> None:
    """The same rounding on the view side: an event (or a recording) at t + 0.4 µs was visible
    at t."""
    late = at(1) * 1000 + 400
    view = pa.table({"uid": pa.array([1, 1], pa.int64()),
                     "ts": pa.array([at(0) * 1000, late if semantics == "event" else at(1) * 1000],
                                    NS),
                     "cr": pa.array([at(0) * 1000, late], NS),
                     "x": pa.array([1, 2], pa.int64())})
    query = ViewQuery("clicks", "unused", ["uid"], "ts", "cr", None, [("x", "clicks_x", "BIGINT")])
    frame = pa.table({"uid": pa.array([1], pa.int64()), "when": pa.array([at(1)], TS)})
    got = point_in_time(frame, [(view, query)], timestamp="when", semantics=semantics)  # type: ignore[arg-type]
    assert got["clicks_x"].to_pylist() == [1]


@pytest.mark.parametrize("column", ["__tarmac_row", "__t"])
def test_entity_columns_with_internal_names_are_kept_or_refused(column: str) -> None:
    """An entity column named like an internal one silently reordered the output rows
    (``__tarmac_row``) or failed with DuckDB's BinderException (``__t``). Either work or raise
    a UsageError naming the column."""
    view = pa.table({"uid": pa.array([1, 2, 3], pa.int64()), "ts": pa.array([at(0)] * 3, TS),
                     "x": pa.array([10, 20, 30], pa.int64())})
    query = ViewQuery("clicks", "unused", ["uid"], "ts", None, None, [("x", "clicks_x", "BIGINT")])
    frame = pa.table({"uid": pa.array([1, 2, 3], pa.int64()),
                      "when": pa.array([at(1)] * 3, TS), column: pa.array([9, 8, 7])})
    try:
        got = point_in_time(frame, [(view, query)], timestamp="when")
    except UsageError as exc:
        assert column in str(exc)
        return
    assert got.schema.names == ["uid", "when", column, "clicks_x"]
    assert got.select(["uid", column, "clicks_x"]).to_pylist() == [
        {"uid": 1, column: 9, "clicks_x": 10}, {"uid": 2, column: 8, "clicks_x": 20},
        {"uid": 3, column: 7, "clicks_x": 30}]
