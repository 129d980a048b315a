"""Contracts: the schema and rules a source's rows must meet before they reach the lake.

A contract is the declared ``columns:`` of a source merged with the schema inferred at its first
load (which then holds for every later load). Each chunk read is checked column by column, with
Arrow compute and numpy, never a Python loop per row:

* values are coerced where that is safe (``"42"`` -> 42, ``"2026-01-05"`` -> a timestamp,
  ``7.0`` -> 7); a value that cannot be coerced rejects its row;
* declared rules reject rows: ``required``, ``allowed``, ``min``/``max``, ``pattern``,
  ``unique``, and a null primary key or cursor;
* schema drift (a new column, a missing one, a likely rename, a changed type) is reported every
  time and handled by the source's policy: ``evolve`` adds new columns, ``quarantine`` sends the
  rows that carry them to quarantine, ``fail`` stops the load before anything is committed.

Rejected rows come back with the reason, the column, the offending value and the record as read.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.errors import ContractError
from tarmac.ingest.base import raw_json
from tarmac.ingest.spec import TS, TYPES, ColumnSpec, SourceSpec
from tarmac.lake.types import storable_type

#: the columns of a chunk's rejected rows (the loader adds source, table, run and time)
REJECT_SCHEMA = pa.schema([("reason", pa.string()), ("column", pa.string()),
                           ("value", pa.string()), ("origin", pa.string()),
                           ("record", pa.string())])
_TRUE = {"true", "t", "yes", "y", "1"}
# a rule some rows broke: (mask of those rows, column, reason, the values checked or None, kind)
_Failing = tuple[np.ndarray, str, str, "pa.Array | pa.ChunkedArray | None", str]
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class Drift:
    """A change in a source's schema, seen in this load."""

    kind: str  # new_column | missing_column | renamed_column | type_change
    column: str
    detail: str
    action: str  # what the policy did: added, filled with nulls, quarantined, failed

    def __str__(self) -> str:
        return f"{self.kind.replace('_', ' ')} '{self.column}': {self.detail} ({self.action})"


@dataclass(frozen=True)
class Failure:
    """One rule some rows of a chunk broke: the column, why, what kind of rule (``missing``,
    ``null``, ``type``, ``allowed``, ``range``, ``pattern``, ``unique``, ``drift``), and the
    rows (positions in the chunk as read). A row breaking several rules is in several."""

    column: str
    reason: str
    kind: str
    rows: np.ndarray


@dataclass
class Checked:
    """One chunk after the contract: rows that pass, rows rejected, drift seen, and each rule
    broken with the rows that broke it (``failures``, for callers that answer per record)."""

    good: pa.Table
    rejected: pa.Table  # REJECT_SCHEMA
    drift: list[Drift] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def type_name(t: pa.DataType) -> str:
    """A contract type as stored: the name ``TYPES`` knows when there is one."""
    for name, known in TYPES.items():
        if known == t:
            return name
    return str(t)


def null_cursor_reason(cursor: str) -> str:
    """Why a row with a NULL cursor and no primary key to merge it by is quarantined."""
    return (f"cursor '{cursor}' is NULL and the source has no primary key: the row cannot be "
            "placed in time for incremental loads")


def type_json(name: str, t: pa.DataType) -> dict[str, str]:
    """A contract column as stored: its type's name, and the exact Arrow type (serialized)
    where the name alone would not give it back (``list<string>``, structs...)."""
    out = {"name": name, "type": type_name(t)}
    if parse_type(out["type"]) != t:
        schema = pa.schema([pa.field(name, t)])
        out["arrow"] = base64.b64encode(schema.serialize().to_pybytes()).decode()
    return out


def stored_type(col: dict[str, str]) -> pa.DataType:
    """``type_json``'s inverse (older contracts carry only the name)."""
    if col.get("arrow"):
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(col["arrow"])))
        return schema.field(0).type
    return parse_type(col["type"])


