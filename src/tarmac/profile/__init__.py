"""Column statistics shared by the survey, materialization, training and monitoring.

One profile per table: for each column its count, nulls, a distinct estimate and, by kind,
min/max, mean, std, quantiles at fixed probabilities, a fixed-bin histogram (numbers) or the
top values with the rest counted as ``other`` (text, booleans). Everything is computed by DuckDB
in a few set-based queries, over an Arrow table, a DuckDB relation, SQL text or a lake table.

Profiles are typed (``TableProfile`` of ``ColumnStats``) and round-trip through JSON
(``to_dict``/``from_dict``), which is how the catalog stores them with each materialization and
model version. A profile computed ``against=`` a reference reuses the reference's histogram
edges, quantile probabilities and categories, so monitoring compares the two bin by bin (see
``docs/profile.md``). ``sketch=True`` adds the finer drift sketch the monitors test with
(``tarmac.profile.sketch``: percentile-grid counts, up to ``SKETCH_TOP_K`` categories).

Example::

    import pyarrow as pa
    from tarmac.profile import profile

    train = profile(pa.table({"amount": [1.0, 2.5, 4.0, None], "plan": ["a", "b", "a", "a"]}))
    train["amount"].mean                      # 2.5
    train["plan"].top.values                  # (('a', 3), ('b', 1))
    live = profile(pa.table({"amount": [9.0], "plan": ["c"]}), against=train)
    live["amount"].histogram.above            # 1: beyond the training range
    live["plan"].top.unseen                   # 1: a category training never saw
"""

from __future__ import annotations

from tarmac.profile._compute import kind_of, profile, profile_table
from tarmac.profile._stats import (
    BINS,
    QUANTILES,
    TOP_K,
    ColumnStats,
    Histogram,
    Kind,
    Scalar,
    TableProfile,
    TopK,
)
from tarmac.profile.sketch import SKETCH_BINS, SKETCH_TOP_K, sketch_column

__all__ = ["BINS", "QUANTILES", "SKETCH_BINS", "SKETCH_TOP_K", "TOP_K", "ColumnStats",
           "Histogram", "Kind", "Scalar", "TableProfile", "TopK", "kind_of", "profile",
           "profile_table", "sketch_column"]
