"""The aggregates of a stream feature view: ``agg.count()``, ``agg.sum("amount")``, ...

Each is computed over every window of the view and named ``{column}_{fn}_{window}``
(``count_{window}`` for ``count``), or ``{name}_{window}`` with ``name=``. ``dtype`` overrides
the feature type, which otherwise follows the column: ``sum``, ``min``, ``max`` and ``last``
keep the column's type (an integer column sums to ``int64``), ``mean`` is ``float64``,
``count`` and ``distinct`` are ``int64``. Nulls in a column are skipped.

Example::

    from tarmac.features import StreamFeatureView, agg
    StreamFeatureView(name="spend", entities=[customer], source="payments",
                      aggregates=[agg.count(), agg.sum("amount"), agg.max("amount"),
                                  agg.last("country"), agg.distinct("merchant")],
                      windows=["10m", "1h", "1d"])
"""

from __future__ import annotations

from tarmac.features.definitions import Aggregation


def count(*, name: str | None = None) -> Aggregation:
    """How many events (rows, each primary key and event time counted once)."""
    return Aggregation("count", None, None, name)


def sum(column: str, dtype: str | None = None, *, name: str | None = None) -> Aggregation:  # noqa: A001
    """The sum of the column's values (0 over a window without any)."""
    return Aggregation("sum", column, dtype, name)


def mean(column: str, *, name: str | None = None) -> Aggregation:
    """The mean of the column's values (null over a window without any)."""
    return Aggregation("mean", column, None, name)


def min(column: str, dtype: str | None = None, *, name: str | None = None) -> Aggregation:  # noqa: A001
    """The smallest value (numbers, text, times; null over a window without any)."""
    return Aggregation("min", column, dtype, name)


def max(column: str, dtype: str | None = None, *, name: str | None = None) -> Aggregation:  # noqa: A001
    """The largest value (numbers, text, times; null over a window without any)."""
    return Aggregation("max", column, dtype, name)


def last(column: str, dtype: str | None = None, *, name: str | None = None) -> Aggregation:
    """The value of the latest event having one (ties in time: the largest value)."""
    return Aggregation("last", column, dtype, name)


def distinct(column: str, *, name: str | None = None) -> Aggregation:
    """How many distinct values (exact)."""
    return Aggregation("distinct", column, None, name)


__all__ = ["count", "distinct", "last", "max", "mean", "min", "sum"]