def parse_type(name: str) -> pa.DataType:
    """The Arrow type a stored contract names (``type_name``'s inverse)."""
    if name in TYPES:
        return TYPES[name]
    m = re.match(r"^decimal(?:128)?\((\d+), ?(\d+)\)$", name)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    m = re.match(r"^timestamp\[(\w+)(?:, tz=(.+))?\]$", name)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2))
    m = re.match(r"^(?:large_)?list<(?:\w+): (.+)>$", name)
    if m:  # contracts stored before exact types were kept (serialized) name lists this way
        return pa.list_(parse_type(m.group(1)))
    try:
        return pa.type_for_alias(name)
    except ValueError:
        return pa.string()  # an exotic type: kept as text rather than refused


def lake_type(t: pa.DataType, column: str = "?") -> pa.DataType:
    """The type a column is kept as: what Delta stores, timestamps in UTC microseconds.
    Raises ``ContractError`` naming the column for a type the lake cannot keep."""
    if pa.types.is_interval(t) or pa.types.is_duration(t) or \
            isinstance(t, pa.BaseExtensionType):
        raise ContractError(f"column '{column}' has type {t}, which the lake cannot store",
                            hint="declare the column's type under columns:, or cast it at the "
                                 "source (see docs/ingestion.md)")
    if pa.types.is_timestamp(t):
        return TS
    if pa.types.is_null(t):
        return t  # unknown until a value arrives
    return storable_type(t)


