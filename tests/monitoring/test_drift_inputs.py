"""What ``drift`` accepts, what it refuses, and the "not enough data" verdicts it gives instead
of false alarms."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tarmac.errors import UsageError
from tarmac.monitoring import DriftReport, drift
from tarmac.profile import TableProfile, profile

N = 2_000


def frame(shift: float = 0.0, n: int = N, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"amount": rng.normal(shift, 1, n),
                     "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]),
                     "visits": rng.poisson(3, n)})


def test_an_empty_reference_is_an_error_an_empty_window_is_not_enough_data() -> None:
    """An empty reference is a wrong table, query or time range: nothing could ever be
    compared, so it fails loudly. An empty current window is a quiet hour: each column says
    so."""
    with pytest.raises(UsageError, match="the reference has no rows"):
        drift(frame().slice(0, 0), frame())
    report = drift(frame(), frame().slice(0, 0))
    assert report.drifted == [] and report.untested == ["amount", "plan", "visits"]
    assert {r.reason for r in report} == {"the current data has no rows"}


def test_missing_columns_and_changed_types_are_reported_not_raised() -> None:
    ref = frame()
    cur = frame(seed=1).drop_columns(["visits"])
    cur = cur.set_column(0, "amount", pa.array([str(v) for v in cur.column("amount")]))
    report = drift(ref, cur)
    assert report["visits"].verdict == "not enough data"
    assert report["visits"].reason == "missing from the current data"
    assert report["amount"].reason == ("type changed: double in the reference, string in the "
                                       "current data")
    assert report["plan"].verdict == "not drifted"
    only_current = drift(ref.drop_columns(["plan"]), frame(), columns=["plan", "amount"])
    assert only_current["plan"].reason == "missing from the reference"
    with pytest.raises(UsageError, match="'nope' is in neither"):
        drift(ref, cur, columns=["nope"])


def test_integers_against_floats_are_compared_as_numbers() -> None:
    rng = np.random.default_rng(1)
    ref = pa.table({"x": rng.poisson(4, N)})
    cur = pa.table({"x": rng.poisson(4, N).astype(np.float64)})
    row = drift(ref, cur)["x"]
    assert row.test == "ks" and row.verdict == "not drifted"


def test_nulls_constants_and_small_windows_give_not_enough_data_with_the_reason() -> None:
    rng = np.random.default_rng(2)
    ref = pa.table({"all_null": pa.array([1.0] * N), "const": [7] * N, "const_cat": ["a"] * N,
                    "moved": [7] * N, "few": rng.normal(size=N), "nan": rng.normal(size=N)})
    cur = pa.table({"all_null": pa.array([None] * N, pa.float64()), "const": [7] * N,
                    "const_cat": ["a"] * N, "moved": [7] * (N - 500) + [9] * 500,
                    "few": pa.array(np.where(np.arange(N) < 50, 1.0, np.nan)),
                    "nan": pa.array(rng.normal(size=N), mask=np.arange(N) % 2 == 0)})
    report = drift(ref, cur)
    assert report["all_null"].reason == "no values in the current data: all 2,000 rows are null"
    assert report["const"].reason == "constant: every value is 7 in both windows"
    assert report["const_cat"].reason == "constant: every value is 'a' in both windows"
    assert report["few"].reason == ("only 50 non-null values in the current data (at least 100 "
                                    "needed)")
    assert report["few"].current_null_rate == pytest.approx(1 - 50 / N)
    # a constant that moved is drift, not a lack of data; half nulls still leave enough data
    assert report["moved"].verdict == "drifted" and report["moved"].effect_class == "large"
    assert report["nan"].verdict == "not drifted" and report["nan"].current_count == N // 2
    assert report.drifted == ["moved"]


def test_infinities_count_as_values_beyond_the_reference_range() -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 1, N)
    cur = np.concatenate([rng.permutation(values)[:N - 200], [np.inf] * 200])
    row = drift(pa.table({"x": values}), pa.table({"x": cur}))["x"]
    assert row.verdict == "drifted"
    assert row.note.startswith("10.0% of current values outside the reference's range [0.")


def test_a_hundred_thousand_categories_are_tested_over_hash_buckets() -> None:
    """A reference's 200 most frequent of 100,000 near-uniform ids are its luckiest ones: a
    test over them would flag every fresh sample (it did, at p < 1e-80). Hash buckets of every
    value are a partition fixed in advance: no false alarm, and a new heavy hitter still
    shows."""
    rng = np.random.default_rng(9)
    ids = np.array([f"user_{i}" for i in range(100_000)])
    ref = pa.table({"user": rng.choice(ids, 20_000)})
    same = pa.table({"user": rng.choice(ids, 20_000)})
    heavy = pa.table({"user": np.concatenate([rng.choice(ids, 18_000), ["bot"] * 2_000])})
    row = drift(ref, same)["user"]
    assert row.verdict == "not drifted" and row.p_value is not None and row.p_value > 0.01
    assert row.note == ("high cardinality: more than 200 categories, tested over 64 hash "
                        "buckets of every value")
    assert drift(ref, heavy)["user"].verdict == "drifted"


def test_a_stored_profile_is_a_reference_giving_the_same_verdicts_as_the_data() -> None:
    ref, cur = frame(), frame(0.3, seed=1)
    stored = TableProfile.from_dict(profile(ref, sketch=True).to_dict())
    from_data, from_profile = drift(ref, cur), drift(stored, cur)
    assert from_profile.to_arrow().equals(from_data.to_arrow())
    assert from_profile.drifted == ["amount"]
    with pytest.raises(UsageError, match="can only be the reference"):
        drift(ref, stored)


def test_a_profile_stored_before_sketches_is_a_coarse_reference() -> None:
    ref, cur = frame(), frame(1.0, seed=1)
    old = profile(ref)  # 10 equal-width bins and the top 10 categories, no sketch
    report = drift(old, cur)
    assert report.drifted == ["amount"]
    assert "coarse reference" in report["amount"].note and report["plan"].verdict == "not drifted"


def test_arrow_pandas_readers_and_parquet_datasets(tmp_path: Path) -> None:
    ref, cur = frame(), frame(0.5, seed=1)
    pq.write_table(cur, tmp_path / "cur.parquet")
    expected = drift(ref, cur).to_arrow()
    for a, b in [(ref.to_pandas(), cur.to_pandas()),
                 (ref.to_reader(), pads.dataset(tmp_path / "cur.parquet")),
                 (ref.to_batches()[0], cur)]:
        assert drift(a, b).to_arrow().equals(expected)
    with pytest.raises(UsageError, match="cannot compare a dict"):
        drift({"amount": [1.0]}, cur)
    with pytest.raises(UsageError, match="needs a project"):
        drift("SELECT 1", cur)
    with pytest.raises(UsageError, match="cannot test column 'day' for drift: it is temporal"):
        drift(pa.table({"day": pa.array([1], pa.date32())}), cur, columns=["day"])


@pytest.mark.parametrize(("options", "message"), [
    ({"alpha": 1.5}, "alpha must be between 0 and 1"),
    ({"correction": "bonferroni"}, "correction must be 'holm', 'bh' or 'none'"),
    ({"min_effect": "none"}, "min_effect must be 'small', 'medium' or 'large'"),
    ({"thresholds": {"psi": (0.2, 0.1, 0.3)}}, "three ascending numbers"),
    ({"thresholds": {"ks": (0.1, 0.2, 0.3)}}, "unknown effect 'ks'"),
    ({"bins": 5}, "bins must be at least 10"),
])
def test_bad_options_are_refused_with_what_was_wrong(options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        drift(frame(), frame(), **options)


def test_corrections_and_effect_floor() -> None:
    rng = np.random.default_rng(4)
    ref = pa.table({f"c{i}": rng.normal(size=N) for i in range(8)})
    cur = pa.table({f"c{i}": rng.normal(0.08 * i, 1, N) for i in range(8)})
    holm, bh, none = (drift(ref, cur, correction=c) for c in ("holm", "bh", "none"))
    p = np.array([r.p_value for r in none], dtype=float)
    order = np.argsort(p)
    expected_holm = np.empty(8)
    expected_holm[order] = np.minimum(np.maximum.accumulate((8 - np.arange(8)) * p[order]), 1)
    assert [r.p_adjusted for r in holm] == pytest.approx(expected_holm.tolist())
    for a, b, c in zip(holm, bh, none, strict=True):
        assert a.p_adjusted >= b.p_adjusted >= c.p_adjusted == c.p_value  # type: ignore[operator]
    assert set(holm.drifted) <= set(bh.drifted) <= set(none.drifted)
    large_only = drift(ref, cur, min_effect="large")
    assert large_only.drifted == ["c7"]
    assert large_only["c5"].reason.endswith("(medium) is below the large threshold 0.25")


def test_report_forms_table_text_rich_and_self_contained_html() -> None:
    report = drift(frame(), frame(0.5, seed=1))
    assert isinstance(report, DriftReport) and len(report) == 3
    table = report.to_arrow()
    assert table.num_rows == 3 and table.column("verdict").to_pylist() == [
        "drifted", "not drifted", "not drifted"]
    assert {"p_adjusted", "effect_size", "reference_count", "current_null_rate"} <= set(
        table.column_names)
    text = str(report)
    assert text.startswith("Drift: 1 of 3 tested columns drifted")
    assert "amount: significant" in text
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(report)
    assert "not drifted" in console.export_text()
    page = report.to_html(title="churn <v3>")
    assert page.startswith("<!DOCTYPE html>") and "churn &lt;v3&gt;" in page
    assert page.count("<svg") == 3 and "<script" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched: opens offline
