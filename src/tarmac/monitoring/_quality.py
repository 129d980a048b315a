"""Data quality of one window of a served model's predictions, against its reference profile.

``quality_rows`` turns a ``quality(...)`` declaration, the reference profile (the training
profile stored with the model version) and the window's features (one typed Arrow column per
feature) into ``monitor_results`` rows of check ``quality``, one per metric and column:

* ``null_rate``: the share of null (or NaN) values, failed when it rose more than
  ``max_null_increase`` above the reference's; a window where a feature is null everywhere
  although the reference had values fails whatever the threshold (a model scored on empty
  features must alarm);
* ``out_of_range``: the share of a numeric feature's values outside the reference's
  ``[min, max]`` (or the contract's ``min``/``max`` or allowed ``values``);
* ``new_categories``: the share of a text or boolean feature's values the reference never saw
  (decidable only when the reference lists every value it saw);
* ``type`` (a feature whose values changed kind, numbers to text) and ``missing_column`` (a
  feature absent from the window): failed;
* ``missing_features`` / ``stale_features``: the share of predictions served with at least one
  feature missing or invalid (stale), from the log's ``feature_status`` JSON, overall (no
  column) and per feature;
* ``freshness``: the age of the newest logged prediction (no column) and of each feature view's
  newest event (column: the view), failed when older than ``freshness``.

Everything is computed with Arrow kernels and one DuckDB query over the status JSON, so the
cost follows the number of distinct values, never a Python loop over rows.

Example::

    from tarmac.monitoring._quality import quality_rows
    rows = quality_rows(definition.quality, version_profile, window_features,
                        feature_status=window["feature_status"],
                        log_newest=newest_prediction_time, view_freshness=views,
                        now=datetime.now(UTC))
    [r for r in rows if r.verdict == "failed"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.errors import UsageError, echo
from tarmac.humanize import duration
from tarmac.monitoring.declare import QualityCheck
from tarmac.monitoring.results import ResultRow
from tarmac.profile import ColumnStats, TableProfile, TopK
from tarmac.profile.sketch import arrow_kind

if TYPE_CHECKING:
    from tarmac.project import Project

CHECK = "quality"
PASSED, FAILED, NOT_ENOUGH = "passed", "failed", "not enough data"
#: how many never-seen categories (and out-of-range values) a reason names
NAMED = 5
#: statuses of a feature served without a usable value, and of one served too old
MISSING_STATUSES = ("missing", "invalid")
STALE_STATUSES = ("stale",)
#: an all-null window fails when a reference with its null rate would give one this rarely
ALL_NULL_CHANCE = 1e-3
_CONTRACT_KEYS = frozenset({"min", "max", "values", "allowed"})


def quality_rows(check: QualityCheck, reference: TableProfile, current: pa.Table, *,
                 feature_status: pa.ChunkedArray | pa.Array | None = None,
                 log_newest: datetime | None = None,
                 view_freshness: Mapping[str, datetime | None] | None = None,
                 now: datetime, min_rows: int = 100,
                 contract: Mapping[str, Mapping[str, Any]] | None = None) -> list[ResultRow]:
    """The quality rows of one window (see the module): per reference feature its
    ``null_rate``, ``out_of_range`` (numbers) and ``new_categories`` (text, booleans) as the
    declaration switches them on, ``type``/``missing_column`` when the window's column changed
    or is absent; ``missing_features``/``stale_features`` from the ``feature_status`` JSON
    column; ``freshness`` of the log (``log_newest``, the newest prediction's time) and of each
    feature view (``view_freshness``, e.g. ``view_freshness(p, views)``) when
    ``check.freshness`` is set.

    A share measured over fewer than ``min_rows`` rows (values, for ranges and categories) is
    "not enough data". ``contract`` overrides the reference's range per column:
    ``{"amount": {"min": 0, "max": 500}, "plan": {"values": ["basic", "pro"]}}``.

    >>> import pyarrow as pa
    >>> from datetime import UTC, datetime
    >>> from tarmac.monitoring.declare import quality
    >>> from tarmac.profile import profile
    >>> ref = profile(pa.table({"x": [float(i) for i in range(200)]}), sketch=True)
    >>> rows = quality_rows(quality(), ref, pa.table({"x": [None] * 150 + [1.0] * 50}),
    ...                     now=datetime.now(UTC))
    >>> [(r.metric, r.verdict, r.value) for r in rows]
    [('null_rate', 'failed', 0.75), ('out_of_range', 'not enough data', 0.0)]
    """
    if now.tzinfo is None:
        raise UsageError(f"quality_rows(now=...) needs a time zone, got {now.isoformat()}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise UsageError(f"quality_rows(min_rows=...) must be a whole number >= 1, got "
                         f"{echo(min_rows)!r}")
    rules = _contract(contract or {}, reference)
    rows: list[ResultRow] = []
    n = current.num_rows
    for stats in reference:
        if stats.name not in current.column_names:
            rows.append(ResultRow(CHECK, "missing_column", FAILED, stats.name,
                                  n_reference=stats.count, n_current=n,
                                  reason=f"feature {stats.name!r} is not in the window's "
                                         f"features (columns: "
                                         f"{echo(', '.join(current.column_names))})"))
            continue
        values = current.column(stats.name)
        rows.extend(_column_rows(check, stats, values, rules.get(stats.name), min_rows))
    if feature_status is not None:
        rows.extend(_status_rows(check, feature_status, min_rows))
    if check.freshness is not None:
        rows.extend(_freshness_rows(check.freshness.total_seconds(), log_newest,
                                    view_freshness or {}, now))
    return rows


def view_freshness(project: Project, views: Sequence[str]) -> dict[str, datetime | None]:
    """The newest event time each feature view serves online (None: never materialized), as
    ``p.features.freshness`` reads it: what ``quality_rows(view_freshness=...)`` takes.

    Example::

        view_freshness(p, ["activity"])   # {'activity': datetime(2026, 3, 1, 12, tzinfo=UTC)}
    """
    return project.features.freshness(list(views)) if views else {}


# -- per column ----------------------------------------------------------------------------


def _column_rows(check: QualityCheck, stats: ColumnStats, values: pa.ChunkedArray,
                 rule: Mapping[str, Any] | None, min_rows: int) -> list[ResultRow]:
    rows: list[ResultRow] = []
    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, values.type.value_type)
    kind = arrow_kind(values.type)
    null_typed = pa.types.is_null(values.type)  # a column null by type fits any reference
    changed = not null_typed and stats.kind in ("numeric", "categorical", "boolean",
                                                "temporal") and kind != stats.kind
    if changed:
        rows.append(ResultRow(CHECK, "type", FAILED, stats.name, n_reference=stats.count,
                              n_current=len(values),
                              reason=f"feature {stats.name!r} is {kind} ({values.type}) in "
                                     f"the window but {stats.kind} ({stats.type}) in the "
                                     "reference",
                              detail={"reference": stats.type, "current": str(values.type)}))
    if check.nulls:
        rows.append(_null_rate(check, stats, values, min_rows))
    if changed or null_typed:
        return rows
    if rule is not None and ("values" in rule or "min" in rule or "max" in rule):
        if check.ranges:
            rows.append(_out_of_range(check, stats, values, rule, min_rows))
    elif check.ranges and kind == "numeric":
        rows.append(_out_of_range(check, stats, values, None, min_rows))
    if check.new_categories and kind in ("categorical", "boolean"):
        rows.append(_new_categories(check, stats, values, min_rows))
    return rows


def _nulls(values: pa.ChunkedArray) -> int:
    """Null values, NaN counted as null."""
    if pa.types.is_floating(values.type):
        return int(pc.sum(pc.is_null(values, nan_is_null=True)).as_py() or 0)
    return values.null_count


def _null_rate(check: QualityCheck, stats: ColumnStats, values: pa.ChunkedArray,
               min_rows: int) -> ResultRow:
    n = len(values)
    nulls = _nulls(values)
    rate = nulls / n if n else 0.0
    ref_rate = (stats.nulls + stats.nans) / stats.count if stats.count else 0.0
    limit = ref_rate + check.max_null_increase
    common: dict[str, Any] = {"column": stats.name, "value": rate, "threshold": limit,
              "effect_size": rate - ref_rate, "n_reference": stats.count, "n_current": n}
    had_values = stats.count > stats.nulls + stats.nans
    if n and nulls == n and had_values and ref_rate ** n < ALL_NULL_CHANCE:
        return ResultRow(CHECK, "null_rate", FAILED, **common,
                         reason=f"every one of the window's {n:,} values of {stats.name!r} is "
                                f"null, the reference had {_pct(ref_rate)} null: the model is "
                                "scored on an empty feature")
    if n < min_rows:
        return ResultRow(CHECK, "null_rate", NOT_ENOUGH, **common,
                         reason=f"{n:,} rows in the window, fewer than the {min_rows:,} a "
                                "null rate needs")
    if rate > limit:
        return ResultRow(CHECK, "null_rate", FAILED, **common,
                         reason=f"{_pct(rate)} of {stats.name!r} is null ({nulls:,} of "
                                f"{n:,}), up from {_pct(ref_rate)} in the reference, more "
                                f"than the {_pct(check.max_null_increase)} allowed")
    return ResultRow(CHECK, "null_rate", PASSED, **common,
                     reason=f"{_pct(rate)} null, the reference {_pct(ref_rate)}")


def _out_of_range(check: QualityCheck, stats: ColumnStats, values: pa.ChunkedArray,
                  rule: Mapping[str, Any] | None, min_rows: int) -> ResultRow:
    present = pc.drop_null(values)
    if pa.types.is_floating(present.type):
        present = pc.filter(present, pc.invert(pc.is_nan(present)))
    total = len(present)
    common: dict[str, Any] = {"column": stats.name, "threshold": check.max_out_of_range,
                              "n_reference": stats.count, "n_current": total}
    if rule is not None and "values" in rule:
        allowed = rule["values"]
        try:
            value_set = pa.array(allowed).cast(present.type) if len(allowed) else \
                pa.array([], present.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise UsageError(f"the contract's allowed values of {stats.name!r} "
                             f"({echo(allowed)}) are not {present.type} values") from None
        outside_mask = pc.invert(pc.is_in(present, value_set=value_set))
        where = f"the contract's {len(allowed):,} allowed values"
        detail: dict[str, Any] = {"source": "contract", "values": len(allowed)}
    else:
        lo, hi, source = _bounds(stats, rule)
        if lo is None and hi is None:
            return ResultRow(CHECK, "out_of_range", NOT_ENOUGH, **common,
                             reason=f"the reference has no value of {stats.name!r} to take a "
                                    "range from")
        x = present if pa.types.is_floating(present.type) else pc.cast(present, pa.float64(),
                                                                       safe=False)
        masks = [pc.less(x, lo) if lo is not None else None,
                 pc.greater(x, hi) if hi is not None else None]
        live = [m for m in masks if m is not None]
        outside_mask = live[0] if len(live) == 1 else pc.or_(live[0], live[1])
        where = f"{source}'s range [{_num(lo)}, {_num(hi)}]"
        detail = {"source": source, "min": lo, "max": hi}
    outside = int(pc.sum(outside_mask).as_py() or 0) if total else 0
    share = outside / total if total else 0.0
    common["value"] = share
    if outside:
        odd = pc.filter(present, outside_mask)
        detail["examples"] = [_plain(v) for v in _most_frequent(odd, NAMED)]
    if total < min_rows:
        return ResultRow(CHECK, "out_of_range", NOT_ENOUGH, **common, detail=detail,
                         reason=f"{total:,} values of {stats.name!r} in the window, fewer than "
                                f"the {min_rows:,} a share needs")
    if share > check.max_out_of_range:
        named = ", ".join(f"{v:.6g}" if isinstance(v, float) else repr(v)
                          for v in detail["examples"])
        return ResultRow(CHECK, "out_of_range", FAILED, **common, detail=detail,
                         reason=f"{_pct(share)} of {stats.name!r} ({outside:,} of {total:,}) "
                                f"is outside {where}, more than the "
                                f"{_pct(check.max_out_of_range)} allowed; e.g. {named}")
    return ResultRow(CHECK, "out_of_range", PASSED, **common, detail=detail,
                     reason=f"{outside:,} of {total:,} values outside {where}")


def _bounds(stats: ColumnStats, rule: Mapping[str, Any] | None,
            ) -> tuple[float | None, float | None, str]:
    if rule is not None:
        return _float(rule.get("min")), _float(rule.get("max")), "the contract"
    return _float(stats.min), _float(stats.max), "the reference"


def _new_categories(check: QualityCheck, stats: ColumnStats, values: pa.ChunkedArray,
                    min_rows: int) -> ResultRow:
    present = pc.drop_null(values)
    if pa.types.is_large_string(present.type) or str(present.type) == "string_view":
        present = pc.cast(present, pa.string())
    total = len(present)
    common: dict[str, Any] = {"column": stats.name, "threshold": check.max_new_category_share,
                              "n_reference": stats.count, "n_current": total}
    known = _complete_values(stats)
    if known is None:
        listed = max((len(g.values) for g in (stats.sketch, stats.top)
                      if isinstance(g, TopK)), default=0)
        seen = f"{stats.distinct:,}" if stats.distinct is not None else "more"
        return ResultRow(CHECK, "new_categories", NOT_ENOUGH, **common,
                         reason=f"the reference lists only the top {listed:,} of {seen} values "
                                f"of {stats.name!r}: a value outside them may be rare, not new")
    value_set = pa.array(known, present.type)  # same kind as the reference: checked above
    counted = pc.value_counts(present)
    distinct = counted.field("values")
    counts = counted.field("counts")
    unseen = pc.invert(pc.is_in(distinct, value_set=value_set))
    new_values, new_counts = pc.filter(distinct, unseen), pc.filter(counts, unseen)
    new = int(pc.sum(new_counts).as_py() or 0)
    share = new / total if total else 0.0
    common["value"] = share
    top = _top(new_values, new_counts, NAMED)
    detail = {"new_values": len(new_values), "examples": [[_plain(v), c] for v, c in top]}
    if total < min_rows:
        return ResultRow(CHECK, "new_categories", NOT_ENOUGH, **common, detail=detail,
                         reason=f"{total:,} values of {stats.name!r} in the window, fewer than "
                                f"the {min_rows:,} a share needs")
    named = ", ".join(f"{_plain(v)!r} ({c:,})" for v, c in top)
    more = f" and {len(new_values) - len(top):,} more" if len(new_values) > len(top) else ""
    if share > check.max_new_category_share:
        return ResultRow(CHECK, "new_categories", FAILED, **common, detail=detail,
                         reason=f"{_pct(share)} of {stats.name!r} ({new:,} of {total:,}) are "
                                f"{len(new_values):,} values the reference never saw, more "
                                f"than the {_pct(check.max_new_category_share)} allowed: "
                                f"{named}{more}")
    return ResultRow(CHECK, "new_categories", PASSED, **common, detail=detail,
                     reason=(f"{new:,} of {total:,} values are new: {named}{more}" if new
                             else "every value was seen in the reference"))


def _complete_values(stats: ColumnStats) -> list[Any] | None:
    """Every value the reference saw, when its sketch or top list is complete."""
    for grid in (stats.sketch, stats.top):
        if isinstance(grid, TopK) and grid.complete:
            return [v for v, _n in grid.values]
    return None


def _top(values: pa.Array, counts: pa.Array, k: int) -> list[tuple[Any, int]]:
    """The ``k`` most frequent of distinct ``values`` (ties by value), by Arrow's sort."""
    if not len(values):
        return []
    if len(values) > k * 50:  # many distinct: sort only those as frequent as the k-th
        c = np.asarray(counts.to_numpy(zero_copy_only=False))
        floor = int(np.partition(c, len(c) - k)[len(c) - k])
        heavy = pc.greater_equal(counts, floor)
        values, counts = pc.filter(values, heavy), pc.filter(counts, heavy)
    order = pc.sort_indices(pa.table({"n": counts, "v": values}),
                            sort_keys=[("n", "descending"), ("v", "ascending")])[:k]
    return list(zip(values.take(order).to_pylist(), counts.take(order).to_pylist(),
                    strict=True))


def _most_frequent(values: pa.ChunkedArray | pa.Array, k: int) -> list[Any]:
    counted = pc.value_counts(values)
    return [v for v, _n in _top(counted.field("values"), counted.field("counts"), k)]


# -- feature status ------------------------------------------------------------------------


def _status_rows(check: QualityCheck, status: pa.ChunkedArray | pa.Array,
                 min_rows: int) -> list[ResultRow]:
    """Shares of predictions served with a missing/invalid (stale) feature: one DuckDB pass
    over the JSON text, overall and per feature."""
    import duckdb

    if isinstance(status, pa.ChunkedArray):
        status = status.combine_chunks() if status.num_chunks != 1 else status.chunk(0)
    if not (pa.types.is_string(status.type) or pa.types.is_large_string(status.type)):
        raise UsageError(f"feature_status must be the log's JSON text column, got "
                         f"{status.type}")
    missing = "[" + ", ".join(f"'{s}'" for s in MISSING_STATUSES) + "]"
    stale = "[" + ", ".join(f"'{s}'" for s in STALE_STATUSES) + "]"
    con = duckdb.connect()
    try:
        con.register("__status", pa.table({"s": status}))
        con.execute("CREATE TEMP TABLE __m AS SELECT "
                    "TRY_CAST(TRY_CAST(s AS JSON) AS MAP(VARCHAR, VARCHAR)) AS m, "
                    "s IS NOT NULL AS logged FROM __status")
        n, unreadable, any_missing, any_stale = con.execute(
            f"SELECT count(*) FILTER (WHERE m IS NOT NULL), "
            f"count(*) FILTER (WHERE m IS NULL AND logged), "
            f"count(*) FILTER (WHERE list_has_any(map_values(m), {missing})), "
            f"count(*) FILTER (WHERE list_has_any(map_values(m), {stale})) "
            "FROM __m").fetchall()[0]
        per_feature = con.execute(
            f"SELECT e.key AS feature, "
            f"count(*) FILTER (WHERE list_contains({missing}, e.value)) AS missing, "
            f"count(*) FILTER (WHERE list_contains({stale}, e.value)) AS stale "
            "FROM (SELECT unnest(map_entries(m)) AS e FROM __m WHERE m IS NOT NULL) "
            "GROUP BY e.key ORDER BY e.key").fetchall()
    except duckdb.Error as exc:
        raise UsageError(f"cannot read the feature_status column: "
                         f"{str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    note = (f"; {unreadable:,} {'status was' if unreadable == 1 else 'statuses were'} not a "
            "JSON object of feature statuses and left out" if unreadable else "")
    rows = []
    for metric, hits, limit, word, idx in (
            ("missing_features", any_missing, check.max_missing_features,
             "missing or invalid", 1),
            ("stale_features", any_stale, check.max_stale_features, "stale", 2)):
        rows.append(_share_row(metric, None, hits, n, limit, min_rows,
                               f"at least one feature {word}", note))
        for row in per_feature:
            rows.append(_share_row(metric, row[0], row[idx], n, limit, min_rows,
                                   f"{row[0]!r} {word}", ""))
    return rows


def _share_row(metric: str, column: str | None, hits: int, n: int, limit: float,
               min_rows: int, what: str, note: str) -> ResultRow:
    share = hits / n if n else 0.0
    common: dict[str, Any] = {"column": column, "value": share, "threshold": limit,
                              "n_current": n}
    if n < min_rows:
        return ResultRow(CHECK, metric, NOT_ENOUGH, **common,
                         reason=f"{n:,} predictions with a feature status in the window, "
                                f"fewer than the {min_rows:,} a share needs{note}")
    said = f"{_pct(share)} of predictions ({hits:,} of {n:,}) were served with {what}"
    if share > limit:
        return ResultRow(CHECK, metric, FAILED, **common,
                         reason=f"{said}, more than the {_pct(limit)} allowed{note}")
    return ResultRow(CHECK, metric, PASSED, **common, reason=f"{said}{note}")


# -- freshness ----------------------------------------------------------------------------


def _freshness_rows(limit_s: float, log_newest: datetime | None,
                    views: Mapping[str, datetime | None], now: datetime) -> list[ResultRow]:
    rows = [_age_row(None, log_newest, limit_s, now, "the prediction log",
                     "no predictions logged")]
    for view in sorted(views):
        rows.append(_age_row(view, views[view], limit_s, now, f"feature view {view!r}",
                             f"feature view {view!r} was never materialized"))
    return rows


def _age_row(column: str | None, newest: datetime | None, limit_s: float, now: datetime,
             what: str, never: str) -> ResultRow:
    if newest is None:
        return ResultRow(CHECK, "freshness", FAILED, column, threshold=limit_s, reason=never)
    if newest.tzinfo is None:
        raise UsageError(f"the newest time of {what} ({newest.isoformat()}) has no time zone")
    age = (now - newest).total_seconds()
    said = (f"the newest event of {what} is {duration(max(age, 0.0))} old "
            f"({newest.isoformat(timespec='seconds')})")
    if age > limit_s:
        return ResultRow(CHECK, "freshness", FAILED, column, value=age, threshold=limit_s,
                         reason=f"{said}, older than the {duration(limit_s)} allowed")
    return ResultRow(CHECK, "freshness", PASSED, column, value=age, threshold=limit_s,
                     reason=said)


# -- small helpers ---------------------------------------------------------------------------


def _contract(contract: Mapping[str, Mapping[str, Any]],
              reference: TableProfile) -> dict[str, dict[str, Any]]:
    """The contract's rules checked: known columns, known keys, numbers for min/max."""
    out: dict[str, dict[str, Any]] = {}
    names = set(reference.names)
    for column, rule in contract.items():
        if column not in names:
            continue  # a contract covers the table; the model uses some of its columns
        if not isinstance(rule, Mapping) or not set(rule) <= _CONTRACT_KEYS:
            raise UsageError(f"the contract's rule for {column!r} must be a mapping of min, max "
                             f"or values (allowed), got {echo(rule)!r}")
        got = dict(rule)
        if "allowed" in got:
            got.setdefault("values", got.pop("allowed"))
        for key in ("min", "max"):
            if got.get(key) is not None and _float(got[key]) is None:
                raise UsageError(f"the contract's {key} of {column!r} must be a number, got "
                                 f"{echo(got[key])!r}")
        if "values" in got and (isinstance(got["values"], str | bytes)
                                or not isinstance(got["values"], Sequence)):
            raise UsageError(f"the contract's allowed values of {column!r} must be a list, "
                             f"got {echo(got['values'])!r}")
        out[column] = {k: v for k, v in got.items() if v is not None}
    return out


def _float(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _num(v: float | None) -> str:
    if v is None:
        return "..."
    return f"{v:g}"


def _pct(share: float) -> str:
    return f"{share:.1%}" if share >= 0.001 or share == 0 else f"{share:.3%}"


def _plain(v: Any) -> Any:
    """A value fit for JSON and a reason: numbers and text as they are, the rest as text."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return str(v)


__all__ = ["quality_rows", "view_freshness"]
