"""Drift between a reference and a current window, one verdict per column.

Each column is sketched once per side (``tarmac.profile.sketch``: the reference's percentile grid
or its top categories, the current window counted in the same buckets), then tested:

* **numeric**: Kolmogorov-Smirnov on the percentile grid (the p-value), and the population
  stability index over the reference's deciles (the effect size);
* **categorical** (text, booleans): Pearson's chi-squared on the categories, with values the
  reference never saw as a bucket of their own and sparse buckets pooled (the p-value), and the
  Jensen-Shannon distance (the effect size).

The p-values are corrected for the number of columns tested (Holm by default), and a column is
*drifted* only when its change is both significant and at least ``min_effect`` in size: at a
million rows every tiny wobble is significant, and only the effect size tells a real shift
from noise. Why these statistics and thresholds: ``docs/monitoring.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pyarrow as pa

from tarmac.errors import UsageError
from tarmac.monitoring import _render
from tarmac.monitoring._sources import Side, side
from tarmac.monitoring._statistics import (
    Correction,
    adjust,
    chi2_homogeneity,
    decile_groups,
    is_sparse,
    jensen_shannon,
    ks_binned,
    pool_sparse,
    psi,
)
from tarmac.profile import ColumnStats, Histogram, Kind, TopK
from tarmac.profile.sketch import SKETCH_BINS, SKETCH_TOP_K, grid_of, sketch_column

if TYPE_CHECKING:
    from tarmac.project import Project

Verdict = Literal["drifted", "not drifted", "not enough data"]
EffectClass = Literal["none", "small", "medium", "large"]
EFFECT_CLASSES: tuple[EffectClass, ...] = ("none", "small", "medium", "large")

#: where an effect becomes small, medium and large. PSI's 0.1 and 0.25 are the bands credit
#: scoring has used for decades; its "small" starts at 0.01, a mean shift of a tenth of a
#: standard deviation. The Jensen-Shannon cuts are the same changes on its scale (for small
#: changes JS distance squared is about PSI / (8 ln 2)).
THRESHOLDS: Mapping[str, tuple[float, float, float]] = {
    "psi": (0.01, 0.1, 0.25),
    "jensen_shannon": (0.04, 0.13, 0.21),
}
#: the fewest non-null values each side needs before a column is tested
MIN_ROWS = 100
#: never-seen categories named in a note
NEW_NAMED = 5
#: the share of current values beyond the reference's range worth a note (a window of the
#: same distribution has about 2/n of them)
NOTE_OUTSIDE = 0.001

_TESTABLE: tuple[Kind, ...] = ("numeric", "categorical", "boolean")


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: the test, its p-value before and after the correction for the
    number of columns, the effect size and its class, and the sample sizes behind them.

    ``reference_count``/``current_count`` are the non-null values tested; the null rates count
    nulls and NaN among all rows. ``reason`` says why the verdict is what it is; ``note`` adds
    what a person should know (new categories, values outside the reference's range, a coarse
    reference). ``reference``/``current`` are the two sketches (the statistics and the counts
    per bucket), for plots and for storing.
    """

    column: str
    kind: Literal["numeric", "categorical"]
    verdict: Verdict
    reason: str
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    effect: str | None = None
    effect_size: float | None = None
    effect_class: EffectClass | None = None
    reference_count: int = 0
    current_count: int = 0
    reference_null_rate: float | None = None
    current_null_rate: float | None = None
    note: str = ""
    reference: ColumnStats | None = field(default=None, repr=False, compare=False)
    current: ColumnStats | None = field(default=None, repr=False, compare=False)

    @property
    def drifted(self) -> bool:
        return self.verdict == "drifted"


