"""Computing column statistics in DuckDB: a few set-based queries per table, no Python per row.

One aggregate query covers counts, nulls, distinct estimates, min/max, mean/std and quantiles of
every column; a second one counts every numeric column's histogram bins; each text or boolean
column then takes one ``GROUP BY ... LIMIT k`` for its top values. DuckDB streams all three over
Arrow data, SQL, or the files of a lake table, so memory does not grow with the row count.
"""

from __future__ import annotations

import contextlib
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.errors import UsageError
from tarmac.lake import quote_ident, quote_literal
from tarmac.profile._stats import (
    BINS,
    QUANTILES,
    TOP_K,
    ColumnStats,
    Histogram,
    Kind,
    TableProfile,
    TopK,
)
from tarmac.profile.sketch import sketch_column

if TYPE_CHECKING:
    from tarmac.lake import Lake

_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|"
                      r"UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL\(\d+,\d+\))$")
_FLOATS = ("FLOAT", "DOUBLE")
_TEMPORAL = re.compile(r"^(DATE|TIMESTAMP.*)$")
_TEXT = ("VARCHAR",)
_NULL_TYPE = '"NULL"'  # Arrow's null type: a column that is null by type
_NESTED = re.compile(r"(\[\d*\]$|^(STRUCT|MAP|UNION)\()")

#: what ``profile`` accepts
Data: TypeAlias = pa.Table | pa.RecordBatchReader | duckdb.DuckDBPyRelation | str


def kind_of(duck_type: str) -> Kind:
    """The statistics family of a DuckDB type name (``DOUBLE`` -> numeric, ``VARCHAR[]`` ->
    nested...)."""
    if _NESTED.search(duck_type):
        return "nested"
    if duck_type == "BOOLEAN":
        return "boolean"
    if _NUMERIC.match(duck_type):
        return "numeric"
    if _TEMPORAL.match(duck_type):
        return "temporal"
    if duck_type in _TEXT or duck_type.startswith("ENUM("):
        return "categorical"
    return "other"


def profile(data: Data, *, con: duckdb.DuckDBPyConnection | None = None,
            columns: Sequence[str] | None = None, against: TableProfile | None = None,
            bins: int = BINS, top_k: int = TOP_K, exact_distinct: bool = False,
            types: dict[str, str] | None = None, basic: bool = False,
            sketch: bool = False) -> TableProfile:
    """Profile ``data``: an Arrow table or reader, a DuckDB relation, or SQL text run on ``con``.

    A ``RecordBatchReader`` is read once, into a DuckDB table on ``con`` (DuckDB spills it to
    disk when it outgrows memory), because the statistics take more than one pass.

    ``columns`` limits the columns (default: all). ``against`` is a reference profile of the
    same columns: the histograms then reuse its edges, its quantile probabilities and its
    categories, so the two profiles compare bin by bin (see ``docs/profile.md``). ``bins`` and
    ``top_k`` size a reference's histogram and category list. ``exact_distinct`` counts
    distinct values exactly (``count(DISTINCT)``, more memory) instead of DuckDB's
    ``approx_count_distinct`` estimate. ``types`` overrides the recorded type name per column
    (e.g. a feature's declared dtype). ``basic`` computes counts, nulls and distinct only (one
    cheap pass, what the survey shows). ``sketch`` adds each numeric, text and boolean
    column's drift sketch (``tarmac.profile.sketch``: counts over the reference's percentile
    grid or its top ``SKETCH_TOP_K`` values; ``against``'s grid when it has one): what a model
    version stores so that its monitors test drift against training.

    >>> import pyarrow as pa
    >>> p = profile(pa.table({"x": [1.0, 2.0, None]}))
    >>> p["x"].count, p["x"].nulls, p["x"].mean
    (3, 1, 1.5)
    """
    if bins < 1:
        raise UsageError(f"bins must be at least 1 (got {bins})")
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1 (got {top_k})")
    own = con is None
    temp: str | None = None
    arrow: pa.Table | None = None
    if isinstance(data, str):
        if con is None:
            raise UsageError("profiling SQL text needs the DuckDB connection it runs on (con=)")
        try:
            rel = con.sql(data)
        except duckdb.Error as exc:
            raise UsageError(f"cannot profile {data!r}: {str(exc).splitlines()[0]}") from None
    elif isinstance(data, duckdb.DuckDBPyRelation):
        rel = data
    elif isinstance(data, pa.Table | pa.RecordBatchReader):
        con = con or duckdb.connect()
        if own:
            con.execute("SET TimeZone = 'UTC'")
        if isinstance(data, pa.Table):
            data = arrow = _scannable(data)
        rel = con.from_arrow(data)
        if isinstance(data, pa.RecordBatchReader):  # readable once; the profile scans thrice
            temp = f"__profile_input_{uuid.uuid4().hex}"
            rel.create(temp)
            rel = con.table(temp)
    else:
        raise UsageError(f"cannot profile a {type(data).__name__}: pass an Arrow table or "
                         "reader, a DuckDB relation, or SQL text with con=")
    try:
        result = _profile_relation(rel, columns, against, bins, top_k, exact_distinct,
                                   types or {}, basic, arrow)
        return _with_sketches(result, rel, arrow, against) if sketch else result
    finally:
        if own and con is not None:
            con.close()
        elif temp is not None and con is not None:
            con.execute(f"DROP TABLE IF EXISTS {quote_ident(temp)}")