class Contract:
    """The columns (name -> type) a stream's rows must have, and the rules they must pass."""

    def __init__(self, source: str, spec: SourceSpec,
                 stored: list[dict[str, str]] | None = None,
                 source_types: dict[str, pa.DataType] | None = None) -> None:
        self.source = source
        self.spec = spec
        self.types: dict[str, pa.DataType] = {}
        for stored_col in stored or []:
            self.types[stored_col["name"]] = stored_type(stored_col)
        # the types the source declares (a database's schema): the first load takes them
        # instead of inferring from values; later, they type the columns that appear
        self.source_types = dict(source_types or {})
        if not stored:
            self.types.update(self.source_types)
        for name, col in spec.columns.items():
            if col.arrow_type is not None:
                self.types[name] = col.arrow_type  # a declaration beats an inference
        self.inferred = not stored  # the first load: what it reads becomes the contract
        self.known = {c["name"] for c in stored or []}  # columns earlier loads saw
        self.aliases = {old: name for name, col in spec.columns.items() for old in col.aliases}
        self.drift: dict[tuple[str, str], Drift] = {}
        self._unique_seen: dict[str, pa.Array] = {}

    def to_json(self) -> list[dict[str, str]]:
        return [type_json(n, t) for n, t in self.types.items() if not pa.types.is_null(t)]

    def schema(self) -> pa.Schema:
        return pa.schema([(n, pa.string() if pa.types.is_null(t) else t)
                          for n, t in self.types.items()])

    # -- checking -----------------------------------------------------------------------------

    def check(self, table: pa.Table, origin: str | pa.Array) -> Checked:
        """Coerce, validate and drift-check one chunk (see the module docstring). ``origin``
        says where the chunk was read (a file, a page), or where each row was, one string per
        row (a stream's topic, partition and offset)."""
        raw = table
        table = self._rename(table)
        n = table.num_rows
        failures: list[_Failing] = []
        drift: list[Drift] = []
        policy = self.spec.on_schema_change
        incoming = set(table.column_names)
        new = [c for c in table.column_names if c not in self.types]
        missing = [c for c in self.types if c not in incoming]
        if new and not self.inferred:
            drift += self._new_columns(table, new, missing, failures)
        for name in missing:
            declared = self.spec.columns.get(name)
            if declared is not None and declared.required:
                mask = np.ones(n, dtype=bool)
                failures.append((mask, name, f"required column '{name}' is missing from the "
                                             "source", None, "missing"))
                drift.append(self._note("missing_column", name, "required by the contract",
                                        "rows quarantined", policy))
            elif not self.inferred:
                drift.append(self._note("missing_column", name, "no longer in the source",
                                        "filled with nulls", policy))
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        if self.inferred:  # the first load: the source's column order, declared ones after
            self.types = {c: self.types.get(c, pa.null()) for c in table.column_names} | {
                c: t for c, t in self.types.items() if c not in incoming}
        for name in list(self.types):
            if name not in incoming:
                columns[name] = pa.nulls(n, self._type(name))
                continue
            values = table[name]
            want = self.types.get(name)
            if want is None or pa.types.is_null(want):
                got = lake_type(values.type, name)
                values = _cast_safe(values, got)
                if not pa.types.is_null(got):
                    self.types[name] = got
                columns[name] = values
                continue
            coerced, bad = coerce(values, want, self.spec.columns.get(name))
            if bad is not None and bad.any():
                shown = f"{type_name(want)}" + (
                    f" in one of the formats {', '.join(self.spec.columns[name].formats)}"
                    if name in self.spec.columns and self.spec.columns[name].formats else "")
                failures.append((bad, name, f"'{name}' is not a valid {shown}", values, "type"))
                if bad.sum() == pc.sum(pc.is_valid(values)).as_py() and len(values) > 0 \
                        and not pa.types.is_string(want):
                    drift.append(self._note("type_change", name,
                                            f"expected {type_name(want)}, the source sends "
                                            f"{values.type}", "rows quarantined", policy))
            columns[name] = coerced
        good = pa.table(columns)
        failures += self._rules(good, n)
        checked = self._split(good, raw, failures, origin)
        checked.drift = drift
        return checked

    def _type(self, name: str) -> pa.DataType:
        t = self.types.get(name)
        return pa.string() if t is None or pa.types.is_null(t) else t

    def _rename(self, table: pa.Table) -> pa.Table:
        if not self.aliases:
            return table
        names = [self.aliases.get(c, c) for c in table.column_names]
        if len(set(names)) != len(names):  # both the old and the new name present: keep new
            keep = [i for i, c in enumerate(table.column_names)
                    if not (c in self.aliases and self.aliases[c] in table.column_names)]
            table = table.select(keep)
            names = [self.aliases.get(c, c) for c in table.column_names]
        return table.rename_columns(names)

    def _new_columns(self, table: pa.Table, new: list[str], missing: list[str],
                     failures: list[Any]) -> list[Drift]:
        policy = self.spec.on_schema_change
        out = []
        for name in new:
            rename = next((m for m in missing if _compatible(self._type(m),
                                                             table[name].type)), None)
            detail = f"type {table[name].type}" + (
                f"; looks like '{rename}' renamed (to keep the old name, declare columns: "
                f"{{{rename}: {{aliases: [{name}]}}}})" if rename else "")
            if policy == "evolve":
                self.types[name] = self.source_types.get(name) or \
                    lake_type(table[name].type, name)
                out.append(self._note("renamed_column" if rename else "new_column", name,
                                      detail, "column added", policy))
            elif policy == "quarantine":
                mask = np.asarray(pc.fill_null(pc.is_valid(table[name]), False))
                failures.append((mask, name, f"schema drift: new column '{name}' is not in "
                                             "the contract", table[name], "drift"))
                out.append(self._note("renamed_column" if rename else "new_column", name,
                                      detail, "rows with a value quarantined", policy))
            else:
                raise ContractError(
                    f"source '{self.source}': schema changed: new column '{name}' ({detail}); "
                    "on_schema_change is 'fail', so nothing was loaded",
                    hint="declare the column, or set on_schema_change: evolve")
        return out

    def _note(self, kind: str, column: str, detail: str, action: str, policy: str) -> Drift:
        if policy == "fail" and kind in ("missing_column", "type_change"):
            raise ContractError(
                f"source '{self.source}': schema changed: {kind.replace('_', ' ')} '{column}' "
                f"({detail}); on_schema_change is 'fail', so nothing was loaded",
                hint="update the contract in tarmac.yaml, or set on_schema_change: evolve")
        d = Drift(kind, column, detail, action)
        self.drift.setdefault((kind, column), d)
        return d

    def _rules(self, good: pa.Table, n: int) -> list[_Failing]:
        """Declared rules plus the loader's own: no null key, no null cursor."""
        out: list[_Failing] = []
        spec = self.spec
        for key in spec.primary_key:
            if key in good.column_names:
                out.append((_mask(pc.is_null(good[key])), key,
                            f"primary key '{key}' is null", None, "null"))
            else:
                out.append((np.ones(n, dtype=bool), key,
                            f"primary key column '{key}' is missing from the source", None,
                            "missing"))
        if spec.cursor:
            if spec.cursor in good.column_names:
                if not spec.primary_key:  # with a key, the row is merged by it (see load.py)
                    out.append((_mask(pc.is_null(good[spec.cursor])), spec.cursor,
                                null_cursor_reason(spec.cursor), None, "null"))
            else:
                out.append((np.ones(n, dtype=bool), spec.cursor,
                            f"cursor column '{spec.cursor}' is missing from the source", None,
                            "missing"))
        for name, col in spec.columns.items():
            if name not in good.column_names:
                continue
            values = good[name]
            if col.required:
                out.append((_mask(pc.is_null(values)), name, f"'{name}' is required", None,
                            "null"))
            if col.allowed is not None:
                allowed = pa.array(col.allowed).cast(values.type, safe=False) \
                    if len(col.allowed) else pa.array([], values.type)
                bad = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, allowed)))
                out.append((_mask(bad), name, f"'{name}' is not one of the allowed values "
                                              f"({', '.join(map(str, col.allowed))})", values,
                            "allowed"))
            for bound, op, word in ((col.min, pc.less, "below the minimum"),
                                    (col.max, pc.greater, "above the maximum")):
                if bound is not None:
                    scalar = _bound(bound, values.type)
                    out.append((_mask(op(values, scalar)), name,
                                f"'{name}' is {word} {bound}", values, "range"))
            if col.pattern is not None:
                text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
                ok = pc.match_substring_regex(text, f"^(?:{col.pattern})$")
                out.append((_mask(pc.invert(ok)), name,
                            f"'{name}' does not match the pattern {col.pattern}", values,
                            "pattern"))
            if col.unique:
                out.append((self._repeats(name, values), name,
                            f"'{name}' must be unique; the value occurred before", values,
                            "unique"))
        return out

    def _repeats(self, name: str, values: pa.ChunkedArray) -> np.ndarray:
        """Rows whose value occurred earlier in this chunk or in an earlier chunk of the load."""
        arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        n = len(arr)
        idx = pa.table({"v": arr, "i": np.arange(n)})
        firsts = idx.group_by("v", use_threads=False).aggregate([("i", "min")])["i_min"]
        repeat = np.ones(n, dtype=bool)
        repeat[np.asarray(firsts)] = False
        seen = self._unique_seen.get(name)
        if seen is not None and len(seen):
            repeat |= _mask(pc.is_in(arr, seen))
        repeat &= _mask(pc.is_valid(arr))
        self._unique_seen[name] = pa.concat_arrays([seen, arr]) if seen is not None else arr
        return repeat

    def _split(self, good: pa.Table, raw: pa.Table, failures: list[_Failing],
               origin: str | pa.Array) -> Checked:
        n = good.num_rows
        if not failures:
            return Checked(good, REJECT_SCHEMA.empty_table())
        any_bad = np.zeros(n, dtype=bool)
        for mask, *_ in failures:
            any_bad |= mask
        if not any_bad.any():
            return Checked(good, REJECT_SCHEMA.empty_table())
        broken = [Failure(column, reason, kind, np.flatnonzero(mask))
                  for mask, column, reason, _, kind in failures if mask.any()]
        bad_idx = np.flatnonzero(any_bad)
        reasons = np.full(n, None, dtype=object)
        columns = np.full(n, None, dtype=object)
        values = np.full(n, None, dtype=object)
        for mask, column, reason, vals, _ in failures:
            if not mask.any():
                continue
            again = np.flatnonzero(mask & ~pd.isna(reasons))
            reasons[again] = reasons[again] + "; " + reason  # every reason a row failed
            rows = np.flatnonzero(mask & pd.isna(reasons))
            if not len(rows):
                continue
            reasons[rows] = reason
            columns[rows] = column
            if vals is not None:
                taken = vals.take(pa.array(rows)).to_pylist()
                values[rows] = [None if v is None else str(v) for v in taken]
        records = [raw_json(r) for r in raw.take(pa.array(bad_idx)).to_pylist()]
        rejected = pa.table({
            "reason": pa.array(reasons[bad_idx].tolist(), pa.string()),
            "column": pa.array(columns[bad_idx].tolist(), pa.string()),
            "value": pa.array(values[bad_idx].tolist(), pa.string()),
            "origin": pa.repeat(pa.scalar(origin, pa.string()), len(bad_idx))
            if isinstance(origin, str) else origin.take(pa.array(bad_idx)).cast(pa.string()),
            "record": pa.array(records, pa.string()),
        }, schema=REJECT_SCHEMA)
        keep = pa.array(np.flatnonzero(~any_bad))
        return Checked(good.take(keep), rejected, failures=broken)