@dataclass(frozen=True)
class DriftReport:
    """One ``ColumnDrift`` per column, in order, and the settings that produced the verdicts.

    ``report.drifted`` lists the drifted columns; ``report["amount"]`` is one column's row;
    ``to_arrow()`` is the table form (one row per column), ``to_html()`` a self-contained page
    with a plot per column, and ``print(report)`` (or Rich's ``console.print``) a table.
    """

    columns: tuple[ColumnDrift, ...]
    reference_rows: int
    current_rows: int
    alpha: float
    correction: Correction
    min_effect: EffectClass
    thresholds: Mapping[str, tuple[float, float, float]]

    @property
    def drifted(self) -> list[str]:
        """The columns whose change is significant and at least ``min_effect``."""
        return [c.column for c in self.columns if c.verdict == "drifted"]

    @property
    def untested(self) -> list[str]:
        """The columns with a "not enough data" verdict."""
        return [c.column for c in self.columns if c.verdict == "not enough data"]

    def __getitem__(self, column: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == column:
                return c
        raise KeyError(f"no column {column!r} in the report; columns: "
                       f"{', '.join(c.column for c in self.columns) or 'none'}")

    def __iter__(self) -> Iterator[ColumnDrift]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def to_arrow(self) -> pa.Table:
        """One row per column: the fields of ``ColumnDrift`` but the sketches."""
        names = [f for f in ColumnDrift.__dataclass_fields__ if f not in ("reference", "current")]
        types = {"reference_count": pa.int64(), "current_count": pa.int64(),
                 **{n: pa.float64() for n in ("statistic", "p_value", "p_adjusted",
                                                "effect_size", "reference_null_rate",
                                                "current_null_rate")}}
        return pa.table({n: pa.array([getattr(c, n) for c in self.columns],
                                     types.get(n, pa.string())) for n in names})

    def to_html(self, title: str = "Drift report") -> str:
        """A self-contained HTML page (inline CSS and SVG, nothing fetched): a summary table,
        then per column the reference and current distributions side by side."""
        return _render.html(self, title)

    def __str__(self) -> str:
        return _render.text(self)

    def __rich__(self) -> Any:
        return _render.rich_table(self)


def drift(reference: Any, current: Any, columns: Sequence[str] | None = None, *,
          alpha: float = 0.05, correction: Correction = "holm",
          min_effect: EffectClass = "small", min_rows: int = MIN_ROWS,
          bins: int = SKETCH_BINS, top_k: int = SKETCH_TOP_K,
          thresholds: Mapping[str, tuple[float, float, float]] | None = None,
          project: Project | None = None) -> DriftReport:
    """Test each column of ``current`` for drift from ``reference``.

    Each side may be an Arrow table, dataset (Parquet files, read one column at a time) or
    record-batch reader, a pandas DataFrame, or, with ``project`` (``p.monitoring.drift`` passes
    it), SQL text or a lake table name; the reference may also be a stored ``TableProfile``,
    such as a model version's ``reference_profile``. ``columns`` defaults to the reference's
    numeric, text and boolean columns.

    A column is drifted when its p-value, corrected for the number of columns tested
    (``correction``: ``"holm"``, ``"bh"`` or ``"none"``), is below ``alpha`` and its effect size
    is at least ``min_effect`` (``thresholds`` sets the cuts, default ``THRESHOLDS``). Columns
    with fewer than ``min_rows`` non-null values on a side, constant on both sides, missing
    from a side or of another type there get "not enough data" and the reason. ``bins`` and
    ``top_k`` size the reference's grid. An empty reference raises ``UsageError``: there is
    nothing to compare against, which is a wrong reference, not a quiet window.

    >>> import numpy as np, pyarrow as pa
    >>> rng = np.random.default_rng(0)
    >>> ref = pa.table({"x": rng.normal(0, 1, 20_000), "y": rng.normal(0, 1, 20_000)})
    >>> cur = pa.table({"x": rng.normal(0.3, 1, 20_000), "y": rng.normal(0, 1, 20_000)})
    >>> report = drift(ref, cur)
    >>> report.drifted, report["x"].effect_class, report["y"].verdict
    (['x'], 'small', 'not drifted')
    """
    cuts = _check_options(alpha, correction, min_effect, min_rows, bins, top_k, thresholds)
    ref = side(reference, "reference", project)
    cur = side(current, "current", project)
    if ref.rows == 0:
        raise UsageError("the reference has no rows: there is nothing to compare against",
                         hint="check the reference table, query or time range")
    names = _columns(ref, cur, columns)
    settings = _Settings(min_rows, bins, top_k, cuts)

    def one(name: str) -> _Pending:
        return _column(name, ref, cur, settings)

    workers = min(len(names), os.cpu_count() or 1, 4)  # numpy's sort and Arrow release the GIL
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="drift") as pool:
            pending = list(pool.map(one, names))
    else:
        pending = [one(n) for n in names]
    tested = [i for i, p in enumerate(pending) if p.row.p_value is not None]
    raw = np.array([cast(float, pending[i].row.p_value) for i in tested], dtype=np.float64)
    adjusted = dict(zip(tested, adjust(raw, correction).tolist(), strict=True))
    rows = tuple(_verdict(p, adjusted.get(i), alpha, min_effect, cuts)
                 for i, p in enumerate(pending))
    return DriftReport(rows, ref.rows, cur.rows, alpha, correction, min_effect, cuts)


