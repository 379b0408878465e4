"""The canary judge: compares a canary's metrics with the stable version's and decides.

Modelled on Kayenta's NetflixACAJudge, with two kinds of metric.

``continuous`` metrics (latency, saturation) take raw samples, best one per request (a latency
per request, not a p95 per 30-second bucket: a bucket quantile of a handful of requests is mostly
noise, and it turns an empty bucket into a missing value):

1. clean: drop NaN / inf samples (``NaNsDropped``); too many of them (``TooManyNaNs``) or too
   few samples left (``FewSamples``) makes the metric ``NoData``;
2. test, two ways, combined by a weighted Holm procedure (shares ``1 - tail_weight`` and
   ``tail_weight`` of the look's level) so that the metric's false-failure rate stays at it:

   * shift: a Mann-Whitney U test of canary against stable, one-sided in the metric's bad
     direction (two-sided for ``either``), and the Hodges-Lehmann estimate of the shift (median
     of all pairwise differences) with its distribution-free confidence interval;
   * tail: how many samples of each version exceed the pooled sample's ``tail_quantile`` (the
     p95 by default; fall below its mirror image for a ``decrease`` metric), tested with the
     same one-sided Fisher mid-p test as a proportion. It is a permutation test (the threshold
     depends on the pooled sample only), and it sees a regression of the slowest requests that
     hardly moves the ranks of the others (a slow path, a timeout), which the U test misses;
     its effect is the relative change of the ``tail_quantile`` itself;

3. classify: the metric is ``High`` (or ``Low``) when a test rejects and its effect is in the
   metric's bad direction and larger than its tolerance (relative to the stable median, or
   absolute when the stable median is zero: ``ZeroBaseline``); ``TailRegression`` says the tail
   test made the call; otherwise ``Pass``;
4. watch the canary's own series with anomaly detectors (robust z-score and CUSUM, primed on the
   stable samples): a passing metric whose canary series is persistently anomalous becomes
   ``Marginal`` (``AnomalousCanarySeries``), which costs half its weight.

A ``paired`` continuous metric (a gauge scraped per bucket, the same buckets for both versions)
replaces step 2 by a bucket-by-bucket comparison (:func:`paired_test`: Wilcoxon's signed-rank
test on the symmetric relative difference of each bucket): both versions ride the same swings of
load, and comparing them within a bucket takes those swings out of the comparison.

``proportion`` metrics (error rate) take counts, ``(events, trials)`` per bucket or in total,
because a rate is a binomial proportion: a bucket with no requests carries no information (it
is not a missing value), and a bucket with 3 requests weighs less than one with 300. The test is
the one-sided Fisher exact test on the pooled 2x2 table (mid-p, which keeps its size close to
the nominal level instead of far below it); the effect is the difference of the two rates with
Newcombe's hybrid-score interval, and the tolerance applies to that difference (``ZeroBaseline``
when the stable version had no events).

Looks. A rollout judges after each of ``looks`` analysis intervals on all samples so far
(``judge(..., look=k)``). ``alpha`` is one metric's false-failure budget for the whole run; an
alpha-spending function (Lan-DeMets: Pocock-like ``alpha * ln(1 + (e - 1) t)``, O'Brien-Fleming-
like ``2 - 2 Phi(z_(alpha/2) / sqrt(t))``, or uniform) at the planned information fraction
``t = k / looks`` says how much of it may be spent by look ``k``, and look ``k`` tests at the
increment. By the union bound the chance of failing a healthy canary on one metric at any look
is at most ``alpha`` whatever the traffic of each interval (conservative: the looks share their
samples); a run of ``M`` metrics fails a healthy canary with chance at most ``M * alpha``. With
``looks=1`` (the default) every call tests at ``alpha``.

Power. A test that does not reject is not evidence of no regression when the samples are few.
Every result carries the minimum detectable effect (MDE): the smallest regression the test of
this look would catch with probability ``power`` (Noether's formula for the U test, evaluated
on the stable sample's own distribution of pairwise differences, on the log scale when the
metric is positive: a relative shift of every sample; the pooled-variance normal approximation
for two proportions). A metric with a ``detectable`` (relative) or ``detectable_absolute``
target whose MDE exceeds it cannot pass: it is ``Underpowered`` (``InsufficientPower``), and so
is the run (Inconclusive, ``MetricUnderpowered``) unless something failed.

The run: a failing critical metric fails the run on its own (``CriticalMetricFailed``); otherwise
the weighted share of passing metrics (0-100) is compared with ``pass_score`` (Successful) and
``marginal_score`` (below it: Failed; in between: Inconclusive). Every verdict carries its
numbers (``MetricResult.evidence()``), the level it was tested at and its MDE included. Pure:
numpy and scipy only, no I/O, no clock reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from intelligence.anomaly import Severity, Thresholds
from intelligence.anomaly.base import median_mad
from intelligence.anomaly.robust_zscore import MAD_TO_SIGMA

__all__ = [
    "CanaryJudgement",
    "JudgeConfig",
    "MetricConfig",
    "MetricResult",
    "MetricVerdict",
    "Outcome",
    "hodges_lehmann",
    "judge",
    "judge_metric",
    "mann_whitney_p",
    "paired_test",
]

BadDirection = Literal["increase", "decrease", "either"]
MetricKind = Literal["continuous", "proportion"]
Spending = Literal["pocock", "obrien-fleming", "uniform"]

MAX_HL_POINTS = 200
"""Samples larger than this are summarised by this many quantiles for the Hodges-Lehmann
estimate; its interval's order statistics are taken at the ranks of the full samples (the U test
always uses every sample)."""


class MetricVerdict(StrEnum):
    """Classification of one metric."""

    PASS = "Pass"
    MARGINAL = "Marginal"
    HIGH = "High"
    LOW = "Low"
    NODATA = "NoData"
    UNDERPOWERED = "Underpowered"


class Outcome(StrEnum):
    """Classification of the whole canary run."""

    SUCCESSFUL = "Successful"
    INCONCLUSIVE = "Inconclusive"
    FAILED = "Failed"


@dataclass(frozen=True)
class MetricConfig:
    """How to judge one metric.

    Attributes:
        name: the metric's name (key in the samples mapping).
        bad_direction: ``increase`` for latency, errors, saturation; ``decrease`` for
            throughput or success rate; ``either`` when any change is bad.
        weight: share of the run's score.
        critical: a failure of this metric fails the run alone.
        tolerance: relative shift (vs the stable median) accepted in the bad direction.
        absolute_tolerance: shift accepted in the metric's own unit; the only tolerance when the
            stable median is zero (e.g. zero errors).
        min_samples: fewer finite samples (for a proportion: fewer trials) on either side gives
            ``NoData``.
        kind: ``continuous`` (raw samples, Mann-Whitney) or ``proportion`` (``(events,
            trials)`` counts, Fisher exact test); see the module docstring.
        series: the continuous samples are a time series (one per scrape or bucket) that the
            anomaly detectors may watch; ``False`` for per-request samples, whose spread is
            the request mix, not a change over time.
        detectable: relative regression (vs the stable level) the judge must be able to detect
            with ``JudgeConfig.power`` before the metric may pass; ``None``: no such target.
        detectable_absolute: the same in the metric's own unit (for a proportion: a rise of the
            rate). With both set, the target is the larger of the two; a metric with a zero
            baseline needs this one (a relative target of zero is never reachable).
        paired: the continuous samples of the two versions are aligned in time (sample ``i``
            of each was measured over the same bucket, both versions under the same load):
            compare them bucket by bucket (Wilcoxon signed-rank), which removes the load's
            swings from the comparison; see :func:`paired_test`.
    """

    name: str
    bad_direction: BadDirection = "increase"
    kind: MetricKind = "continuous"
    weight: float = 1.0
    critical: bool = False
    tolerance: float = 0.1
    absolute_tolerance: float = 0.0
    min_samples: int = 8
    series: bool = True
    detectable: float | None = None
    detectable_absolute: float | None = None
    paired: bool = False


@dataclass(frozen=True)
class JudgeConfig:
    """Run-level settings (Kayenta's defaults where it has one).

    Attributes:
        alpha: false-failure level of one metric over the whole run (one-sided in the bad
            direction), spent over ``looks`` by ``spending`` (module docstring).
        looks: analysis intervals the run is planned to judge after (``judge(..., look=k)``).
        spending: alpha-spending function: ``pocock`` (front-loaded, the early looks get the
            most), ``obrien-fleming`` (almost nothing early) or ``uniform``.
        power: probability of detection at which the minimum detectable effect is quoted.
        tail_weight: share of a continuous metric's level given to the tail test (0: none).
        tail_quantile: the quantile the tail test watches (0.95: the p95).
    """

    alpha: float = 0.002
    pass_score: float = 95.0
    marginal_score: float = 75.0
    max_nan_fraction: float = 0.5
    detectors: bool = True
    anomalous_fraction: float = 0.3
    looks: int = 1
    spending: Spending = "pocock"
    power: float = 0.8
    tail_weight: float = 0.2
    tail_quantile: float = 0.95

    def alpha_at(self, look: int) -> float:
        """The level look ``look`` (1-based) tests at: the spending function's increment."""
        if not 1 <= look <= self.looks:
            raise ValueError(f"look {look} is outside the planned 1..{self.looks}")
        return _alpha_increment(self.alpha, self.looks, self.spending, look)


@lru_cache(maxsize=64)
def _alpha_increment(alpha: float, looks: int, spending: Spending, look: int) -> float:
    def spent(t: float) -> float:
        if t <= 0.0:
            return 0.0
        if spending == "pocock":
            return alpha * math.log(1.0 + (math.e - 1.0) * t)
        if spending == "obrien-fleming":
            z = float(stats.norm.isf(alpha / 2.0))
            return float(2.0 * stats.norm.sf(z / math.sqrt(t)))
        return alpha * t

    return spent(look / looks) - spent((look - 1) / looks)


@dataclass(frozen=True)
class MetricResult:
    """One metric's verdict and the numbers behind it.

    For a ``proportion`` metric, ``n_stable`` / ``n_canary`` count trials, ``stable_median`` /
    ``canary_median`` are the two rates and ``effect`` is their difference.
    """

    name: str
    verdict: MetricVerdict
    reasons: tuple[str, ...]
    critical: bool
    weight: float
    n_stable: int
    n_canary: int
    nan_dropped: int
    p_value: float
    effect: float
    effect_low: float
    effect_high: float
    relative_effect: float
    stable_median: float
    canary_median: float
    anomalous_points: int = 0
    anomaly_severity: Severity = Severity.INFO
    alpha: float = float("nan")
    """The level this look tested at (the spending function's increment)."""
    mde: float = float("nan")
    """Minimum detectable regression at ``JudgeConfig.power``, in the effect's unit."""
    mde_relative: float = float("nan")
    """The same relative to the stable level (inf on a zero baseline)."""
    detectable: float = float("nan")
    """The regression the metric had to be able to detect (effect's unit; NaN: no target)."""
    tail_p_value: float = float("nan")
    """One-sided p-value of the tail-exceedance test (continuous metrics)."""
    tail_effect: float = float("nan")
    """Relative change of the tail quantile, canary vs stable (absolute on a zero baseline)."""

    @property
    def failed(self) -> bool:
        """Whether the metric regressed (``High`` or ``Low``)."""
        return self.verdict in (MetricVerdict.HIGH, MetricVerdict.LOW)

    def evidence(self) -> dict[str, float]:
        """The numbers as a flat mapping (for status messages)."""
        return {
            "n_stable": float(self.n_stable),
            "n_canary": float(self.n_canary),
            "nan_dropped": float(self.nan_dropped),
            "p_value": self.p_value,
            "effect": self.effect,
            "effect_low": self.effect_low,
            "effect_high": self.effect_high,
            "relative_effect": self.relative_effect,
            "stable_median": self.stable_median,
            "canary_median": self.canary_median,
            "anomalous_points": float(self.anomalous_points),
            "alpha": self.alpha,
            "mde": self.mde,
            "mde_relative": self.mde_relative,
            "detectable": self.detectable,
            "tail_p_value": self.tail_p_value,
            "tail_effect": self.tail_effect,
        }


@dataclass(frozen=True)
class CanaryJudgement:
    """The run's outcome, its score (0-100) and every metric's result."""

    outcome: Outcome
    score: float
    metrics: tuple[MetricResult, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def metric(self, name: str) -> MetricResult:
        """The result of the metric called ``name``."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


def _quantiles(ordered: NDArray[np.float64], q: ArrayLike) -> NDArray[np.float64]:
    """``np.quantile(x, q)`` (linear interpolation) of an already sorted ``x``, no partition."""
    pos = np.asarray(q, dtype=np.float64) * (ordered.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, ordered.size - 1)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def _quantile(ordered: NDArray[np.float64], q: float) -> float:
    return float(_quantiles(ordered, q))


def _compress(sample: NDArray[np.float64], *, ordered: bool = False) -> NDArray[np.float64]:
    if sample.size <= MAX_HL_POINTS:
        return sample
    q = (np.arange(MAX_HL_POINTS) + 0.5) / MAX_HL_POINTS
    return _quantiles(sample if ordered else np.sort(sample, kind="stable"), q)


@lru_cache(maxsize=16)
def _z_critical(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def hodges_lehmann(
    stable: ArrayLike, canary: ArrayLike, *, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Hodges-Lehmann shift ``canary - stable`` with its distribution-free confidence interval.

    The estimate is the median of all pairwise differences; the interval takes the order
    statistics of those differences at the normal-approximation critical value of the
    Mann-Whitney U distribution (Hollander & Wolfe). Returns ``(estimate, low, high)``.
    """
    x_full = np.asarray(stable, dtype=np.float64)
    y_full = np.asarray(canary, dtype=np.float64)
    m_full, n_full = x_full.size, y_full.size
    if m_full == 0 or n_full == 0:
        nan = float("nan")
        return nan, nan, nan
    x, y = _compress(x_full), _compress(y_full)
    diffs = (y[:, None] - x[None, :]).ravel()
    size = diffs.size
    z = _z_critical(confidence)
    pairs = m_full * n_full
    k_full = math.floor(pairs / 2.0 - z * math.sqrt(pairs * (m_full + n_full + 1) / 12.0))
    # the same quantile of the (summarised) pairwise differences
    k = math.floor(max(k_full, 0) / pairs * size)
    k = min(max(k, 0), (size - 1) // 2)
    mid = ((size - 1) // 2, size // 2)
    part = np.partition(diffs, sorted({k, size - 1 - k, *mid}))
    est = 0.5 * float(part[mid[0]] + part[mid[1]])
    return est, float(part[k]), float(part[size - 1 - k])


def mann_whitney_p(
    stable: NDArray[np.float64], canary: NDArray[np.float64], *, alternative: str
) -> float:
    """p-value of the Mann-Whitney U test of ``canary`` against ``stable``.

    Normal approximation with tie and continuity corrections (what scipy's ``asymptotic``
    method computes), without scipy's per-call overhead. ``alternative``: ``greater`` (canary
    larger), ``less`` or ``two-sided``.
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
    tie = 0.0
    if n > 1 and bool((pooled[1:] == pooled[:-1]).any()):
        starts = np.flatnonzero(np.concatenate([[True], pooled[1:] != pooled[:-1], [True]]))
        counts = np.diff(starts).astype(np.float64)
        tie = float((counts**3 - counts).sum()) / (n * (n - 1))
    var = n1 * n2 / 12.0 * ((n + 1) - tie)
    if var <= 0.0:
        return 1.0
    sd = math.sqrt(var)
    if alternative == "greater":
        return float(special.ndtr(-(u - mean - 0.5) / sd))
    if alternative == "less":
        return float(special.ndtr((u - mean + 0.5) / sd))
    zabs = (abs(u - mean) - 0.5) / sd
    return min(1.0, 2.0 * float(special.ndtr(-zabs)))


def _clean(values: ArrayLike) -> tuple[NDArray[np.float64], int]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    ok = np.isfinite(arr)
    return arr[ok], int(arr.size - ok.sum())


def _anomalies(
    stable: NDArray[np.float64],
    canary: NDArray[np.float64],
    cfg: MetricConfig,
    *,
    paired: bool = False,
) -> tuple[int, Severity]:
    """Canary points at CRITICAL or worse against the stable samples as a frozen reference.

    The statistics of :class:`~intelligence.anomaly.RobustZScore` (median / MAD z-score, with
    the metric's tolerances as scale floors) and :class:`~intelligence.anomaly.CusumDetector`
    (two-sided CUSUM of those z-scores, allowance 0.5), computed in one pass: the stable
    version runs at the same time as the canary, so it is the reference for every canary point.
    ``paired`` (``stable`` and ``canary`` in time order, bucket by bucket): the reference of
    each canary point is the stable value of the same bucket, so a swing of load both versions
    ride is no anomaly; the z-score is the bucket's relative difference (see
    :func:`paired_test`) over its own robust spread, floored at the tolerance.
    """
    if paired:
        r, _ = _paired_differences(stable, canary)
        _, mad_r = median_mad(r) if r.size else (0.0, 0.0)
        scale = max(MAD_TO_SIGMA * mad_r, cfg.tolerance, 1e-3)
        z = np.clip(r / scale, -10.0, 10.0)
        canary = r
    else:
        med, mad = median_mad(stable)
        scale = max(MAD_TO_SIGMA * mad, max(cfg.tolerance, 1e-3) * abs(med), cfg.absolute_tolerance)
        scale = max(scale, 1e-9)
        z = np.clip((canary - med) / scale, -10.0, 10.0)
    signs = {"increase": (1.0,), "decrease": (-1.0,), "either": (1.0, -1.0)}[cfg.bad_direction]
    bad = np.max([np.maximum(sign * z, 0.0) for sign in signs], axis=0)
    z_sev = ZSCORE_LEVELS.classify_many(bad)
    cusum = np.zeros(canary.size)
    for sign in signs:
        # Page's CUSUM on the signed z-scores (allowance 0.5), S_t = max(0, S_{t-1} + x_t), is
        # the running sum minus its running minimum (0 included): no Python loop.
        run = np.cumsum(sign * z - 0.5)
        cusum = np.maximum(cusum, run - np.minimum(np.minimum.accumulate(run), 0.0))
    c_sev = CUSUM_LEVELS.classify_many(cusum)
    worst = int(max(z_sev.max(initial=0), c_sev.max(initial=0)))
    flagged = (z_sev >= Severity.CRITICAL) | (c_sev >= Severity.CRITICAL)
    return int(flagged.sum()), Severity(worst)


def _wilson(events: float, trials: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials <= 0:
        return 0.0, 1.0
    p = events / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2.0 * trials)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def _fisher_midp(
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


def _counts(values: ArrayLike) -> tuple[NDArray[np.float64], int, int]:
    """``(events, trials)`` rows -> (finite rows, rows dropped, raw rows)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2)), 0, 0
    if arr.ndim == 1 and arr.size == 2:
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"a proportion metric needs (events, trials) rows, got {arr.shape}")
    ok = np.isfinite(arr).all(axis=1) & (arr[:, 1] >= 0) & (arr[:, 0] >= 0)
    ok &= arr[:, 0] <= arr[:, 1]
    return arr[ok], int(arr.shape[0] - ok.sum()), int(arr.shape[0])


def _direction_p(upper: float, lower: float, direction: BadDirection) -> float:
    if direction == "increase":
        return upper
    if direction == "decrease":
        return lower
    return min(1.0, 2.0 * min(upper, lower))


def _mde_rise(p_s: float, n_s: int, n_c: int, z_a: float, z_b: float) -> float:
    """Smallest rise ``d`` of a rate above ``p_s`` that a one-sided level-``alpha`` test of two
    proportions detects with the power behind ``z_b`` (``z_a``: the level's critical value).

    Pooled-variance normal approximation, solved by bisection: ``d`` minus the required margin
    is negative at 0 and convex in ``d`` (the margin is a sum of square roots of concave
    functions), so it crosses zero once. ``inf`` when even a rate of 1 is not enough.
    """
    n = n_s + n_c

    def gap(d: float) -> float:
        p_c = p_s + d
        pbar = (n_s * p_s + n_c * p_c) / n
        null_sd = math.sqrt(max(pbar * (1.0 - pbar), 0.0) * (1.0 / n_s + 1.0 / n_c))
        alt_sd = math.sqrt(max(p_s * (1.0 - p_s) / n_s + p_c * (1.0 - p_c) / n_c, 0.0))
        return d - z_a * null_sd - z_b * alt_sd

    lo, hi = 0.0, 1.0 - p_s
    if hi <= 0.0 or gap(hi) < 0.0:
        return math.inf
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if gap(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return hi


def _mde_proportion(
    p_s: float, n_s: int, n_c: int, *, alpha: float, power: float, direction: BadDirection
) -> float:
    """Minimum detectable change of the canary's rate in the metric's bad direction."""
    if direction == "either":
        alpha /= 2.0
    z_a, z_b = float(special.ndtri(1.0 - alpha)), float(special.ndtri(power))
    up = _mde_rise(p_s, n_s, n_c, z_a, z_b)
    down = _mde_rise(1.0 - p_s, n_s, n_c, z_a, z_b)
    return {"increase": up, "decrease": down, "either": max(up, down)}[direction]


def _mde_shift(
    stable: NDArray[np.float64],
    n_canary: int,
    *,
    alpha: float,
    power: float,
    direction: BadDirection,
) -> tuple[float, float]:
    """Minimum detectable shift of the U test: ``(absolute, relative to the stable median)``.

    Noether's sample size formula inverted: the U test at level ``alpha`` detects, with
    probability ``power``, a shift ``delta`` with ``P(X + delta > X') >= 1/2 + (z_a + z_b)
    sqrt((m + n + 1) / (12 m n))``, ``X, X'`` independent draws of the stable version. That
    probability is read off the stable sample's own pairwise differences (no distribution
    assumed); on the log scale when every sample is positive, so the shift is relative (every
    request slower by the same factor), else on the metric's scale.
    """
    m = stable.size
    if direction == "either":
        alpha /= 2.0
    z = float(special.ndtri(1.0 - alpha)) + float(special.ndtri(power))
    need = 0.5 + z * math.sqrt((m + n_canary + 1) / (12.0 * m * n_canary))
    ordered = np.sort(stable, kind="stable")
    ref = abs(_quantile(ordered, 0.5)) or float(np.mean(np.abs(stable)))
    if need >= 1.0 or m < 2:
        return math.inf, math.inf
    positive = bool(ordered[0] > 0.0)
    v = _compress(np.log(ordered) if positive else ordered, ordered=True)
    diffs = (v[:, None] - v[None, :])[~np.eye(v.size, dtype=bool)]
    delta = max(float(np.quantile(diffs, need)), 0.0)
    if positive:
        rel = math.expm1(delta) if direction != "decrease" else -math.expm1(-delta)
        return rel * ref, rel
    return delta, (delta / ref if ref else math.inf)


def _tail_test(
    stable: NDArray[np.float64],
    canary: NDArray[np.float64],
    *,
    direction: BadDirection,
    quantile: float,
) -> tuple[float, float, float]:
    """Tail exceedance test: ``(one-sided p, absolute and relative change of the quantile)``.

    Counts the samples of each version above the pooled sample's ``quantile`` (below its mirror
    ``1 - quantile`` for a ``decrease``) and tests canary against stable with the one-sided
    Fisher mid-p test; the threshold depends on the pooled sample only, so under no change the
    test is exact given it. The effect is the change of the version's own ``quantile``.
    """
    s_ord = np.sort(stable, kind="stable")
    c_ord = np.sort(canary, kind="stable")
    pooled = np.sort(np.concatenate([s_ord, c_ord]), kind="stable")
    n = pooled.size

    def beyond(ordered: NDArray[np.float64], thr: float, sign: float) -> int:
        if sign > 0:
            return int(ordered.size - np.searchsorted(ordered, thr, side="right"))
        return int(np.searchsorted(ordered, thr, side="left"))

    def one_tail(sign: float) -> tuple[float, float, float]:
        q = quantile if sign > 0 else 1.0 - quantile
        thr = _quantile(pooled, q)
        a = beyond(c_ord, thr, sign)
        total = a + beyond(s_ord, thr, sign)
        if total in (0, n):
            p = 1.0
        else:
            p = _fisher_midp(
                canary_events=a, canary_trials=canary.size, total_events=total, total_trials=n
            )[0]
        qs, qc = _quantile(s_ord, q), _quantile(c_ord, q)
        shift = qc - qs
        rel = shift / abs(qs) if qs else (math.inf if shift > 0 else -math.inf if shift else 0.0)
        return p, shift, rel

    if direction == "increase":
        return one_tail(1.0)
    if direction == "decrease":
        return one_tail(-1.0)
    up, down = one_tail(1.0), one_tail(-1.0)
    best = up if up[0] <= down[0] else down
    return min(1.0, 2.0 * best[0]), best[1], best[2]


def _paired_differences(
    s: NDArray[np.float64], c: NDArray[np.float64]
) -> tuple[NDArray[np.float64], bool]:
    """Per-bucket differences of two aligned series and whether they are relative (``2 (c - s) /
    (c + s)``, non-negative series, buckets idle on both sides dropped) or plain differences
    over the stable median."""
    if s.shape != c.shape:
        raise ValueError(f"paired samples need the same buckets, got {s.shape} and {c.shape}")
    if bool((s >= 0.0).all() and (c >= 0.0).all()):
        # a bucket where both read 0 (no load at all) carries no information: dropped
        tot = s + c
        busy = tot > 0.0
        return 2.0 * (c[busy] - s[busy]) / tot[busy], True
    ref = abs(float(np.median(s))) if s.size else 0.0
    return (c - s) / (ref or 1.0), False


@lru_cache(maxsize=256)
def _t_critical(alpha: float, df: int) -> float:
    return float(stats.t.isf(alpha, df))


def _signed_rank_p(d: NDArray[np.float64], *, alternative: str) -> float:
    """Wilcoxon signed-rank p-value of ``d`` (zeros dropped; normal approximation with tie and
    continuity corrections)."""
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
    sd = math.sqrt(var)
    if alternative == "greater":
        return float(special.ndtr(-(t_plus - mean - 0.5) / sd))
    if alternative == "less":
        return float(special.ndtr((t_plus - mean + 0.5) / sd))
    return min(1.0, 2.0 * float(special.ndtr(-(abs(t_plus - mean) - 0.5) / sd)))


def paired_test(
    stable: ArrayLike,
    canary: ArrayLike,
    *,
    direction: BadDirection = "increase",
    confidence: float = 0.95,
    power: float = 0.8,
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
    even ``n`` buckets all worse would not reach the level).
    """
    s = np.asarray(stable, dtype=np.float64)
    c = np.asarray(canary, dtype=np.float64)
    r, ratio_scale = _paired_differences(s, c)

    def back(x: float) -> float:
        if not ratio_scale:
            return x
        return math.inf if x >= 2.0 else (-1.0 if x <= -2.0 else 2.0 * x / (2.0 - x))

    n = r.size
    alpha = 1.0 - confidence
    p = _signed_rank_p(r, alternative=_MWU_ALTERNATIVE[direction])
    w_src = _compress(r)
    i, j = np.triu_indices(w_src.size)
    walsh = 0.5 * (w_src[i] + w_src[j])
    size = walsh.size
    z = _z_critical(confidence)
    # the interval's rank among the n (n + 1) / 2 Walsh averages, as a share (compression)
    k = math.floor(size * (0.5 - z * math.sqrt((2 * n + 1) / (6.0 * n * (n + 1)))))
    k = min(max(k, 0), (size - 1) // 2)
    mid = ((size - 1) // 2, size // 2)
    part = np.partition(walsh, sorted({k, size - 1 - k, *mid}))
    est = 0.5 * float(part[mid[0]] + part[mid[1]])
    a = alpha / 2.0 if direction == "either" else alpha
    # Few buckets: the smallest p-value the test can give at all (every bucket worse) may be
    # above the level, and then no change is detectable; else a t quantile for the spread.
    if n < 2 or _signed_rank_p(np.ones(n), alternative="greater") >= a:
        mde = math.inf
    else:
        zz = _t_critical(a, n - 1) + float(special.ndtri(power))
        spread = float(np.std(r, ddof=1))
        delta = zz * spread / math.sqrt(n) * math.sqrt(math.pi / 3.0)
        mde = back(delta) if direction != "decrease" else -back(-delta)
    return p, back(est), back(float(part[k])), back(float(part[size - 1 - k])), mde


def _holm(p_shift: float, p_tail: float, *, alpha: float, tail_weight: float) -> tuple[bool, bool]:
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


def _target(metric: MetricConfig, level: float) -> float:
    """The regression (effect's unit) the metric must be able to detect; NaN: no target."""
    parts = []
    if metric.detectable is not None:
        parts.append(metric.detectable * abs(level))
    if metric.detectable_absolute is not None:
        parts.append(metric.detectable_absolute)
    return max(parts) if parts else math.nan


def _power_guard(
    verdict: MetricVerdict, mde: float, target: float, reasons: list[str]
) -> MetricVerdict:
    """A passing metric whose MDE is above its target could not have seen the regression."""
    if verdict in (MetricVerdict.PASS, MetricVerdict.MARGINAL) and mde > target:
        reasons.append("InsufficientPower")
        return MetricVerdict.UNDERPOWERED
    return verdict


def _no_data(
    metric: MetricConfig,
    cfg: JudgeConfig,
    reasons: list[str],
    base: dict[str, object],
    *,
    nan_share: float,
    samples: int,
) -> MetricResult | None:
    """The NoData result when too many values were NaN or too few samples remain, else None
    (the guards every metric kind shares; `reasons` gains what applied)."""
    if nan_share > cfg.max_nan_fraction:
        reasons.append("TooManyNaNs")
    if samples < metric.min_samples:
        reasons.append("FewSamples")
    if "TooManyNaNs" not in reasons and "FewSamples" not in reasons:
        return None
    nan = float("nan")
    return MetricResult(
        verdict=MetricVerdict.NODATA,
        reasons=tuple(reasons),
        p_value=nan,
        effect=nan,
        effect_low=nan,
        effect_high=nan,
        relative_effect=nan,
        **base,  # type: ignore[arg-type]
    )


def _judge_proportion(
    stable: ArrayLike, canary: ArrayLike, metric: MetricConfig, cfg: JudgeConfig, alpha: float
) -> MetricResult:
    s, s_bad, s_rows = _counts(stable)
    c, c_bad, c_rows = _counts(canary)
    reasons: list[str] = []
    if s_bad + c_bad:
        reasons.append("NaNsDropped")
    se, st = (int(v) for v in np.rint(s.sum(axis=0)))
    ce, ct = (int(v) for v in np.rint(c.sum(axis=0)))
    nan = float("nan")
    p_s = se / st if st else nan
    p_c = ce / ct if ct else nan
    base = {
        "name": metric.name,
        "critical": metric.critical,
        "weight": metric.weight,
        "n_stable": st,
        "n_canary": ct,
        "nan_dropped": s_bad + c_bad,
        "stable_median": p_s,
        "canary_median": p_c,
        "alpha": alpha,
    }
    no_data = _no_data(
        metric,
        cfg,
        reasons,
        base,
        nan_share=max(s_bad / max(s_rows, 1), c_bad / max(c_rows, 1)),
        samples=min(st, ct),
    )
    if no_data is not None:
        return no_data
    if se + ce == 0 or se + ce == st + ct:
        upper = lower = 1.0
    else:
        upper, lower = _fisher_midp(
            canary_events=ce, canary_trials=ct, total_events=se + ce, total_trials=st + ct
        )
    p_value = _direction_p(upper, lower, metric.bad_direction)
    effect = p_c - p_s
    z = _z_critical(1.0 - alpha)
    lc, uc = _wilson(ce, ct, z)
    ls, us = _wilson(se, st, z)
    low = effect - math.sqrt((p_c - lc) ** 2 + (us - p_s) ** 2)
    high = effect + math.sqrt((uc - p_c) ** 2 + (p_s - ls) ** 2)
    zero_baseline = se == 0
    if zero_baseline:
        reasons.append("ZeroBaseline")
        relative = math.inf if effect > 0 else (-math.inf if effect < 0 else 0.0)
    else:
        relative = effect / p_s
    verdict = _classify(
        significant=p_value < alpha,
        effect=effect,
        relative=relative,
        zero_baseline=zero_baseline,
        metric=metric,
    )
    mde = _mde_proportion(p_s, st, ct, alpha=alpha, power=cfg.power, direction=metric.bad_direction)
    target = _target(metric, p_s)
    verdict = _power_guard(verdict, mde, target, reasons)
    return MetricResult(
        verdict=verdict,
        reasons=tuple(reasons),
        p_value=p_value,
        effect=effect,
        effect_low=low,
        effect_high=high,
        relative_effect=relative,
        mde=mde,
        mde_relative=mde / p_s if p_s else math.inf,
        detectable=target,
        **base,  # type: ignore[arg-type]
    )


def _classify(
    *,
    significant: bool,
    effect: float,
    relative: float,
    zero_baseline: bool,
    metric: MetricConfig,
) -> MetricVerdict:
    """High / Low when the shift is significant, in a bad direction and beyond tolerance."""

    def exceeds(shift: float, rel: float) -> bool:
        if shift <= metric.absolute_tolerance:
            return False
        return zero_baseline or rel > metric.tolerance

    up_bad = metric.bad_direction in ("increase", "either")
    down_bad = metric.bad_direction in ("decrease", "either")
    if significant and up_bad and effect > 0 and exceeds(effect, relative):
        return MetricVerdict.HIGH
    if significant and down_bad and effect < 0 and exceeds(-effect, -relative):
        return MetricVerdict.LOW
    return MetricVerdict.PASS


_MWU_ALTERNATIVE = {"increase": "greater", "decrease": "less", "either": "two-sided"}


def judge_metric(
    stable: ArrayLike,
    canary: ArrayLike,
    metric: MetricConfig,
    *,
    config: JudgeConfig | None = None,
    look: int = 1,
) -> MetricResult:
    """Judge one metric's canary samples against its stable samples (see module docstring).

    For a ``continuous`` metric, ``stable`` and ``canary`` are 1-D samples; for a
    ``proportion`` metric they are ``(events, trials)`` rows (shape ``(n, 2)``) or one such
    pair of totals. ``look`` (1-based, at most ``config.looks``) is the analysis interval the
    samples run up to; it selects the level this call tests at.
    """
    cfg = config or JudgeConfig()
    alpha = cfg.alpha_at(look)
    if metric.kind == "proportion":
        return _judge_proportion(stable, canary, metric, cfg, alpha)
    s_raw = np.asarray(stable, dtype=np.float64).ravel()
    c_raw = np.asarray(canary, dtype=np.float64).ravel()
    if metric.paired:
        if s_raw.shape != c_raw.shape:
            raise ValueError(
                f"paired metric {metric.name!r} needs the same buckets on both sides, got "
                f"{s_raw.size} and {c_raw.size}"
            )
        both = np.isfinite(s_raw) & np.isfinite(c_raw)
        s_pairs, c_pairs = s_raw[both], c_raw[both]
    s, s_nan = _clean(s_raw)
    c_series, c_nan = _clean(c_raw)
    if metric.paired:  # a bucket counts only with both sides
        s, c_series = s_pairs, c_pairs
    # Sorted once: every later sort (timsort) of these is a linear pass; the detectors get the
    # canary in time order.
    s = np.sort(s, kind="stable")
    c = np.sort(c_series, kind="stable")
    nan_dropped = s_nan + c_nan
    reasons: list[str] = []
    if nan_dropped:
        reasons.append("NaNsDropped")
    nan = float("nan")
    base = {
        "name": metric.name,
        "critical": metric.critical,
        "weight": metric.weight,
        "n_stable": int(s.size),
        "n_canary": int(c.size),
        "nan_dropped": nan_dropped,
        "stable_median": _quantile(s, 0.5) if s.size else nan,
        "canary_median": _quantile(c, 0.5) if c.size else nan,
        "alpha": alpha,
    }
    no_data = _no_data(
        metric,
        cfg,
        reasons,
        base,
        nan_share=max(s_nan / max(s_raw.size, 1), c_nan / max(c_raw.size, 1)),
        samples=min(s.size, c.size),
    )
    if no_data is not None:
        return no_data

    if metric.paired:
        p_tail = tail_shift = tail_rel = nan
        p_value, relative, rel_low, rel_high, mde_rel = paired_test(
            s_pairs,
            c_pairs,
            direction=metric.bad_direction,
            confidence=1.0 - alpha,
            power=cfg.power,
        )
    elif min(s[0], c[0]) == max(s[-1], c[-1]):
        p_value = p_tail = 1.0
        tail_shift = tail_rel = 0.0
    else:
        alternative = _MWU_ALTERNATIVE[metric.bad_direction]
        p_value = mann_whitney_p(s, c, alternative=alternative)
        if cfg.tail_weight > 0.0:
            p_tail, tail_shift, tail_rel = _tail_test(
                s, c, direction=metric.bad_direction, quantile=cfg.tail_quantile
            )
        else:
            p_tail = tail_shift = tail_rel = nan
    tail_weight = 0.0 if metric.paired else cfg.tail_weight
    shift_alpha = alpha * (1.0 - tail_weight) if tail_weight > 0.0 else alpha
    ref = abs(_quantile(s, 0.5))
    if ref == 0.0:
        ref = float(np.mean(np.abs(s)))
    zero_baseline = ref == 0.0
    if zero_baseline:
        reasons.append("ZeroBaseline")
    if metric.paired:
        # the paired test's relative change, in the metric's unit via the stable median (its
        # mean when that is 0; 1 when both are)
        scale = ref or 1.0
        effect, low, high = relative * scale, rel_low * scale, rel_high * scale
    else:
        effect, low, high = hodges_lehmann(s, c, confidence=1.0 - shift_alpha)
        if zero_baseline:
            # Many zeros make the median shift 0 even when the canary has errors; the mean
            # shift is the honest effect then.
            mean_shift = float(np.mean(c) - np.mean(s))
            if abs(mean_shift) > abs(effect):
                effect = mean_shift
            relative = math.inf if effect > 0 else (-math.inf if effect < 0 else 0.0)
        else:
            relative = effect / ref
    shift_rejected, tail_rejected = _holm(p_value, p_tail, alpha=alpha, tail_weight=tail_weight)
    verdict = _classify(
        significant=shift_rejected,
        effect=effect,
        relative=relative,
        zero_baseline=zero_baseline,
        metric=metric,
    )
    if verdict == MetricVerdict.PASS and tail_rejected:
        verdict = _classify(
            significant=True,
            effect=tail_shift,
            relative=tail_rel,
            zero_baseline=zero_baseline,
            metric=metric,
        )
        if verdict != MetricVerdict.PASS:
            reasons.append("TailRegression")

    anomalous, severity = 0, Severity.INFO
    if cfg.detectors and metric.series:
        if metric.paired:
            anomalous, severity = _anomalies(s_pairs, c_pairs, metric, paired=True)
        else:
            anomalous, severity = _anomalies(s, c_series, metric)
        if verdict == MetricVerdict.PASS and anomalous >= cfg.anomalous_fraction * c.size:
            verdict = MetricVerdict.MARGINAL
            reasons.append("AnomalousCanarySeries")
    if metric.paired:
        mde = mde_rel * (ref or 1.0)
    else:
        mde, mde_rel = _mde_shift(
            s, c.size, alpha=shift_alpha, power=cfg.power, direction=metric.bad_direction
        )
    target = _target(metric, ref)
    verdict = _power_guard(verdict, mde, target, reasons)
    return MetricResult(
        verdict=verdict,
        reasons=tuple(reasons),
        p_value=p_value,
        effect=effect,
        effect_low=low,
        effect_high=high,
        relative_effect=relative,
        anomalous_points=anomalous,
        anomaly_severity=severity,
        mde=mde,
        mde_relative=mde_rel,
        detectable=target,
        tail_p_value=p_tail,
        tail_effect=tail_rel,
        **base,  # type: ignore[arg-type]
    )


ZSCORE_LEVELS = Thresholds(4.0, 6.0, 10.0)
CUSUM_LEVELS = Thresholds(8.0, 16.0, 32.0)

_CREDIT = {MetricVerdict.PASS: 1.0, MetricVerdict.MARGINAL: 0.5}


def judge(
    samples: Mapping[str, tuple[ArrayLike, ArrayLike]],
    metrics: Sequence[MetricConfig],
    *,
    config: JudgeConfig | None = None,
    look: int = 1,
) -> CanaryJudgement:
    """Judge a canary run: ``samples[name] = (stable, canary)`` for every configured metric.

    ``look`` is the analysis interval the samples run up to (see :func:`judge_metric`). A
    metric missing from ``samples`` is ``NoData``. The score is the weighted share of passing
    metrics among those with data (``Marginal`` counts half; ``Underpowered`` counts as no
    data). Outcome: Failed if a critical metric regressed or the score is below
    ``marginal_score``; Inconclusive if a critical metric or more than half the weight has no
    data, a metric is underpowered, or the score is between the two levels; Successful
    otherwise.
    """
    cfg = config or JudgeConfig()
    if not metrics:
        raise ValueError("at least one metric is needed")
    results = tuple(
        judge_metric(*samples.get(m.name, ([], [])), m, config=cfg, look=look) for m in metrics
    )
    reasons: list[str] = []
    total_w = sum(r.weight for r in results)
    no_data = (MetricVerdict.NODATA, MetricVerdict.UNDERPOWERED)
    data = [r for r in results if r.verdict not in no_data]
    data_w = sum(r.weight for r in data)
    score = (
        100.0 * sum(r.weight * _CREDIT.get(r.verdict, 0.0) for r in data) / data_w
        if data_w
        else 0.0
    )
    if any(r.critical and r.failed for r in results):
        reasons.append("CriticalMetricFailed")
        return CanaryJudgement(Outcome.FAILED, 0.0, results, tuple(reasons))
    if any(r.failed for r in results):
        reasons.append("MetricFailed")
    if any(r.critical and r.verdict == MetricVerdict.NODATA for r in results):
        reasons.append("CriticalMetricNoData")
    if total_w and data_w < 0.5 * total_w:
        reasons.append("MostlyNoData")
    if any(r.verdict == MetricVerdict.UNDERPOWERED for r in results):
        reasons.append("MetricUnderpowered")
    # Marginal metrics lower the score (no Success) but never fail a run: only regressions do.
    regressed_w = sum(r.weight for r in data if r.failed)
    fail_score = 100.0 * (1.0 - regressed_w / data_w) if data_w else 100.0
    if data_w and fail_score < cfg.marginal_score:
        return CanaryJudgement(Outcome.FAILED, score, results, (*reasons, "ScoreBelowMarginal"))
    if {"CriticalMetricNoData", "MostlyNoData", "MetricUnderpowered"} & set(reasons):
        return CanaryJudgement(Outcome.INCONCLUSIVE, score, results, tuple(reasons))
    if score >= cfg.pass_score:
        return CanaryJudgement(Outcome.SUCCESSFUL, score, results, (*reasons, "ScoreAbovePass"))
    return CanaryJudgement(Outcome.INCONCLUSIVE, score, results, (*reasons, "ScoreMarginal"))
