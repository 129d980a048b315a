"""The typed column statistics and their JSON form.

Every statistic is a plain dataclass field; ``to_dict()`` gives JSON-safe values (non-finite
floats as ``"NaN"``/``"Infinity"``/``"-Infinity"``, decimals as text, dates and timestamps as ISO
8601) and ``from_dict()`` rebuilds the same objects, so a profile survives the catalog.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

Kind = Literal["numeric", "boolean", "temporal", "categorical", "nested", "other"]
KINDS: tuple[Kind, ...] = ("numeric", "boolean", "temporal", "categorical", "nested", "other")

#: a single value a statistic can hold (min, max, a category)
Scalar = int | float | Decimal | str | bool | date | datetime | None

#: the probabilities every profile computes its quantiles at (fixed, so profiles compare)
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: the number of equal-width bins of a reference histogram
BINS = 10
#: how many of the most frequent categories a profile lists (the rest count as ``other``)
TOP_K = 10

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _float_out(v: float | None) -> float | str | None:
    if v is None or math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _float_in(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        if v in _NON_FINITE:
            return _NON_FINITE[v]
        raise ValueError(f"{where}: expected a number, NaN, Infinity or -Infinity (got {v!r})")
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{where}: expected a number (got {type(v).__name__} {v!r})")
    return float(v)


def _value_out(v: Scalar) -> Any:
    if isinstance(v, float):
        return _float_out(v)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    return v


def _value_in(v: Any, kind: Kind, where: str) -> Scalar:
    if not isinstance(v, str):
        return v
    if kind == "numeric":
        if v in _NON_FINITE:
            return _NON_FINITE[v]
        try:
            return Decimal(v)
        except ArithmeticError:
            raise ValueError(f"{where}: expected a number (got {v!r})") from None
    if kind == "temporal":
        try:
            return date.fromisoformat(v) if len(v) == 10 else datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{where}: expected an ISO 8601 date or time (got {v!r})") from None
    return v


@dataclass(frozen=True)
class Histogram:
    """Counts of finite values in bins between ``edges`` (``len(edges) == len(counts) + 1``).

    Bin ``i`` holds ``edges[i] <= x < edges[i+1]``; the last bin also holds ``x == edges[-1]``.
    A reference profile sets equal-width edges from its own finite min and max; a profile
    computed ``against`` it reuses those edges, so values outside them land in ``below`` /
    ``above`` (always 0 for the reference itself; infinities land there too).
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    below: int = 0
    above: int = 0

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.counts) + 1 or not self.counts:
            raise ValueError(f"a histogram needs len(edges) == len(counts) + 1 >= 2 (got "
                             f"{len(self.edges)} edges, {len(self.counts)} counts)")
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"histogram edges must be ascending (got {list(self.edges)})")

    @property
    def total(self) -> int:
        """Every value the histogram counted, in and outside its edges."""
        return sum(self.counts) + self.below + self.above

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [_float_out(e) for e in self.edges], "counts": list(self.counts),
                "below": self.below, "above": self.above}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "histogram") -> Histogram:
        edges = tuple(_float_in(e, f"{where}.edges") for e in d["edges"])
        if any(e is None for e in edges):
            raise ValueError(f"{where}.edges: an edge is null")
        return cls(tuple(e for e in edges if e is not None), tuple(int(c) for c in d["counts"]),
                   int(d.get("below", 0)), int(d.get("above", 0)))


@dataclass(frozen=True)
class TopK:
    """The most frequent non-null values with their counts, and what is left.

    ``other`` counts the non-null values outside ``values``. ``complete`` says ``values`` lists
    every distinct value (a reference with at most k categories): then a profile computed
    ``against`` it counts the values it never saw as ``unseen`` (a new category), otherwise
    ``unseen`` is None because a value outside the reference's top k may simply be rare.
    """

    values: tuple[tuple[Scalar, int], ...]
    other: int
    complete: bool
    unseen: int | None = None
    #: against a complete reference, the most frequent of the values it never saw (the drift
    #: sketch lists up to ``NEW_KEPT``; the DuckDB profile leaves it empty)
    new: tuple[tuple[Scalar, int], ...] = ()
    #: the drift sketch of a column with more values than it lists: every non-null value
    #: counted per hash bucket of its text (``tarmac.profile.sketch.hash_counts``)
    hashed: tuple[int, ...] = ()

    def count(self, value: Scalar) -> int:
        """How often ``value`` occurred (0 when it is not listed)."""
        return next((n for v, n in self.values if v == value), 0)

    @property
    def total(self) -> int:
        """Every non-null value counted: listed, ``other`` and ``unseen``."""
        return sum(n for _v, n in self.values) + self.other + (self.unseen or 0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"top": [[_value_out(v), n] for v, n in self.values],
                               "other": self.other, "complete": self.complete}
        if self.unseen is not None:
            out["unseen"] = self.unseen
        if self.new:
            out["new"] = [[_value_out(v), n] for v, n in self.new]
        if self.hashed:
            out["hashed"] = list(self.hashed)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], kind: Kind, where: str = "top") -> TopK:
        def pairs(key: str) -> tuple[tuple[Scalar, int], ...]:
            return tuple((_value_in(v, kind, f"{where}.{key}"), int(n)) for v, n in d.get(key, ()))

        unseen = d.get("unseen")
        return cls(pairs("top"), int(d.get("other", 0)), bool(d.get("complete", False)),
                   None if unseen is None else int(unseen), pairs("new"),
                   tuple(int(n) for n in d.get("hashed", ())))


