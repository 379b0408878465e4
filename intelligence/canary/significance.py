"""The judge's statistical tests and estimates: each gives a p-value or an effect with its
interval, in the metric's bad direction.

Mann-Whitney U and the Hodges-Lehmann shift (unpaired samples), Fisher's exact mid-p test and
Wilson / Newcombe intervals (proportions), the tail-exceedance test, Wilcoxon's signed-rank
test (paired series) and the weighted Holm procedure that combines the shift and tail tests.
Normal approximations are computed directly (no scipy per-call overhead).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from intelligence.canary.samples import (
    compress,
    median_and_band,
    paired_differences,
    quantile,
    z_critical,
)
from intelligence.canary.types import Direction

__all__ = [
    "alternative",
    "auc_sd",
    "direction_p",
    "fisher_midp",
    "hodges_lehmann",
    "holm",
    "mann_whitney_p",
    "paired_test",
    "signed_rank_p",
    "tail_test",
    "wilson",
]

_ALTERNATIVE = {
    Direction.INCREASE: "greater",
    Direction.DECREASE: "less",
    Direction.EITHER: "two-sided",
}


def alternative(direction: Direction) -> str:
    """The test alternative (canary ``greater``, ``less``, ``two-sided``) of a bad direction."""
    return _ALTERNATIVE[direction]


def auc_sd(m: float, n: float, overlap: float = 1.0) -> float:
    """Standard deviation of ``U / (m n)`` under no change, for `m` and `n` samples of which
    every `overlap` consecutive ones carry one independent sample's information: the
    independent formula at the effective sizes ``m / overlap`` and ``n / overlap``."""
    me, ne = m / overlap, n / overlap
    return math.sqrt((me + ne + 1.0) / (12.0 * me * ne))


def hodges_lehmann(
    stable: ArrayLike, canary: ArrayLike, *, confidence: float = 0.95, overlap: float = 1.0
) -> tuple[float, float, float]:
    """Hodges-Lehmann shift ``canary - stable`` with its distribution-free confidence interval.

    The estimate is the median of all pairwise differences; the interval takes the order
    statistics of those differences at the normal-approximation critical value of the
    Mann-Whitney U distribution (Hollander & Wolfe), at the effective sizes when points
    overlap (`auc_sd`). Returns ``(estimate, low, high)``.
    """
    x_full = np.asarray(stable, dtype=np.float64)
    y_full = np.asarray(canary, dtype=np.float64)
    m_full, n_full = x_full.size, y_full.size
    if m_full == 0 or n_full == 0:
        nan = float("nan")
        return nan, nan, nan
    x, y = compress(x_full), compress(y_full)
    diffs = (y[:, None] - x[None, :]).ravel()
    z = z_critical(confidence)
    pairs = m_full * n_full
    k_full = math.floor(pairs / 2.0 - z * pairs * auc_sd(m_full, n_full, overlap))
    # the same quantile of the (summarised) pairwise differences
    return median_and_band(diffs, math.floor(max(k_full, 0) / pairs * diffs.size))


def _normal_p(stat: float, mean: float, sd: float, alternative: str) -> float:
    """p-value of a rank statistic's normal approximation with continuity correction."""
    if alternative == "greater":
        return float(special.ndtr(-(stat - mean - 0.5) / sd))
    if alternative == "less":
        return float(special.ndtr((stat - mean + 0.5) / sd))
    return min(1.0, 2.0 * float(special.ndtr(-(abs(stat - mean) - 0.5) / sd)))


EXACT_MAX_SAMPLES = 30
"""Pooled sizes up to this get the U test's exact permutation p-value: the normal
approximation is conservative in the far tail of small samples (7 canary points all above 7
stable ones: 0.0009 by the approximation, exactly 1/3432 = 0.0003), and an analysis look
holds only a few points per interval."""