def _with_sketches(result: TableProfile, rel: duckdb.DuckDBPyRelation, arrow: pa.Table | None,
                   against: TableProfile | None) -> TableProfile:
    """``result`` with each numeric, text and boolean column's drift sketch, computed over the
    column's values in Arrow (one column at a time, read from the relation when the input was
    not an Arrow table)."""
    refs = {c.name: c for c in against.columns} if against is not None else {}
    out = []
    for stats in result.columns:
        if stats.kind not in ("numeric", "categorical", "boolean"):
            out.append(stats)
            continue
        if arrow is not None:
            values = arrow.column(stats.name)
        else:
            values = rel.select(quote_ident(stats.name)).to_arrow_table().column(0)
        ref = refs.get(stats.name)
        try:
            sketched = sketch_column(stats.name, values, against=ref)
        except ValueError:  # another kind than the reference's: a sketch of its own
            sketched = sketch_column(stats.name, values)
        out.append(replace(stats, sketch=sketched.sketch))
    return TableProfile(result.rows, tuple(out))


def _scannable(table: pa.Table) -> pa.Table:
    """``table`` with the Arrow types DuckDB cannot scan cast to near ones: half floats to
    float32, 256-bit decimals to 128-bit ones when they fit, else to float64."""
    for i, f in enumerate(table.schema):
        t = f.type
        if pa.types.is_float16(t):
            table = table.set_column(i, f.name, table.column(i).cast(pa.float32()))
        elif pa.types.is_decimal256(t):
            to = pa.decimal128(t.precision, t.scale) if t.precision <= 38 else pa.float64()
            table = table.set_column(i, f.name, table.column(i).cast(to))
    return table


def profile_table(lake: Lake, name: str, *, version: int | None = None,
                  columns: Sequence[str] | None = None, against: TableProfile | None = None,
                  bins: int = BINS, top_k: int = TOP_K,
                  exact_distinct: bool = False, sketch: bool = False) -> TableProfile:
    """Profile a lake table (at ``version``, default the latest) without loading it whole:
    DuckDB scans its files as an Arrow dataset."""
    dataset = lake.scan(name, version=version)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rel = con.from_arrow(dataset)
        return profile(rel, con=con, columns=columns, against=against, bins=bins, top_k=top_k,
                       exact_distinct=exact_distinct, sketch=sketch)
    finally:
        con.close()


def _profile_relation(rel: duckdb.DuckDBPyRelation, columns: Sequence[str] | None,
                      against: TableProfile | None, bins: int, top_k: int,
                      exact_distinct: bool, types: dict[str, str],
                      basic: bool = False, arrow: pa.Table | None = None) -> TableProfile:
    names = list(rel.columns)
    duck_types = dict(zip(names, (str(t) for t in rel.types), strict=True))
    if columns is not None:
        missing = [c for c in columns if c not in duck_types]
        if missing:
            raise UsageError(f"cannot profile column(s) {', '.join(missing)}: not in the data; "
                             f"columns are: {', '.join(names) or 'none'}")
        names = list(dict.fromkeys(columns))
    kinds = {n: kind_of(duck_types[n]) for n in names}
    refs: dict[str, ColumnStats] = {}
    if against is not None:
        refs = {c.name: c for c in against.columns if c.name in kinds}
    if basic and exact_distinct and arrow is not None and arrow.column_names == list(rel.columns):
        base = _basic_arrow(arrow, names, kinds)
    else:
        base = _base(rel, names, kinds, duck_types, exact_distinct, refs, basic)
    rows = int(base.pop("__rows"))
    hist = {} if basic else _histograms(rel, kinds, base, refs, bins)
    out = []
    for n in names:
        s = base[n]
        kind = kinds[n]
        top = None
        if kind in ("categorical", "boolean") and rows and not basic:
            top = _top(rel, n, top_k, s["count"] - s["nulls"], refs.get(n))
        out.append(ColumnStats(
            name=n, type=types.get(n, duck_types[n]), kind=kind, count=rows, nulls=s["nulls"],
            distinct=s.get("distinct"), distinct_exact=exact_distinct and "distinct" in s,
            nans=s.get("nans", 0), min=s.get("min"), max=s.get("max"), mean=s.get("mean"),
            std=s.get("std"), quantiles=s.get("quantiles"), histogram=hist.get(n), top=top))
    return TableProfile(rows, tuple(out))