@dataclass(frozen=True)
class ColumnStats:
    """The statistics of one column; which fields are set depends on ``kind``.

    * every kind: ``count`` (rows), ``nulls``; ``distinct`` (an estimate unless
      ``distinct_exact``; None for nested values and for columns of Arrow's null type);
    * numeric: ``min``/``max`` (NaN excluded), ``mean``, ``std`` (sample), ``quantiles`` at
      ``QUANTILES`` (NaN excluded), ``histogram`` of finite values, ``nans``;
    * boolean: ``min``/``max``, ``mean`` (share of true), ``std``, ``top`` (true/false);
    * temporal (dates, timestamps): ``min``/``max``;
    * categorical (text): ``min``/``max``, ``top``;
    * nested (lists, structs, maps) and other types (binary, intervals...): count and nulls only.
    """

    name: str
    type: str  # the engine's type (DuckDB spelling), or the caller's logical type
    kind: Kind
    count: int
    nulls: int
    distinct: int | None = None
    distinct_exact: bool = False
    nans: int = 0
    min: Scalar = None
    max: Scalar = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[float, float | None] | None = None
    histogram: Histogram | None = None
    top: TopK | None = None
    #: the drift sketch (``tarmac.profile.sketch``): a numeric column's counts over its
    #: reference's percentile grid (a ``Histogram`` of up to ``SKETCH_BINS`` bins), a
    #: categorical or boolean column's ``TopK`` of up to ``SKETCH_TOP_K`` values
    sketch: Histogram | TopK | None = None

    @property
    def null_rate(self) -> float:
        """Share of rows that are null (0.0 for an empty column)."""
        return self.nulls / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; fields that do not apply to the kind are left out."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "kind": self.kind,
                               "count": self.count, "nulls": self.nulls}
        if self.distinct is not None:
            out["distinct"] = self.distinct
            out["distinct_exact"] = self.distinct_exact
        if self.kind == "numeric":
            out["nans"] = self.nans
        for key in ("min", "max"):
            value = getattr(self, key)
            if value is not None:
                out[key] = _value_out(value)
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None or self.kind in ("numeric", "boolean"):
                out[key] = _float_out(value)
        if self.quantiles is not None:
            out["quantiles"] = {str(p): _float_out(v) for p, v in self.quantiles.items()}
        if self.histogram is not None:
            out["histogram"] = self.histogram.to_dict()
        if self.top is not None:
            out["top"] = [[_value_out(v), n] for v, n in self.top.values]
            out["other"] = self.top.other
            out["complete"] = self.top.complete
            if self.top.unseen is not None:
                out["unseen"] = self.top.unseen
        if self.sketch is not None:
            out["sketch"] = self.sketch.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], name: str | None = None) -> ColumnStats:
        """Rebuild from ``to_dict()`` output; ``name`` for mappings keyed by column."""
        col = d.get("name", name)
        where = f"column {col!r}"
        kind = d.get("kind")
        if kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)} (got {kind!r})")
        for key in ("type", "count", "nulls"):
            if key not in d:
                raise ValueError(f"{where}: missing {key!r}")
        quantiles = d.get("quantiles")
        top = None
        if "top" in d:
            top = TopK(tuple((_value_in(v, kind, f"{where}.top"), int(n)) for v, n in d["top"]),
                       int(d.get("other", 0)), bool(d.get("complete", False)), d.get("unseen"))
        sketch: Histogram | TopK | None = None
        if d.get("sketch"):
            if kind == "numeric":
                sketch = Histogram.from_dict(d["sketch"], f"{where}.sketch")
            else:
                sketch = TopK.from_dict(d["sketch"], kind, f"{where}.sketch")
        return cls(
            name=str(col), type=str(d["type"]), kind=kind, count=int(d["count"]),
            nulls=int(d["nulls"]), distinct=d.get("distinct"),
            distinct_exact=bool(d.get("distinct_exact", False)), nans=int(d.get("nans", 0)),
            min=_value_in(d.get("min"), kind, f"{where}.min"),
            max=_value_in(d.get("max"), kind, f"{where}.max"),
            mean=_float_in(d.get("mean"), f"{where}.mean"),
            std=_float_in(d.get("std"), f"{where}.std"),
            quantiles=None if quantiles is None else {
                float(p): _float_in(v, f"{where}.quantiles") for p, v in quantiles.items()},
            histogram=(Histogram.from_dict(d["histogram"], f"{where}.histogram")
                       if d.get("histogram") else None),
            top=top, sketch=sketch)


@dataclass(frozen=True)
class TableProfile:
    """The statistics of every profiled column of one table, in column order."""

    rows: int
    columns: tuple[ColumnStats, ...] = field(default_factory=tuple)

    def __getitem__(self, name: str) -> ColumnStats:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"no column {name!r} in the profile; columns: "
                       f"{', '.join(c.name for c in self.columns) or 'none'}")

    def __iter__(self) -> Iterator[ColumnStats]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{column: stats}``: the shape the catalog stores with materializations and model
        versions (the row count is every column's ``count``)."""
        return {c.name: c.to_dict() for c in self.columns}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> TableProfile:
        """Rebuild from ``to_dict()`` output (e.g. ``ModelVersion.profile``)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a table profile is a mapping of column -> stats "
                             f"(got {type(d).__name__})")
        columns = tuple(ColumnStats.from_dict(s, name) for name, s in d.items())
        return cls(columns[0].count if columns else 0, columns)