def mann_whitney_p(
    stable: NDArray[np.float64],
    canary: NDArray[np.float64],
    *,
    alternative: str,
    overlap: float = 1.0,
) -> float:
    """p-value of the Mann-Whitney U test of ``canary`` against ``stable``.

    Exact (the permutation distribution of the canary's rank sum, ties as midranks) when
    both samples together hold at most `EXACT_MAX_SAMPLES`; else the normal approximation
    with tie and continuity corrections (what scipy's ``asymptotic`` method computes), without
    scipy's per-call overhead. ``alternative``: ``greater`` (canary larger), ``less`` or
    ``two-sided``. With ``overlap`` > 1 (points of moving windows: see
    :class:`~intelligence.canary.MetricConfig`) the points are not exchangeable, so no exact
    path: the normal approximation with the variance at the effective sizes (`auc_sd`).
    """
    n1, n2 = canary.size, stable.size
    ordered = np.sort(stable, kind="stable")  # timsort: linear on an already sorted sample
    # U counts the (canary, stable) pairs with the canary larger, ties as halves
    left = np.searchsorted(ordered, canary, side="left")
    right = np.searchsorted(ordered, canary, side="right")
    u = 0.5 * float((left + right).sum())
    mean = n1 * n2 / 2.0
    pooled = np.sort(np.concatenate([ordered, canary]), kind="stable")
    n = n1 + n2
    if min(n1, n2) > 0 and n <= EXACT_MAX_SAMPLES and overlap == 1.0:
        return _exact_rank_sum_p(pooled, n1, u, alternative)
    tie = 0.0
    if n > 1 and bool((pooled[1:] == pooled[:-1]).any()):
        starts = np.flatnonzero(np.concatenate([[True], pooled[1:] != pooled[:-1], [True]]))
        counts = np.diff(starts).astype(np.float64)
        tie = float((counts**3 - counts).sum()) / (n * (n - 1))
    var = n1 * n2 / 12.0 * ((n + 1) - tie)
    if var <= 0.0:
        return 1.0
    if overlap != 1.0 and min(n1, n2) > 0:
        var *= (auc_sd(n1, n2, overlap) / auc_sd(n1, n2)) ** 2  # at the effective sizes
    return _normal_p(u, mean, math.sqrt(var), alternative)


def _exact_rank_sum_p(pooled: NDArray[np.float64], n1: int, u: float, alternative: str) -> float:
    """Exact p-value of U for `n1` canary values among the sorted `pooled` sample: the share
    of all C(n, n1) labelings whose canary rank sum is as extreme. Doubled midranks are
    integers, so the null distribution is counted by dynamic programming over the pooled
    values (subsets by size and doubled rank sum)."""
    doubled = (2.0 * stats.rankdata(pooled)).astype(np.int64)
    ways = np.zeros((n1 + 1, int(doubled.sum()) + 1))
    ways[0, 0] = 1.0
    for r in doubled:
        ways[1:, r:] = ways[1:, r:] + ways[:-1, :-r]  # right side read before the write
    dist = ways[n1] / math.comb(pooled.size, n1)
    observed = round(2.0 * u + n1 * (n1 + 1))  # twice the canary's rank sum
    upper = float(dist[observed:].sum())
    lower = float(dist[: observed + 1].sum())
    if alternative == "greater":
        return min(1.0, upper)
    if alternative == "less":
        return min(1.0, lower)
    return min(1.0, 2.0 * min(upper, lower))


def wilson(events: float, trials: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials <= 0:
        return 0.0, 1.0
    p = events / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2.0 * trials)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def fisher_midp(
    *, canary_events: int, canary_trials: int, total_events: int, total_trials: int
) -> tuple[float, float]:
    """One-sided mid-p values of Fisher's exact test: (canary rate higher, canary rate lower)."""
    n_other = total_trials - canary_trials
    lo = max(0, total_events - n_other)
    hi = min(total_events, canary_trials)
    k = np.arange(lo, hi + 1, dtype=np.float64)
    # log pmf of the hypergeometric over its support (gammaln: no frozen-distribution overhead)
    logp = (
        special.gammaln(total_events + 1)
        - special.gammaln(k + 1)
        - special.gammaln(total_events - k + 1)
        + special.gammaln(total_trials - total_events + 1)
        - special.gammaln(canary_trials - k + 1)
        - special.gammaln(total_trials - total_events - canary_trials + k + 1)
        - special.gammaln(total_trials + 1)
        + special.gammaln(canary_trials + 1)
        + special.gammaln(n_other + 1)
    )
    pmf = np.exp(logp - logp.max())
    pmf /= pmf.sum()
    i = canary_events - lo
    upper = float(pmf[i + 1 :].sum()) + 0.5 * float(pmf[i])
    lower = float(pmf[:i].sum()) + 0.5 * float(pmf[i])
    return min(max(upper, 0.0), 1.0), min(max(lower, 0.0), 1.0)


def direction_p(upper: float, lower: float, direction: Direction) -> float:
    """The p-value in the bad direction from the two one-sided ones."""
    if direction is Direction.INCREASE:
        return upper
    if direction is Direction.DECREASE:
        return lower
    return min(1.0, 2.0 * min(upper, lower))


def _beyond(ordered: NDArray[np.float64], thr: float, sign: float) -> int:
    """How many of a sorted sample lie above `thr` (`sign` > 0) or below it."""
    if sign > 0:
        return int(ordered.size - np.searchsorted(ordered, thr, side="right"))
    return int(np.searchsorted(ordered, thr, side="left"))