# -- options and columns -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    min_rows: int
    bins: int
    top_k: int
    thresholds: Mapping[str, tuple[float, float, float]]


def _check_options(alpha: float, correction: str, min_effect: str, min_rows: int, bins: int,
                   top_k: int, thresholds: Mapping[str, tuple[float, float, float]] | None,
                   ) -> dict[str, tuple[float, float, float]]:
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be between 0 and 1 (got {alpha})")
    if correction not in ("holm", "bh", "none"):
        raise UsageError(f"correction must be 'holm', 'bh' or 'none' (got {correction!r})")
    if min_effect not in EFFECT_CLASSES[1:]:
        raise UsageError(f"min_effect must be 'small', 'medium' or 'large' (got {min_effect!r})")
    if min_rows < 2:
        raise UsageError(f"min_rows must be at least 2 (got {min_rows})")
    if bins < 10:
        raise UsageError(f"bins must be at least 10: PSI groups the grid into deciles "
                         f"(got {bins})")
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1 (got {top_k})")
    cuts = dict(THRESHOLDS)
    for name, value in (thresholds or {}).items():
        if name not in THRESHOLDS:
            raise UsageError(f"thresholds: unknown effect {name!r}; effects are "
                             f"{', '.join(THRESHOLDS)}")
        values = tuple(float(v) for v in value)
        if len(values) != 3 or not 0 <= values[0] <= values[1] <= values[2]:
            raise UsageError(f"thresholds[{name!r}] must be three ascending numbers >= 0: "
                             f"small, medium, large (got {value!r})")
        cuts[name] = cast(tuple[float, float, float], values)
    return cuts