def _base(rel: duckdb.DuckDBPyRelation, names: list[str], kinds: dict[str, Kind],
          duck_types: dict[str, str], exact_distinct: bool,
          refs: dict[str, ColumnStats], basic: bool) -> dict[str, Any]:
    """One aggregate query: counts, nulls, distinct, min/max, moments and quantiles."""
    exprs: list[str] = ["count(*)"]
    slots: list[tuple[str, str]] = []  # (column, statistic) per expression after count(*)

    def add(column: str, stat: str, sql: str) -> None:
        exprs.append(sql)
        slots.append((column, stat))

    for n in names:
        col, kind = quote_ident(n), kinds[n]
        add(n, "nulls", f"count(*) - count({col})")
        if kind == "nested" or duck_types[n] == _NULL_TYPE:  # no values to tell apart
            continue
        add(n, "distinct", f"count(DISTINCT {col})" if exact_distinct
            else f"approx_count_distinct({col})")
        if kind == "other" or basic:
            continue
        value = col
        if kind == "numeric" and duck_types[n] in _FLOATS:
            add(n, "nans", f"count_if(isnan({col}))")
            value = f"(CASE WHEN isnan({col}) THEN NULL ELSE {col} END)"
            add(n, "finite_min", f"min({value}) FILTER (WHERE isfinite({col}))")
            add(n, "finite_max", f"max({value}) FILTER (WHERE isfinite({col}))")
        add(n, "min", f"min({value})")
        add(n, "max", f"max({value})")
        if kind in ("numeric", "boolean"):
            num = f"CAST({value} AS DOUBLE)"
            add(n, "mean", f"avg({num})")
            add(n, "std", f"stddev_samp({num})")
        if kind == "numeric":
            ref = refs.get(n)
            probs = tuple(ref.quantiles) if ref is not None and ref.quantiles else QUANTILES
            listed = ", ".join(repr(float(p)) for p in probs)
            add(n, "quantiles", f"quantile_cont(CAST({value} AS DOUBLE), [{listed}])")
            slots[-1] = (n, "quantiles:" + ",".join(repr(float(p)) for p in probs))
    row = _fetch(rel, f"SELECT {', '.join(exprs)} FROM __profiled")[0]
    out: dict[str, Any] = {"__rows": row[0]}
    for (column, stat), value in zip(slots, row[1:], strict=True):
        s = out.setdefault(column, {})
        if stat.startswith("quantiles:"):
            at = [float(p) for p in stat.split(":", 1)[1].split(",")]
            s["quantiles"] = (None if value is None else
                              {p: _clean(v) for p, v in zip(at, value, strict=True)})
        elif stat in ("min", "max") and kinds[column] == "boolean":
            s[stat] = None if value is None else bool(value)
        else:
            s[stat] = value
    for n in names:
        s = out[n]
        s["count"] = row[0]
        if "finite_min" not in s and kinds[n] == "numeric" and not basic:
            s["finite_min"], s["finite_max"] = s.get("min"), s.get("max")
    return out


def _basic_arrow(table: pa.Table, names: list[str], kinds: dict[str, Kind]) -> dict[str, Any]:
    """Counts, nulls and exact distinct straight from Arrow's kernels: for an Arrow table in
    memory, the same figures as ``_base`` in ``basic`` mode without copying it into DuckDB."""
    out: dict[str, Any] = {"__rows": table.num_rows}
    for n in names:
        col = table.column(n)
        s: dict[str, Any] = {"count": table.num_rows, "nulls": col.null_count}
        if kinds[n] != "nested":
            # a type without a distinct kernel (the null type) stays unknown, as in ``_base``
            with contextlib.suppress(pa.ArrowNotImplementedError, pa.ArrowInvalid,
                                     pa.ArrowTypeError):
                s["distinct"] = pc.count_distinct(col, mode="only_valid").as_py()
        out[n] = s
    return out