def _effective(count: int, overlap: float) -> int:
    """`count` points of windows overlapping `overlap`-fold as independent ones (at least 1
    when there were any)."""
    return count if overlap == 1.0 or count == 0 else max(1, round(count / overlap))


def _one_tail(
    s_ord: NDArray[np.float64],
    c_ord: NDArray[np.float64],
    pooled: NDArray[np.float64],
    *,
    q: float,
    sign: float,
    overlap: float,
) -> tuple[float, float, float]:
    thr = quantile(pooled, q)
    above_c, above_s = _beyond(c_ord, thr, sign), _beyond(s_ord, thr, sign)
    # overlapping points exceed together: the counts at the effective sizes
    a, b = _effective(above_c, overlap), _effective(above_s, overlap)
    trials_c, trials_s = _effective(c_ord.size, overlap), _effective(s_ord.size, overlap)
    a, b = min(a, trials_c), min(b, trials_s)
    total, trials = a + b, trials_c + trials_s
    if total in (0, trials):
        p = 1.0
    else:
        p = fisher_midp(
            canary_events=a, canary_trials=trials_c, total_events=total, total_trials=trials
        )[0]
    qs, qc = quantile(s_ord, q), quantile(c_ord, q)
    shift = qc - qs
    rel = shift / abs(qs) if qs else (math.inf if shift > 0 else -math.inf if shift else 0.0)
    return p, shift, rel


def tail_test(
    stable: NDArray[np.float64],
    canary: NDArray[np.float64],
    *,
    direction: Direction,
    quantile: float,
    overlap: float = 1.0,
) -> tuple[float, float, float]:
    """Tail exceedance test: ``(one-sided p, absolute and relative change of the quantile)``.

    Counts the samples of each version above the pooled sample's ``quantile`` (below its mirror
    ``1 - quantile`` for a ``decrease``) and tests canary against stable with the one-sided
    Fisher mid-p test; the threshold depends on the pooled sample only, so under no change the
    test is exact given it. The effect is the change of the version's own ``quantile``. With
    ``overlap`` > 1 every count is divided by it (rounded) first: overlapping points exceed
    the threshold together.
    """
    s_ord = np.sort(stable, kind="stable")
    c_ord = np.sort(canary, kind="stable")
    pooled = np.sort(np.concatenate([s_ord, c_ord]), kind="stable")
    if direction is Direction.INCREASE:
        return _one_tail(s_ord, c_ord, pooled, q=quantile, sign=1.0, overlap=overlap)
    if direction is Direction.DECREASE:
        return _one_tail(s_ord, c_ord, pooled, q=1.0 - quantile, sign=-1.0, overlap=overlap)
    up = _one_tail(s_ord, c_ord, pooled, q=quantile, sign=1.0, overlap=overlap)
    down = _one_tail(s_ord, c_ord, pooled, q=1.0 - quantile, sign=-1.0, overlap=overlap)
    best = up if up[0] <= down[0] else down
    return min(1.0, 2.0 * best[0]), best[1], best[2]


@lru_cache(maxsize=256)
def _t_critical(alpha: float, df: float) -> float:
    return float(stats.t.isf(alpha, df))


def signed_rank_sd(n: float, overlap: float = 1.0) -> float:
    """Standard deviation under no change of the signed-rank sum as a share of its largest
    value, ``T+ / (n (n + 1) / 2)``, for ``n`` differences of which every ``overlap``
    consecutive ones carry one independent one's information: the independent formula at the
    effective size ``n / overlap``."""
    ne = n / overlap
    return math.sqrt((2.0 * ne + 1.0) / (6.0 * ne * (ne + 1.0)))