def _columns(ref: Side, cur: Side, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return [n for n, k in ref.kinds.items() if k in _TESTABLE]
    if isinstance(columns, str):
        columns = [columns]
    names = list(dict.fromkeys(columns))
    for n in names:
        kind = ref.kinds.get(n, cur.kinds.get(n))
        if kind is None:
            raise UsageError(f"column {n!r} is in neither the reference nor the current data; "
                             f"reference columns: {', '.join(ref.kinds) or 'none'}")
        if kind not in _TESTABLE:
            where = "reference" if n in ref.kinds else "current data"
            types = ref.types if n in ref.kinds else cur.types
            raise UsageError(f"cannot test column {n!r} for drift: it is {kind} ({types[n]}) "
                             f"in the {where}; drift compares numeric, text and boolean columns")
    return names


# -- one column --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pending:
    """A column's row before the correction across columns (``row.p_adjusted`` unset)."""

    row: ColumnDrift


def _report_kind(kind: Kind) -> Literal["numeric", "categorical"]:
    return "numeric" if kind == "numeric" else "categorical"


def _column(name: str, ref: Side, cur: Side, s: _Settings) -> _Pending:
    ref_kind, cur_kind = ref.kinds.get(name), cur.kinds.get(name)
    kind = _report_kind(cast(Kind, ref_kind or cur_kind))
    if ref_kind is None:
        return _untested(name, kind, "missing from the reference")
    if cur_kind is None:
        return _untested(name, kind, "missing from the current data")
    family = {"numeric": "numeric", "categorical": "text", "boolean": "boolean"}
    if ref_kind not in _TESTABLE or cur_kind not in _TESTABLE or \
            family[ref_kind] != family[cur_kind]:
        return _untested(name, kind, f"type changed: {ref.types[name]} in the reference, "
                                     f"{cur.types[name]} in the current data")
    ref_stats = ref.stats(name)
    if ref_stats is None:
        ref_stats = sketch_column(name, ref.column(name), bins=s.bins, top_k=s.top_k)
    cur_stats = sketch_column(name, cur.column(name), against=ref_stats, bins=s.bins,
                              top_k=s.top_k)
    return _compare(name, kind, ref_stats, cur_stats, s)


def _untested(name: str, kind: Literal["numeric", "categorical"], reason: str,
              **counts: Any) -> _Pending:
    return _Pending(ColumnDrift(name, kind, "not enough data", reason, **counts))


def _valid(stats: ColumnStats) -> int:
    return stats.count - stats.nulls - stats.nans


def _null_rate(stats: ColumnStats) -> float | None:
    return (stats.nulls + stats.nans) / stats.count if stats.count else None


def _compare(name: str, kind: Literal["numeric", "categorical"], ref: ColumnStats,
             cur: ColumnStats, s: _Settings) -> _Pending:
    n_ref, n_cur = _valid(ref), _valid(cur)
    sizes: dict[str, Any] = {
        "reference_count": n_ref, "current_count": n_cur,
        "reference_null_rate": _null_rate(ref), "current_null_rate": _null_rate(cur),
        "reference": ref, "current": cur}
    for label, stats, n in (("reference", ref, n_ref), ("current data", cur, n_cur)):
        if stats.count == 0:
            return _untested(name, kind, f"the {label} has no rows", **sizes)
        if n == 0:
            return _untested(name, kind, f"no values in the {label}: all {stats.count:,} rows "
                                         "are null", **sizes)
        if n < s.min_rows:
            return _untested(name, kind, f"only {n:,} non-null values in the {label} "
                                         f"(at least {s.min_rows:,} needed)", **sizes)
    grid, counted = grid_of(ref), cur.sketch
    if grid is None or counted is None:
        return _untested(name, kind, "the reference profile has no sketch or histogram of "
                                     "this column", **sizes)
    if isinstance(grid, Histogram) and isinstance(counted, Histogram):
        return _numeric(name, ref, grid, counted, s, sizes)
    if isinstance(grid, TopK) and isinstance(counted, TopK):
        return _categorical(name, ref, grid, counted, s, sizes)
    raise AssertionError(f"column {name!r}: mismatched sketches")  # kinds were checked


def _buckets(h: Histogram) -> np.ndarray:
    return np.array([h.below, *h.counts, h.above], dtype=np.float64)


def _numeric(name: str, ref: ColumnStats, grid: Histogram, counted: Histogram, s: _Settings,
             sizes: dict[str, Any]) -> _Pending:
    r, c = _buckets(grid), _buckets(counted)
    constant = grid.edges[0] == grid.edges[-1]
    if constant and counted.below == counted.above == 0:
        return _untested(name, "numeric", f"constant: every value is {_num(grid.edges[0])} in "
                                          "both windows", **sizes)
    d, p = ks_binned(r, c)
    effect = psi(r, c, decile_groups(r))
    notes = []
    outside = (counted.below + counted.above) / counted.total
    if outside >= NOTE_OUTSIDE:
        notes.append(f"{_share(outside)} of current values outside the reference's range "
                     f"[{_num(grid.edges[0])}, {_num(grid.edges[-1])}]")
    if ref.sketch is None:
        notes.append(f"coarse reference: a profile without a drift sketch ({len(grid.counts)} "
                     "equal-width bins)")
    return _Pending(ColumnDrift(name, "numeric", "not drifted", "", "ks", d, p, None, "psi",
                                effect, _class(effect, s.thresholds["psi"]),
                                note="; ".join(notes), **sizes))


def _categorical(name: str, ref: ColumnStats, grid: TopK, counted: TopK, s: _Settings,
                 sizes: dict[str, Any]) -> _Pending:
    if grid.complete and len(grid.values) == 1 and not counted.unseen and not counted.other:
        return _untested(name, "categorical", f"constant: every value is "
                                              f"{grid.values[0][0]!r} in both windows", **sizes)
    r, c, lumped = _category_table(grid, counted)
    r, c = pool_sparse(r, c, lumped)
    stat, p, _df = chi2_homogeneity(r, c)
    effect = jensen_shannon(r, c)
    notes = []
    if counted.unseen:
        shown = ", ".join(f"{v!r} ({_share(n / counted.total)})"
                          for v, n in counted.new[:NEW_NAMED])
        more = counted.unseen > sum(n for _v, n in counted.new[:NEW_NAMED])
        notes.append(f"{_share(counted.unseen / counted.total)} of current values are "
                     f"categories the reference never saw: {shown}{', ...' if more else ''}")
    if not grid.complete and grid.hashed and counted.hashed:
        notes.append(f"high cardinality: more than {len(grid.values)} categories, tested over "
                     f"{len(grid.hashed)} hash buckets of every value")
    elif not grid.complete:
        notes.append(f"coarse reference: a profile without a drift sketch (top "
                     f"{len(grid.values)} categories and the rest; the p-value is approximate)")
    return _Pending(ColumnDrift(name, "categorical", "not drifted", "", "chi2", stat, p, None,
                                "jensen_shannon", effect,
                                _class(effect, s.thresholds["jensen_shannon"]),
                                note="; ".join(notes), **sizes))


def _category_table(grid: TopK, counted: TopK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference and current counts over the buckets the chi-squared test may use, and which
    buckets must pool with the sparse ones.

    A complete reference: every category either window has, itemised (the never-seen ones
    from ``counted.new``; any beyond the listed ones are a lump of values rarer than the last
    listed, pooled when those are sparse). A high-cardinality reference: its hash buckets, a
    partition fixed in advance, since its top values were chosen by the very counts under
    test. A profile stored before sketches: its top values and the rest, approximately."""
    if grid.complete:
        new = [n for _v, n in counted.new]
        lump = (counted.unseen or 0) - sum(new)
        r = np.array([n for _v, n in grid.values] + [0] * len(new) + [0], dtype=np.float64)
        c = np.array([n for _v, n in counted.values] + new + [lump], dtype=np.float64)
        lumped = np.zeros(len(r), dtype=bool)
        n_ref, n_cur = r.sum(), c.sum()
        lumped[-1] = bool(new) and is_sparse(new[-1], n_ref, n_cur)
        return r, c, lumped
    if grid.hashed and counted.hashed and len(grid.hashed) == len(counted.hashed):
        r = np.array(grid.hashed, dtype=np.float64)
        c = np.array(counted.hashed, dtype=np.float64)
        return r, c, np.zeros(len(r), dtype=bool)
    r = np.array([n for _v, n in grid.values] + [grid.other], dtype=np.float64)
    c = np.array([n for _v, n in counted.values] + [counted.other], dtype=np.float64)
    return r, c, np.zeros(len(r), dtype=bool)


def _class(value: float, cuts: tuple[float, float, float]) -> EffectClass:
    return EFFECT_CLASSES[sum(value >= cut for cut in cuts)]


def _verdict(pending: _Pending, p_adjusted: float | None, alpha: float, min_effect: EffectClass,
             cuts: Mapping[str, tuple[float, float, float]]) -> ColumnDrift:
    row = pending.row
    if row.p_value is None or p_adjusted is None:
        return row
    assert row.effect is not None and row.effect_size is not None and row.effect_class
    effect = f"{_label(row.effect)} {_num(row.effect_size)} ({row.effect_class})"
    if p_adjusted >= alpha:
        verdict: Verdict = "not drifted"
        reason = f"not significant: adjusted p {_p(p_adjusted)} >= {alpha:g}"
    elif EFFECT_CLASSES.index(row.effect_class) < EFFECT_CLASSES.index(min_effect):
        verdict = "not drifted"
        floor = cuts[row.effect][EFFECT_CLASSES.index(min_effect) - 1]
        reason = (f"significant (adjusted p {_p(p_adjusted)}) but {effect} is below the "
                  f"{min_effect} threshold {floor:g}")
        if row.effect_class == "none":
            reason += ": too small to matter"
    else:
        verdict = "drifted"
        reason = f"significant (adjusted p {_p(p_adjusted)} < {alpha:g}) and {effect}"
    return replace(row, p_adjusted=p_adjusted, verdict=verdict, reason=reason)


def _label(effect: str) -> str:
    return {"psi": "PSI", "jensen_shannon": "Jensen-Shannon"}.get(effect, effect)


def _p(p: float) -> str:
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def _share(x: float) -> str:
    return f"{x:.1%}" if x >= 0.001 else f"{x:.2g}" if x == 0 else f"{x * 100:.2g}%"


def _num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.4g}"
