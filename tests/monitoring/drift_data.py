"""A generated data set with drift injected in known columns, shared by the correctness tests
and ``benchmarks/bench_monitoring.py``.

50 columns, the benchmark's shape: 40 numeric (normal, uniform, heavy-tailed lognormal, Pareto
and Student-t, integer counts with many ties, zero-inflated amounts, some with nulls or NaN)
and 10 categorical (4 to 200 categories, Zipf-shaped, a boolean). 11 columns drift in the
current window, each in one of the ways the issue names, at the strength given in
``DRIFTED`` (the effect class the default thresholds should give); the other 39 are drawn from
the same distribution on both sides.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

Gen = Callable[[np.random.Generator, int], pa.Array]

#: drifted column -> the effect class expected at the default thresholds
DRIFTED: dict[str, str] = {
    "num_mean_shift_small": "small",   # +0.2 sd: subtle but real
    "num_mean_shift_large": "large",   # +1 sd
    "num_variance": "small",           # sd x 1.3
    "num_widened_bounds": "small",     # uniform [0, 100] -> [-7, 107]
    "heavy_lognormal_scale": "small",  # heavy tail, every value x 1.3
    "heavy_pareto_tail": "small",      # Pareto tail index 1.5 -> 1.3
    "count_poisson_rate": "small",     # Poisson rate 3 -> 3.5 (integer ties)
    "amount_zero_share": "small",      # zero-inflated: 60 % zeros -> 50 %
    "cat_new_category": "small",       # 2 % of rows in a category never seen
    "cat_reshuffled": "small",         # the two most common categories swap shares
    "cat_zipf_exponent": "small",      # 200 categories, Zipf exponent 1.1 -> 1.2
}


def _with_nulls(arr: np.ndarray, rng: np.random.Generator, share: float) -> pa.Array:
    return pa.array(arr, mask=rng.random(len(arr)) < share)


def _zipf(rng: np.random.Generator, n: int, k: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** s
    return rng.choice(k, size=n, p=w / w.sum())


def _cats(codes: np.ndarray, prefix: str, mask: np.ndarray | None = None) -> pa.Array:
    names = pa.array([f"{prefix}{i:03d}" for i in range(int(codes.max()) + 1)])
    indices = pa.array(codes, pa.int32(), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, names).cast(pa.string())


def _zero_inflated(rng: np.random.Generator, n: int, zeros: float) -> np.ndarray:
    return np.where(rng.random(n) < zeros, 0.0, np.round(rng.lognormal(3, 1, n), 2))


def _shares(rng: np.random.Generator, n: int, p: list[float], prefix: str) -> pa.Array:
    return _cats(rng.choice(len(p), size=n, p=p), prefix)


def columns(drifted: bool) -> dict[str, Gen]:
    """Column name -> generator of its values in the reference (``drifted=False``) or the
    current window."""
    d = drifted
    cols: dict[str, Gen] = {
        # -- drifted numeric ------------------------------------------------------------------
        "num_mean_shift_small": lambda r, n: pa.array(r.normal(50 + 2 * d, 10, n)),
        "num_mean_shift_large": lambda r, n: pa.array(r.normal(1.0 * d, 1, n)),
        "num_variance": lambda r, n: pa.array(r.normal(0, 1.3 if d else 1, n)),
        "num_widened_bounds": lambda r, n: pa.array(r.uniform(-7, 107, n) if d
                                                    else r.uniform(0, 100, n)),
        "heavy_lognormal_scale": lambda r, n: pa.array(r.lognormal(3, 1, n) * (1.3 if d else 1)),
        "heavy_pareto_tail": lambda r, n: pa.array((r.pareto(1.3 if d else 1.5, n) + 1) * 10),
        "count_poisson_rate": lambda r, n: pa.array(r.poisson(3.5 if d else 3, n)),
        "amount_zero_share": lambda r, n: pa.array(_zero_inflated(r, n, 0.5 if d else 0.6)),
        # -- drifted categorical --------------------------------------------------------------
        "cat_new_category": lambda r, n: _shares(
            r, n, [0.392, 0.294, 0.196, 0.098, 0.02] if d else [0.4, 0.3, 0.2, 0.1], "plan_"),
        "cat_reshuffled": lambda r, n: _shares(
            r, n, [0.3, 0.4, 0.2, 0.1] if d else [0.4, 0.3, 0.2, 0.1], "tier_"),
        "cat_zipf_exponent": lambda r, n: _cats(_zipf(r, n, 200, 1.2 if d else 1.1), "sku_"),
    }
    same: dict[str, Gen] = {
        # -- undrifted numeric (32) -----------------------------------------------------------
        "normal_a": lambda r, n: pa.array(r.normal(0, 1, n)),
        "normal_b": lambda r, n: pa.array(r.normal(100, 15, n)),
        "normal_c": lambda r, n: pa.array(r.normal(-5, 0.1, n)),
        "normal_nulls": lambda r, n: _with_nulls(r.normal(10, 3, n), r, 0.05),
        "normal_nan": lambda r, n: pa.array(np.where(r.random(n) < 0.01, np.nan,
                                                     r.normal(0, 2, n))),
        "normal_f32": lambda r, n: pa.array(r.normal(1, 1, n).astype(np.float32)),
        "uniform_a": lambda r, n: pa.array(r.uniform(0, 1, n)),
        "uniform_b": lambda r, n: pa.array(r.uniform(-50, 50, n)),
        "uniform_int": lambda r, n: pa.array(r.integers(18, 91, n)),
        "lognormal_a": lambda r, n: pa.array(r.lognormal(0, 1, n)),
        "lognormal_heavy": lambda r, n: pa.array(r.lognormal(3, 2, n)),
        "pareto_a": lambda r, n: pa.array((r.pareto(1.5, n) + 1) * 5),
        "pareto_b": lambda r, n: pa.array(r.pareto(1.1, n)),
        "student_t2": lambda r, n: pa.array(r.standard_t(2, n)),
        "student_t1": lambda r, n: pa.array(r.standard_t(1, n)),  # Cauchy: no mean at all
        "exponential": lambda r, n: pa.array(r.exponential(5, n)),
        "poisson_low": lambda r, n: pa.array(r.poisson(0.3, n)),
        "poisson_mid": lambda r, n: pa.array(r.poisson(3, n)),
        "poisson_high": lambda r, n: pa.array(r.poisson(30, n)),
        "negbin_a": lambda r, n: pa.array(r.negative_binomial(1, 0.1, n)),
        "negbin_b": lambda r, n: _with_nulls(r.negative_binomial(0.5, 0.02, n), r, 0.02),
        "zero_inflated": lambda r, n: pa.array(_zero_inflated(r, n, 0.6)),
        "zero_inflated_b": lambda r, n: pa.array(_zero_inflated(r, n, 0.9)),
        "bimodal": lambda r, n: pa.array(np.where(r.random(n) < 0.3, r.normal(-2, 0.5, n),
                                                  r.normal(3, 1, n))),
        "rounded_price": lambda r, n: pa.array(np.round(r.gamma(2, 20, n), 0)),
        "binary_int": lambda r, n: pa.array(r.integers(0, 2, n).astype(np.int8)),
        "dice": lambda r, n: pa.array(r.integers(1, 7, n).astype(np.int16)),
        "geometric": lambda r, n: pa.array(r.geometric(0.2, n)),
        "beta_skew": lambda r, n: pa.array(r.beta(0.5, 5, n)),
        "weibull": lambda r, n: pa.array(r.weibull(0.7, n)),
        "triangular": lambda r, n: pa.array(r.triangular(0, 2, 10, n)),
        "timestamp_like": lambda r, n: pa.array(r.integers(1_700_000_000, 1_700_086_400, n)),
        # -- undrifted categorical (7) --------------------------------------------------------
        "cat_uniform4": lambda r, n: _shares(r, n, [0.25] * 4, "c_"),
        "cat_skewed4": lambda r, n: _shares(r, n, [0.7, 0.2, 0.08, 0.02], "s_"),
        "cat_12": lambda r, n: _cats(r.integers(0, 12, n), "m_"),
        "cat_zipf50": lambda r, n: _cats(_zipf(r, n, 50, 1.1), "z_"),
        "cat_zipf200": lambda r, n: _cats(_zipf(r, n, 200, 1.1), "p_"),
        "cat_uniform200_nulls": lambda r, n: _cats(r.integers(0, 200, n), "u_",
                                                   mask=r.random(n) < 0.03),
        "flag": lambda r, n: pa.array(r.random(n) < 0.15),
    }
    return {**cols, **same}


def make(n: int, *, drifted: bool, seed: int) -> pa.Table:
    """``n`` rows of all 50 columns, the reference (``drifted=False``) or current window."""
    rng = np.random.default_rng(seed)
    return pa.table({name: gen(rng, n) for name, gen in columns(drifted).items()})
