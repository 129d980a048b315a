"""Drift sketches: each column's values counted over a grid its reference fixes.

A sketch is what a two-sample drift test needs of one window, small enough to store with a model
version or a monitor's window, and computed in one pass over each column with Arrow and numpy:

* **numeric** columns: the reference's values sorted once, its grid is ``SKETCH_BINS + 1``
  percentiles (the smallest value, every 1 %, the largest; tied percentiles merge, so an integer
  count gets one edge per value common enough to hold a percentile, plus its minimum and
  maximum), counted into a ``Histogram`` (bin ``i`` holds
  ``edges[i] <= x < edges[i+1]``, the last bin is closed; values outside the edges, infinities
  included, land in ``below``/``above``). A current window sketched ``against`` it is counted in
  the same edges, so the two compare bucket by bucket (a KS statistic at every percentile, PSI
  over the reference's deciles). NaN is counted apart (``nans``) and in no bucket.
* **categorical and boolean** columns: a ``TopK`` of the ``SKETCH_TOP_K`` most frequent values
  (ties by value), the rest as ``other``, ``complete`` when it lists every value. A current window
  sketched ``against`` it counts the reference's values in its order; when the reference was
  complete, values it never saw are ``unseen`` (and the most frequent, up to ``NEW_KEPT``, are
  listed in ``new``), otherwise they count as ``other``. A sketch that is not complete (more
  than ``SKETCH_TOP_K`` values) also counts every value in ``HASH_BUCKETS`` hash buckets
  (``hashed``), a partition fixed in advance that a drift test can trust.

Counting uses the sorted column (numpy's vectorised sort, then one binary search per edge) and
Arrow's hash ``value_counts``: no Python runs per row, and a 100,000-distinct-value text column
still yields a sketch of ``SKETCH_TOP_K`` values.

Example::

    import pyarrow as pa
    from tarmac.profile.sketch import sketch_column

    ref = sketch_column("x", pa.chunked_array([[1.0, 2.0, 2.0, 3.0, None]]))
    ref.sketch.edges                      # (1.0, 2.0, 3.0): the percentiles, tied ones merged
    live = sketch_column("x", pa.chunked_array([[2.0, 9.0]]), against=ref)
    live.sketch.counts, live.sketch.above  # ((0, 1), 1): 9.0 is beyond the reference
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.profile._stats import ColumnStats, Histogram, Kind, Scalar, TopK

#: percentile bins of a numeric reference grid (101 edges before tied ones merge)
SKETCH_BINS = 100
#: categories a categorical sketch lists before counting the rest as ``other``
SKETCH_TOP_K = 200
#: how many never-seen values a sketch ``against`` a complete reference lists, most frequent
#: first (the drift test itemises them; a report names the first few)
NEW_KEPT = SKETCH_TOP_K
#: hash buckets of a high-cardinality (incomplete) categorical sketch
HASH_BUCKETS = 64


def arrow_kind(t: pa.DataType) -> Kind:
    """The statistics family of an Arrow type (``int64`` -> numeric, ``string`` ->
    categorical, ``bool`` -> boolean...), as ``tarmac.profile.kind_of`` names DuckDB's."""
    if pa.types.is_dictionary(t):
        return arrow_kind(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
        return "categorical"
    if pa.types.is_temporal(t):
        return "temporal"
    if pa.types.is_nested(t):
        return "nested"
    return "other"


def sketch_column(name: str, values: pa.ChunkedArray | pa.Array, *,
                  against: ColumnStats | None = None, bins: int = SKETCH_BINS,
                  top_k: int = SKETCH_TOP_K, type_name: str | None = None) -> ColumnStats:
    """The drift sketch of one column, with its count, nulls, NaNs and (numbers) min, max,
    mean and std, as a ``ColumnStats`` whose ``sketch`` is set.

    ``against`` is the reference column's statistics: its sketch's grid (else, for a profile
    stored without one, its coarser ``histogram`` or ``top``) is reused, so the two sketches
    compare bucket by bucket. Without it the column is a reference and sets its own grid of
    ``bins`` percentile bins or ``top_k`` categories. A column of another kind than ``against``
    (text against numbers) raises ``ValueError``: the caller reports the type change.

    >>> import pyarrow as pa
    >>> s = sketch_column("plan", pa.array(["a", "b", "a", None]))
    >>> s.sketch.values, s.sketch.complete, s.nulls
    ((('a', 2), ('b', 1)), True, 1)
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1 (got {bins})")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1 (got {top_k})")
    kind = arrow_kind(values.type)
    if against is not None and _family(against.kind) != _family(kind):
        raise ValueError(f"column {name!r} is {kind} ({values.type}) but its reference is "
                         f"{against.kind} ({against.type})")
    rows, nulls = len(values), values.null_count
    base = ColumnStats(name=name, type=type_name or str(values.type), kind=kind, count=rows,
                       nulls=nulls)
    grid = None if against is None else grid_of(against)
    if kind == "numeric":
        if isinstance(grid, TopK):
            raise ValueError(f"column {name!r}: its reference's grid is not a histogram")
        return _numeric(base, values, grid, bins)
    if kind in ("categorical", "boolean"):
        if isinstance(grid, Histogram):
            raise ValueError(f"column {name!r}: its reference's grid is not a list of values")
        return replace(base, sketch=_categorical(values, grid, top_k))
    return base


def grid_of(stats: ColumnStats) -> Histogram | TopK | None:
    """The grid a column's statistics offer a drift test: the sketch, else (a profile stored
    before sketches) the coarse ``histogram`` or ``top``."""
    if stats.sketch is not None:
        return stats.sketch
    return stats.histogram if stats.kind == "numeric" else stats.top


def _family(kind: Kind) -> str:
    return "numeric" if kind == "numeric" else kind


def _numeric(base: ColumnStats, values: pa.ChunkedArray | pa.Array, grid: Histogram | None,
             bins: int) -> ColumnStats:
    """Sort the values once; the grid's edges (the reference's own percentiles when no grid
    is given) are then counted with one binary search each."""
    if base.nulls:
        values = pc.drop_null(values)
    if values.type != pa.float64():
        values = pc.cast(values, pa.float64(), safe=False)  # ints past 2**53 round; fine here
    x = np.asarray(values.to_numpy() if isinstance(values, pa.ChunkedArray)
                   else values.to_numpy(zero_copy_only=False), dtype=np.float64)
    nan = np.isnan(x)
    nans = int(nan.sum())
    s = np.sort(x[~nan] if nans else x)  # NaN sorts last; dropping it first keeps the rest exact
    stats = replace(base, nans=nans)
    if not len(s):
        return stats if grid is None else replace(stats, sketch=_count(s, grid.edges))
    lo, hi = np.searchsorted(s, -np.inf, "right"), np.searchsorted(s, np.inf, "left")
    finite = s[lo:hi]
    if len(finite):
        stats = replace(stats, min=float(s[0]), max=float(s[-1]),
                        mean=float(finite.mean()),
                        std=float(finite.std(ddof=1)) if len(finite) > 1 else None)
    else:
        stats = replace(stats, min=float(s[0]), max=float(s[-1]))
    if grid is None:
        if not len(finite):  # only infinities: no grid to set
            return stats
        at = np.round(np.linspace(0, len(finite) - 1, bins + 1)).astype(np.int64)
        edges = np.unique(finite[at])
        grid_edges = tuple(float(e) for e in edges) if len(edges) > 1 else (float(edges[0]),) * 2
    else:
        grid_edges = grid.edges
    return replace(stats, sketch=_count(s, grid_edges))


def _count(s: np.ndarray, edges: Sequence[float]) -> Histogram:
    """Counts of the sorted values ``s`` in ``edges`` (``[e_i, e_i+1)``, the last bin closed)."""
    e = np.asarray(edges, dtype=np.float64)
    below_each = np.searchsorted(s, e, "left")  # values < each edge
    at_most_last = int(np.searchsorted(s, e[-1], "right"))
    counts = np.diff(below_each)
    counts[-1] = at_most_last - below_each[-2]
    return Histogram(tuple(float(v) for v in e), tuple(int(c) for c in counts),
                     int(below_each[0]), len(s) - at_most_last)


def _categorical(values: pa.ChunkedArray | pa.Array, ref: TopK | None, k: int) -> TopK:
    """Counts per distinct value by Arrow's hash kernel, then the top ``k`` or the
    reference's values (only the distinct values are handled here, never the rows)."""
    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, values.type.value_type)
    if str(values.type) == "string_view" or pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    counted = pc.value_counts(pc.drop_null(values) if values.null_count else values)
    distinct: pa.Array = counted.field("values")
    counts = counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
    total = int(counts.sum())
    if ref is None:
        top = _ranked(distinct, counts)[:k]
        pairs = tuple(zip(distinct.take(pa.array(top)).to_pylist(), counts[top].tolist(),
                          strict=True))
        complete = len(distinct) <= k
        return TopK(pairs, total - sum(n for _v, n in pairs), complete,
                    hashed=() if complete else hash_counts(distinct, counts))
    listed: list[Scalar] = [v for v, _n in ref.values]
    found = np.zeros(len(listed), dtype=np.int64)
    outside = np.ones(len(distinct), dtype=bool)
    if listed and len(distinct):
        where = pc.index_in(distinct, value_set=pa.array(listed, type=distinct.type))
        idx = pc.fill_null(where, -1).to_numpy(zero_copy_only=False)
        outside = idx < 0
        found = np.bincount(idx[~outside], weights=counts[~outside],
                            minlength=len(listed)).astype(np.int64)
    pairs = tuple(zip(listed, found.tolist(), strict=True))
    rest = total - int(found.sum())
    if not ref.complete:
        return TopK(pairs, rest, False, None, hashed=hash_counts(distinct, counts))
    new: tuple[tuple[Scalar, int], ...] = ()
    if rest:
        unseen_at = np.flatnonzero(outside)
        unseen = distinct.take(pa.array(unseen_at))
        first = _ranked(unseen, counts[unseen_at])[:NEW_KEPT]
        new = tuple(zip(unseen.take(pa.array(first)).to_pylist(),
                        counts[unseen_at][first].tolist(), strict=True))
    return TopK(pairs, 0, True, rest, new)


