"""``tarmac.profile.sketch``: the per-column grids and counts the drift tests compare."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from tarmac.profile import SKETCH_TOP_K, Histogram, TableProfile, TopK, profile, sketch_column
from tarmac.profile.sketch import hash_counts


def test_numeric_grid_is_the_references_percentiles_and_counts_match_numpy() -> None:
    rng = np.random.default_rng(3)
    values = rng.lognormal(0, 2, 50_000)
    s = sketch_column("x", pa.chunked_array([values])).sketch
    assert isinstance(s, Histogram) and len(s.edges) == 101
    ordered = np.sort(values)
    assert s.edges[0] == ordered[0] and s.edges[-1] == ordered[-1]
    assert s.edges[50] == pytest.approx(np.median(values), rel=1e-3)
    counts, _ = np.histogram(values, bins=np.array(s.edges))  # same [a, b) / closed-last rule
    assert s.counts == tuple(counts) and (s.below, s.above) == (0, 0)
    assert max(s.counts) - min(s.counts) <= 2  # percentile bins hold equal shares


def test_integer_counts_with_ties_merge_tied_percentiles_into_one_edge() -> None:
    values = np.random.default_rng(1).poisson(0.7, 10_000)
    s = sketch_column("k", pa.array(values)).sketch
    assert isinstance(s, Histogram)
    distinct, n = np.unique(values, return_counts=True)
    # the smallest, the largest, and every value holding a percentile (>= 1 % of the rows)
    common = {float(v) for v, k in zip(distinct, n, strict=True) if k >= 100}
    assert common | {0.0, float(values.max())} == set(s.edges) and len(s.edges) < 101
    assert s.counts[0] == (values == 0).sum() and sum(s.counts) == len(values)


def test_a_window_counted_against_a_reference_grid_reports_what_falls_outside() -> None:
    ref = sketch_column("x", pa.array([float(i) for i in range(101)]))
    assert isinstance(ref.sketch, Histogram)
    live = sketch_column("x", pa.array([-np.inf, -5.0, 0.0, 50.0, 100.0, 250.0, np.inf,
                                        np.nan, None]), against=ref)
    h = live.sketch
    assert isinstance(h, Histogram) and h.edges == ref.sketch.edges
    assert (h.below, h.above, sum(h.counts)) == (2, 2, 3)  # infinities land outside
    assert (live.nans, live.nulls, live.count) == (1, 1, 9)


def test_constant_and_all_null_and_infinite_only_columns() -> None:
    const = sketch_column("c", pa.array([3.0] * 10))
    assert isinstance(const.sketch, Histogram) and const.sketch.edges == (3.0, 3.0)
    assert const.sketch.counts == (10,)
    empty = sketch_column("n", pa.array([None, None], pa.float64()))
    assert empty.sketch is None and empty.nulls == 2
    inf = sketch_column("i", pa.array([np.inf, -np.inf]))
    assert inf.sketch is None and (inf.min, inf.max) == (-np.inf, np.inf)
    against = sketch_column("n", pa.array([None], pa.float64()), against=const)
    assert isinstance(against.sketch, Histogram) and against.sketch.total == 0


def test_categories_against_a_complete_reference_name_the_new_ones() -> None:
    ref = sketch_column("plan", pa.array(["a"] * 5 + ["b"] * 3 + [None]))
    assert isinstance(ref.sketch, TopK) and ref.sketch.complete
    assert ref.sketch.values == (("a", 5), ("b", 3)) and ref.nulls == 1
    live = sketch_column("plan", pa.array(["b", "z", "z", "y", "a"]).dictionary_encode(),
                         against=ref).sketch
    assert isinstance(live, TopK)
    assert live.values == (("a", 1), ("b", 1)) and live.unseen == 3 and live.other == 0
    assert live.new == (("z", 2), ("y", 1))


def test_a_hundred_thousand_distinct_values_keep_the_top_k_and_count_the_rest() -> None:
    values = pa.array([f"user_{i}" for i in range(100_000)] + ["vip"] * 500)
    ref = sketch_column("u", values)
    top = ref.sketch
    assert isinstance(top, TopK) and not top.complete and len(top.values) == SKETCH_TOP_K
    assert top.values[0] == ("vip", 500) and top.other == 100_500 - sum(n for _v, n in top.values)
    # every value in one of 64 hash buckets: about 100,500 / 64 each, "vip" adding 500 to one
    assert len(top.hashed) == 64 and sum(top.hashed) == 100_500
    assert 1_250 < sorted(top.hashed)[len(top.hashed) // 2] < 1_900
    live = sketch_column("u", pa.array(["vip", "someone_new"]), against=ref).sketch
    assert isinstance(live, TopK)
    assert live.count("vip") == 1 and live.other == 1 and live.unseen is None  # may be rare
    assert sum(live.hashed) == 2 and live.hashed == sketch_column(
        "u", pa.array(["someone_new", "vip"]), against=ref).sketch.hashed  # the same buckets


def test_hash_buckets_are_stable_across_processes() -> None:
    """Stored sketches are compared with windows counted years later: the bucket of a value is
    a fixed function of its text (not Python's salted ``hash``)."""
    import subprocess
    import sys

    code = ("import numpy as np, pyarrow as pa; from tarmac.profile.sketch import hash_counts; "
            "print(hash_counts(pa.array(['a', 'Zürich', '', 'x' * 300]), np.array([1, 2, 3, 4])))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    here = hash_counts(pa.array(["a", "Zürich", "", "x" * 300]), np.array([1, 2, 3, 4]))
    assert there == f"{here}\n" and sorted(n for n in here if n) == [1, 2, 3, 4]


def test_a_column_of_another_kind_than_its_reference_is_refused() -> None:
    ref = sketch_column("x", pa.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="is categorical .* reference is numeric"):
        sketch_column("x", pa.array(["1", "2"]), against=ref)


def test_profile_with_sketches_round_trips_through_json_and_matches_sketch_column() -> None:
    table = pa.table({"x": [1.0, 2.0, None, 4.0], "plan": ["a", "b", "a", None],
                      "flag": [True, False, True, None], "day": pa.array([1, 2, 3, 4],
                                                                         pa.date32())})
    prof = profile(table, sketch=True)
    assert prof["x"].sketch == sketch_column("x", table.column("x")).sketch
    assert prof["flag"].sketch == TopK(((True, 2), (False, 1)), 0, True)
    assert prof["day"].sketch is None  # dates are not tested for drift
    stored = json.loads(json.dumps(prof.to_dict()))
    assert TableProfile.from_dict(stored) == prof
    live = profile(pa.table({"plan": ["c", "a"]}), against=prof, sketch=True)["plan"].sketch
    assert isinstance(live, TopK) and live.unseen == 1 and live.new == (("c", 1),)
    assert "sketch" not in profile(table)["x"].to_dict()  # only when asked for