def signed_rank_p(d: NDArray[np.float64], *, alternative: str, overlap: float = 1.0) -> float:
    """Wilcoxon signed-rank p-value of ``d`` (zeros dropped; normal approximation with tie and
    continuity corrections). With ``overlap`` > 1 (differences of moving windows) the variance
    is that of the effective size (`signed_rank_sd`)."""
    d = d[d != 0.0]
    n = d.size
    if n == 0:
        return 1.0
    a = np.abs(d)
    ranks = stats.rankdata(a)
    t_plus = float(ranks[d > 0].sum())
    mean = n * (n + 1) / 4.0
    _, counts = np.unique(a, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float((counts**3 - counts).sum()) / 48.0
    if var <= 0.0:
        return 1.0
    if overlap != 1.0:
        var *= (signed_rank_sd(n, overlap) / signed_rank_sd(n)) ** 2
    return _normal_p(t_plus, mean, math.sqrt(var), alternative)


def _from_symmetric(x: float) -> float:
    """A symmetric relative difference ``2 (k - 1) / (k + 1)`` back to the change ``k - 1``."""
    return math.inf if x >= 2.0 else (-1.0 if x <= -2.0 else 2.0 * x / (2.0 - x))


def _paired_mde(
    r: NDArray[np.float64],
    *,
    level: float,
    power: float,
    direction: Direction,
    ratio: bool,
    overlap: float = 1.0,
) -> float:
    """The change detectable with `power` at one-sided `level` from the buckets' differences
    `r` (symmetric relative differences when `ratio`; `r.size / overlap` independent ones)."""
    n = r.size
    ne = n / overlap
    # Few buckets: the smallest p-value the test can give at all (every bucket worse) may be
    # above the level, and then no change is detectable; else a t quantile for the spread.
    if ne < 2.0 or signed_rank_p(np.ones(n), alternative="greater", overlap=overlap) >= level:
        return math.inf
    zz = _t_critical(level, ne - 1.0) + float(special.ndtri(power))
    spread = float(np.std(r, ddof=1))
    delta = zz * spread / math.sqrt(ne) * math.sqrt(math.pi / 3.0)
    back = _from_symmetric if ratio else float
    return back(delta) if direction is not Direction.DECREASE else -back(-delta)


def paired_test(
    stable: ArrayLike,
    canary: ArrayLike,
    *,
    direction: Direction = Direction.INCREASE,
    confidence: float = 0.95,
    power: float = 0.8,
    overlap: float = 1.0,
) -> tuple[float, float, float, float, float]:
    """Bucket-by-bucket comparison of two aligned series: ``(p, rel, rel_low, rel_high, mde)``.

    For non-negative series each bucket gives the symmetric relative difference ``r = 2 (c -
    s) / (c + s)`` (a bucket where both are 0 is dropped: it says nothing), so a bucket of heavy
    load weighs no more than a quiet one and one that is zero on one side is bounded (``+-2``);
    otherwise the plain
    difference relative to the stable median. Under no change each ``r`` is symmetric about 0
    (the versions are exchangeable within a bucket), which Wilcoxon's signed-rank test (in the
    bad ``direction``) assumes; the effect is the Hodges-Lehmann estimate (median of the Walsh
    averages) with its distribution-free interval, mapped back to a relative change of the
    level (``r`` of a factor ``k`` is ``2 (k - 1) / (k + 1)``). ``mde``: the relative change
    detectable with ``power`` at level ``1 - confidence`` (normal approximation with the
    signed-rank test's efficiency 3/pi against the t-test and the spread of ``r``; ``inf`` when
    even ``n`` buckets all worse would not reach the level). With ``overlap`` > 1 (buckets read
    through windows ``overlap`` steps long) the test, the interval and the MDE count ``n /
    overlap`` buckets (`signed_rank_sd`); the estimate is unchanged.
    """
    direction = Direction(direction)
    r, ratio_scale = paired_differences(
        np.asarray(stable, dtype=np.float64), np.asarray(canary, dtype=np.float64)
    )
    back = _from_symmetric if ratio_scale else float
    n = r.size
    p = signed_rank_p(r, alternative=alternative(direction), overlap=overlap)
    w_src = compress(r)
    i, j = np.triu_indices(w_src.size)
    walsh = 0.5 * (w_src[i] + w_src[j])
    z = z_critical(confidence)
    # the interval's rank among the n (n + 1) / 2 Walsh averages, as a share (compression)
    k = math.floor(walsh.size * (0.5 - z * signed_rank_sd(n, overlap))) if n else 0
    est, low, high = median_and_band(walsh, k)
    level = (1.0 - confidence) / 2.0 if direction is Direction.EITHER else 1.0 - confidence
    mde = _paired_mde(
        r, level=level, power=power, direction=direction, ratio=ratio_scale, overlap=overlap
    )
    return p, back(est), back(low), back(high), mde


def holm(p_shift: float, p_tail: float, *, alpha: float, tail_weight: float) -> tuple[bool, bool]:
    """Weighted Holm over the shift and tail tests: which of them reject at family level alpha.

    The hypothesis with the smaller ``p / weight`` is tested at ``alpha * weight``; if it is
    rejected the other one is tested at the whole ``alpha``.
    """
    if tail_weight <= 0.0 or math.isnan(p_tail):
        return p_shift < alpha, False
    if tail_weight >= 1.0:
        return False, p_tail < alpha
    w_shift, w_tail = 1.0 - tail_weight, tail_weight
    if p_shift / w_shift <= p_tail / w_tail:
        shift = p_shift < alpha * w_shift
        return shift, shift and p_tail < alpha
    tail = p_tail < alpha * w_tail
    return tail and p_shift < alpha, tail