def _ranked(distinct: pa.Array, counts: np.ndarray) -> np.ndarray:
    """Positions of ``distinct`` by count, most frequent first, ties by value."""
    order = pc.sort_indices(pa.table({"n": counts, "v": distinct}),
                            sort_keys=[("n", "descending"), ("v", "ascending")])
    return np.asarray(order.to_numpy(), dtype=np.int64)


def hash_counts(distinct: pa.Array, counts: np.ndarray,
                buckets: int = HASH_BUCKETS) -> tuple[int, ...]:
    """``counts`` summed per hash bucket of their values: a partition of every possible value
    fixed in advance, so that a high-cardinality column is tested without choosing categories
    from the very counts being tested (the reference's top values are its luckiest ones).

    The hash is FNV-1a over the value's UTF-8 text (its first 256 bytes and its length), then
    a 64-bit finaliser, stable across processes and versions, computed one byte position at a
    time across all distinct values (never a Python loop over values)."""
    if not len(distinct):
        return (0,) * buckets
    text = distinct if pa.types.is_string(distinct.type) else pc.cast(distinct, pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    offsets_buf, data_buf = text.buffers()[1], text.buffers()[2]
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.zeros(1, dtype=np.uint8))
    starts, lengths = offsets[:-1].astype(np.int64), np.diff(offsets).astype(np.int64)
    h = np.full(len(text), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for j in range(int(min(lengths.max(), 256))):
            live = lengths > j
            h[live] = (h[live] ^ data[starts[live] + j].astype(np.uint64)) * prime
        h = (h ^ lengths.astype(np.uint64)) * prime
        h ^= h >> np.uint64(33)  # splitmix-style finaliser: every bit reaches the low ones
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
    bucket = (h % np.uint64(buckets)).astype(np.int64)
    return tuple(int(v) for v in np.bincount(bucket, weights=counts, minlength=buckets))