# -- coercion ---------------------------------------------------------------------------------


def coerce(values: pa.ChunkedArray | pa.Array, target: pa.DataType,
           spec: ColumnSpec | None = None) -> tuple[pa.Array, np.ndarray | None]:
    """``values`` as ``target``, and a mask of the values that could not be coerced (None when
    all could). Only safe conversions: no truncation, no overflow, no guessing of formats."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    src = values.type
    if src == target:
        return values, None
    if pa.types.is_null(src):
        return pa.nulls(len(values), target), None
    if pa.types.is_dictionary(src):
        values = values.dictionary_decode()
        src = values.type
    if pa.types.is_large_string(src) or pa.types.is_string_view(src):
        values = values.cast(pa.string())
        src = pa.string()
    try:
        return values.cast(target, safe=True), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    valid = _mask(pc.is_valid(values))
    if pa.types.is_string(target):
        return pa.array([None if v is None else str(v) for v in values.to_pylist()],
                        pa.string()), None
    if pa.types.is_timestamp(target) or pa.types.is_date(target):
        out = _to_time(values, target, spec.formats if spec else [])
    elif pa.types.is_boolean(target):
        text = pc.utf8_lower(pc.utf8_trim_whitespace(values.cast(pa.string())))
        is_true = _mask(pc.is_in(text, pa.array(sorted(_TRUE))))
        is_false = _mask(pc.is_in(text, pa.array(sorted(_FALSE))))
        data = pa.array(np.where(is_true, True, False), pa.bool_())
        out = pc.if_else(pa.array(is_true | is_false), data, pa.scalar(None, pa.bool_()))
    elif pa.types.is_integer(target) or pa.types.is_floating(target):
        out = _to_number(values, target)
    elif pa.types.is_decimal(target):  # an unsafe cast would wrap around, not fail
        out = _to_decimal(values, target)
    else:
        try:
            out = values.cast(target, safe=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            out = pa.nulls(len(values), target)
    bad = valid & ~_mask(pc.is_valid(out))
    return out, (bad if bad.any() else None)


def _to_number(values: pa.Array, target: pa.DataType) -> pa.Array:
    if pa.types.is_string(values.type):
        text = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object).str.strip()
        as_float = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64,
                                                                na_value=np.nan)
        # the text "nan" is the float NaN (as Arrow's CSV reader reads it); "n/a" is not a number
        nan_text = text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy(dtype=bool)
        numbers = pa.array(as_float, pa.float64(), mask=np.isnan(as_float) & ~nan_text)
    elif pa.types.is_boolean(values.type):
        numbers = values.cast(pa.int64())
    else:
        try:
            numbers = values.cast(pa.float64(), safe=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.nulls(len(values), target)
    if pa.types.is_floating(target):
        return numbers.cast(target, safe=False)
    as_float = np.asarray(numbers.cast(pa.float64()).to_numpy(zero_copy_only=False),
                          dtype=np.float64)
    info = np.iinfo(target.to_pandas_dtype())
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(as_float) & (np.floor(as_float) == as_float) & \
            (as_float >= info.min) & (as_float <= info.max)
    ints = np.where(ok, as_float, 0).astype(target.to_pandas_dtype())
    return pa.array(ints, target, mask=~ok)


def _to_decimal(values: pa.Array, target: pa.DataType) -> pa.Array:
    """Values that ``target`` holds exactly (no digit lost before or after the point); the
    others null. One by one: only reached when the cast of the whole array failed."""
    quantum = Decimal(1).scaleb(-target.scale)
    limit = Decimal(10) ** (target.precision - target.scale)
    context = Context(prec=2 * 38 + 2)
    try:
        texts = values.cast(pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(values), target)
    out: list[Decimal | None] = []
    for text in texts:
        try:
            d = None if text is None else Decimal(text.strip())
            if d is not None and not (d.is_finite() and abs(d) < limit
                                      and d.quantize(quantum, context=context) == d):
                d = None
        except InvalidOperation:
            d = None
        out.append(d)
    return pa.array(out, target)


def _to_time(values: pa.Array, target: pa.DataType, formats: list[str]) -> pa.Array:
    if pa.types.is_timestamp(values.type):
        if values.type.tz is None:
            values = pc.assume_timezone(values, "UTC")
        return values.cast(TS if pa.types.is_timestamp(target) else target)
    if pa.types.is_date(values.type):
        return values.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")) \
            if pa.types.is_timestamp(target) else values.cast(target)
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    out: pa.Array | None = None
    for fmt in formats:
        parsed = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
        parsed = pc.assume_timezone(parsed, "UTC") if parsed.type.tz is None else parsed
        out = parsed if out is None else pc.coalesce(out, parsed)
    if not formats:
        out = parse_times(text)
    assert out is not None
    if pa.types.is_date(target):
        return out.cast(pa.timestamp("us")).cast(pa.date32())
    return out.cast(TS)


ISO_TIME = (r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|UTC|[+-]\d{2}"
            r"(:?\d{2})?)?)?$")


def parse_times(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """ISO-8601 strings (dates, date-times with or without zone) as ``timestamp[us, UTC]``;
    anything else becomes null. Values without a zone are taken as UTC. Vectorised."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    s = pc.utf8_trim_whitespace(arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string()))
    s = pc.if_else(pc.match_substring_regex(s, ISO_TIME), s, pa.scalar(None, pa.string()))
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2})$", r"\1T00:00:00Z")
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2}) ", r"\1T")
    s = pc.replace_substring_regex(s, r"(\.\d{6})\d+", r"\1")
    s = pc.replace_substring_regex(s, r"\s*(UTC|z)$", "Z")
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2}T[0-9:.]+)$", r"\1Z")
    try:
        return pc.cast(s, TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. month 13: one at a time
        return pa.array([to_datetime(v) for v in s.to_pylist()], TS)


def to_datetime(value: Any) -> datetime | None:
    """A point in time from one value: a datetime, a date, or ISO-8601 text (None when it
    is not one); without a zone, UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and re.match(ISO_TIME, value.strip()):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("UTC", "").strip()
                                            .replace("z", "Z"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _cast_safe(values: pa.ChunkedArray | pa.Array, target: pa.DataType) -> pa.Array:
    """An inferred column in its lake type (naive timestamps taken as UTC)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type == target:
        return values
    if pa.types.is_timestamp(values.type) and values.type.tz is None:
        values = pc.assume_timezone(values, "UTC")
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values.cast(target)


def _compatible(old: pa.DataType, new: pa.DataType) -> bool:
    both_num = (pa.types.is_integer(old) or pa.types.is_floating(old)) and (
        pa.types.is_integer(new) or pa.types.is_floating(new))
    return old == new or both_num or (pa.types.is_string(old) and pa.types.is_string(new))


def _bound(bound: float | str, t: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(t) and isinstance(bound, str):
        return pa.scalar(pd.Timestamp(bound, tz="UTC").to_pydatetime(), TS)
    if pa.types.is_integer(t) and isinstance(bound, float) and bound.is_integer():
        return pa.scalar(int(bound), t)
    return pa.scalar(bound)


def _mask(values: Any) -> np.ndarray:
    """A boolean Arrow result as a numpy mask, nulls counting as false."""
    filled = pc.fill_null(values, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)