def _fetch(rel: duckdb.DuckDBPyRelation, sql: str) -> list[Any]:
    """Rows of ``sql`` run over ``rel`` (named ``__profiled`` in it)."""
    result = rel.query("__profiled", sql)
    assert result is not None  # a SELECT always yields a relation
    return result.fetchall()


def _clean(v: Any) -> float | None:
    return None if v is None else float(v)


def _edges(lo: float, hi: float, bins: int) -> tuple[float, ...]:
    if lo == hi:
        return (lo, hi)
    width = (hi - lo) / bins
    return tuple([lo + i * width for i in range(bins)] + [hi])


def _histograms(rel: duckdb.DuckDBPyRelation, kinds: dict[str, Kind], base: dict[str, Any],
                refs: dict[str, ColumnStats], bins: int) -> dict[str, Histogram]:
    """One query counting, per numeric column, the finite values below each edge."""
    plans: dict[str, tuple[float, ...]] = {}
    for n, kind in kinds.items():
        if kind != "numeric":
            continue
        ref = refs.get(n)
        if ref is not None:
            if ref.histogram is not None:
                plans[n] = ref.histogram.edges
            continue  # a reference without a histogram (no finite values) bins nothing
        lo, hi = base[n].get("finite_min"), base[n].get("finite_max")
        if lo is not None and hi is not None:
            plans[n] = _edges(float(lo), float(hi), bins)
    if not plans:
        return {}
    exprs: list[str] = []
    for n, edges in plans.items():
        x = f"CAST({quote_ident(n)} AS DOUBLE)"
        finite = f"isfinite({x})"
        exprs.append(f"count_if({x} IS NOT NULL AND NOT isnan({x}))")
        exprs.append(f"count_if({x} = '-inf'::DOUBLE)")
        exprs.extend(f"count_if({finite} AND {x} < {_lit(e)})" for e in edges)
        exprs.append(f"count_if({finite} AND {x} <= {_lit(edges[-1])})")
    row = _fetch(rel, f"SELECT {', '.join(exprs)} FROM __profiled")[0]
    out: dict[str, Histogram] = {}
    i = 0
    for n, edges in plans.items():
        valued, minus_inf = row[i], row[i + 1]
        below_each, at_most_last = row[i + 2:i + 2 + len(edges)], row[i + 2 + len(edges)]
        i += len(edges) + 3
        # cumulative "< edge" counts -> bins; the last bin is closed on the right
        counts = [below_each[j + 1] - below_each[j] for j in range(len(edges) - 2)]
        counts.append(at_most_last - below_each[len(edges) - 2])
        below = below_each[0] + minus_inf  # -inf is below every edge, +inf above
        above = valued - below - sum(counts)
        out[n] = Histogram(edges, tuple(counts), below, above)
    return out


def _lit(value: float) -> str:
    if math.isfinite(value):
        return repr(float(value))
    return f"'{'inf' if value > 0 else '-inf'}'::DOUBLE"


def _top(rel: duckdb.DuckDBPyRelation, name: str, k: int, valued: int,
         ref: ColumnStats | None) -> TopK:
    """The ``k`` most frequent values (ties by value), or the reference's categories."""
    col = quote_ident(name)
    if ref is not None and ref.top is not None:
        values = [v for v, _n in ref.top.values]
        if values:
            listed = ", ".join(_value_sql(v) for v in values)
            found = dict(_fetch(rel, f"SELECT {col}, count(*) FROM __profiled "
                                     f"WHERE {col} IN ({listed}) GROUP BY 1"))
        else:
            found = {}
        pairs = tuple((v, int(found.get(v, 0))) for v in values)
        outside = valued - sum(n for _v, n in pairs)
        if ref.top.complete:
            return TopK(pairs, 0, True, outside)
        return TopK(pairs, outside, False, None)
    rows = _fetch(rel, f"SELECT {col}, count(*) AS n FROM __profiled WHERE {col} IS NOT NULL "
                       f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {k + 1}")
    complete = len(rows) <= k
    pairs = tuple((v, int(n)) for v, n in rows[:k])
    return TopK(pairs, valued - sum(n for _v, n in pairs), complete)


def _value_sql(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return quote_literal(str(value))
