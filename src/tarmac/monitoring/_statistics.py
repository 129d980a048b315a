"""The two-sample statistics, on count vectors: what a drift verdict is computed from.

Every function takes the reference's and the current window's counts over the same buckets
(the reference fixes the buckets, see ``tarmac.profile.sketch``) and is vectorised numpy over
those few hundred buckets; scipy gives the distributions of the test statistics.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Correction = Literal["holm", "bh", "none"]
#: expected count (in the smaller window) below which a categorical bucket is pooled
MIN_EXPECTED = 5.0
#: effective sample size n*m/(n+m) above which the KS p-value uses the limit distribution
KS_LIMIT_FROM = 5_000


def ks_binned(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic and p-value from counts over ordered buckets.

    ``D`` is the largest gap between the two empirical CDFs at the bucket boundaries. Each
    boundary is a point (or left limit) of both CDFs, so ``D`` is never above the exact KS
    statistic of the raw values and the test keeps its level (it can only lose power, by at
    most the mass of one bucket). The p-value is the asymptotic one ``scipy.stats.ks_2samp``
    gives (``method="asymp"``): ``kstwo.sf(D, round(n*m/(n+m)))``, and past
    ``KS_LIMIT_FROM`` effective rows (where that costs up to 50 ms a column and differs from
    it by under 2 %) Kolmogorov's limit distribution, which is never below it. Ties (integer
    counts) are simply counts in one bucket; the test is then conservative, as KS is on
    discrete data.
    """
    n, m = float(ref.sum()), float(cur.sum())
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    d = min(max(d, 0.0), 1.0)
    en = max(round(n * m / (n + m)), 1)
    if en > KS_LIMIT_FROM:
        from scipy.special import kolmogorov

        return d, float(kolmogorov(math.sqrt(en) * d))
    from scipy.stats import kstwo

    return d, float(kstwo.sf(d, en))


def decile_groups(ref: np.ndarray, groups: int = 10) -> np.ndarray:
    """Start indices that cut ordered buckets into ``groups`` runs of about equal reference
    mass: each cut falls after the bucket whose cumulative reference share is nearest to
    1/groups, 2/groups... Fewer groups when one value holds more than a group's share, and
    none without reference mass: the buckets beyond the reference's range join the outer
    groups, as PSI's open-ended first and last bins do. A constant reference (one bucket) is
    the exception: below, at and above its value are three groups, since any value off it is
    new."""
    if np.count_nonzero(ref) <= 1:
        return np.arange(len(ref))
    cum = np.cumsum(ref) / ref.sum()
    targets = np.arange(1, groups) / groups
    after = np.minimum(np.searchsorted(cum, targets, side="left"), len(cum) - 1)
    before = np.maximum(after - 1, 0)
    nearest = np.where(np.abs(cum[before] - targets) <= np.abs(cum[after] - targets),
                       before, after)
    starts = np.unique(np.concatenate([[0], nearest + 1]))
    starts = starts[starts < len(ref)]
    while True:  # at most ``groups`` rounds: an empty group joins its neighbour
        empty = np.flatnonzero(np.add.reduceat(ref, starts) == 0)
        if not len(empty):
            return starts
        starts = np.delete(starts, empty[0] if empty[0] > 0 else 1)


def psi(ref: np.ndarray, cur: np.ndarray, starts: np.ndarray) -> float:
    """Population stability index over the groups starting at ``starts``:
    ``sum((q - p) * ln(q / p))``, each share smoothed by half a count so an empty group stays
    finite."""
    r = np.add.reduceat(ref, starts).astype(np.float64)
    c = np.add.reduceat(cur, starts).astype(np.float64)
    p = (r + 0.5) / (r.sum() + 0.5 * len(r))
    q = (c + 0.5) / (c.sum() + 0.5 * len(c))
    return float(max(np.sum((q - p) * np.log(q / p)), 0.0))


def pool_sparse(ref: np.ndarray, cur: np.ndarray,
                sparse_too: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The buckets of a chi-squared test: empty ones dropped, and those whose expected count
    in either window is below ``MIN_EXPECTED`` pooled into one (itself folded into the
    smallest other bucket if still too sparse), so the chi-squared approximation holds.

    Which buckets pool depends only on the two windows' counts added up (the table's margins),
    which is what keeps the test's level: a rule that looked at one window's counts alone
    would pick its lucky buckets. ``sparse_too`` marks buckets pooled regardless (a lump of
    values each known to be sparse)."""
    forced = np.zeros(len(ref), dtype=bool) if sparse_too is None else sparse_too
    keep = (ref + cur) > 0
    ref, cur, forced = ref[keep], cur[keep], forced[keep]
    n, m = ref.sum(), cur.sum()
    pooled = ref + cur
    sparse = (pooled * min(n, m) / (n + m) < MIN_EXPECTED) | forced
    if not sparse.any() or sparse.all():
        return ref, cur
    r = np.append(ref[~sparse], ref[sparse].sum())
    c = np.append(cur[~sparse], cur[sparse].sum())
    if (r[-1] + c[-1]) * min(n, m) / (n + m) < MIN_EXPECTED and len(r) > 2:
        smallest = int(np.argmin((r + c)[:-1]))
        r[smallest] += r[-1]
        c[smallest] += c[-1]
        r, c = r[:-1], c[:-1]
    return r, c


def is_sparse(count: float, n: float, m: float) -> bool:
    """Whether a bucket holding ``count`` values of both windows together would be pooled."""
    return count * min(n, m) / (n + m) < MIN_EXPECTED


def chi2_homogeneity(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-squared test that both windows draw from one categorical distribution
    (the 2 x k contingency table of ``scipy.stats.chi2_contingency``, no continuity
    correction): statistic, p-value, degrees of freedom."""
    from scipy.stats import chi2

    n, m = float(ref.sum()), float(cur.sum())
    pooled = ref + cur
    e_ref, e_cur = pooled * n / (n + m), pooled * m / (n + m)
    stat = float(np.sum((ref - e_ref) ** 2 / e_ref) + np.sum((cur - e_cur) ** 2 / e_cur))
    df = len(ref) - 1
    return stat, float(chi2.sf(stat, df)) if df > 0 else 1.0, df


def jensen_shannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance in bits (the square root of the divergence, 0 to 1), as
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``."""
    p = ref / ref.sum()
    q = cur / cur.sum()
    mid = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / mid), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / mid), 0.0)
    return math.sqrt(max(float(kl_p.sum() + kl_q.sum()) / 2, 0.0))


def adjust(p_values: np.ndarray, method: Correction) -> np.ndarray:
    """p-values corrected for testing many columns at once: Holm's step-down (family-wise
    error, valid whatever the dependence between columns), Benjamini-Hochberg (false
    discovery rate) or none."""
    m = len(p_values)
    if m == 0 or method == "none":
        return p_values.copy()
    out = np.empty(m)
    if method == "holm":
        order = np.argsort(p_values, kind="stable")
        steps = (m - np.arange(m)) * p_values[order]
        out[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
        return out
    order = np.argsort(p_values, kind="stable")[::-1]  # Benjamini-Hochberg, largest first
    ranks = m - np.arange(m)
    out[order] = np.minimum(np.minimum.accumulate(p_values[order] * m / ranks), 1.0)
    return out
