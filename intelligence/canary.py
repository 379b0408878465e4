"""The canary judge: compares a canary's metrics with the stable version's and decides.

Modelled on Kayenta's NetflixACAJudge, with two kinds of metric.

``continuous`` metrics (latency, saturation) take raw samples, best one per request (a latency
per request, not a p95 per 30-second bucket: a bucket quantile of a handful of requests is mostly
noise, and it turns an empty bucket into a missing value):

1. clean: drop NaN / inf samples (``NaNsDropped``); too many of them (``TooManyNaNs``) or too
   few samples left (``FewSamples``) makes the metric ``NoData``;
2. test: a Mann-Whitney U test of canary against stable, one-sided in the metric's bad
   direction (two-sided for ``either``), and the Hodges-Lehmann estimate of the shift (median of
   all pairwise differences) with its distribution-free confidence interval;
3. classify: the metric is ``High`` (or ``Low``) when the shift is significant, in the metric's
   bad direction, and larger than its tolerance (relative to the stable median, or absolute when
   the stable median is zero: ``ZeroBaseline``); otherwise ``Pass``;
4. watch the canary's own series with anomaly detectors (robust z-score and CUSUM, primed on the
   stable samples): a passing metric whose canary series is persistently anomalous becomes
   ``Marginal`` (``AnomalousCanarySeries``), which costs half its weight.

``proportion`` metrics (error rate) take counts, ``(events, trials)`` per bucket or in total,
because a rate is a binomial proportion: a bucket with no requests carries no information (it
is not a missing value), and a bucket with 3 requests weighs less than one with 300. The test is
the one-sided Fisher exact test on the pooled 2x2 table (mid-p, which keeps its size close to
the nominal level instead of far below it); the effect is the difference of the two rates with
Newcombe's hybrid-score interval, and the tolerance applies to that difference (``ZeroBaseline``
when the stable version had no events).

Every look at the data is one test per metric at level ``alpha``; a rollout that judges after
each of ``K`` intervals on all samples so far accumulates evidence sequentially, and its chance
of failing a healthy canary on one metric is at most ``K * alpha`` (in practice much less, the
looks share their samples).

The run: a failing critical metric fails the run on its own (``CriticalMetricFailed``); otherwise
the weighted share of passing metrics (0-100) is compared with ``pass_score`` (Successful) and
``marginal_score`` (below it: Failed; in between: Inconclusive). Every verdict carries its
numbers. Pure: numpy and scipy only, no I/O, no clock reads.
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
]

BadDirection = Literal["increase", "decrease", "either"]
MetricKind = Literal["continuous", "proportion"]

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


@dataclass(frozen=True)
class JudgeConfig:
    """Run-level settings (Kayenta's defaults where it has one).

    ``alpha`` is the false-failure level of one metric at one look (one-sided in the bad
    direction); see the module docstring for several looks.
    """

    alpha: float = 0.002
    pass_score: float = 95.0
    marginal_score: float = 75.0
    max_nan_fraction: float = 0.5
    detectors: bool = True
    anomalous_fraction: float = 0.3


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


def _compress(sample: NDArray[np.float64]) -> NDArray[np.float64]:
    if sample.size <= MAX_HL_POINTS:
        return sample
    q = (np.arange(MAX_HL_POINTS) + 0.5) / MAX_HL_POINTS
    return np.quantile(sample, q)


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
    pooled = np.concatenate([canary, stable])
    ranks = stats.rankdata(pooled)
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    mean = n1 * n2 / 2.0
    _, counts = np.unique(pooled, return_counts=True)
    n = n1 + n2
    tie = float((counts**3 - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
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
    stable: NDArray[np.float64], canary: NDArray[np.float64], cfg: MetricConfig
) -> tuple[int, Severity]:
    """Canary points at CRITICAL or worse against the stable samples as a frozen reference.

    The statistics of :class:`~intelligence.anomaly.RobustZScore` (median / MAD z-score, with
    the metric's tolerances as scale floors) and :class:`~intelligence.anomaly.CusumDetector`
    (two-sided CUSUM of those z-scores, allowance 0.5), computed in one pass: the stable
    version runs at the same time as the canary, so it is the reference for every canary point.
    """
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


def _judge_proportion(
    stable: ArrayLike, canary: ArrayLike, metric: MetricConfig, cfg: JudgeConfig
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
    }
    worst_nan = max(s_bad / max(s_rows, 1), c_bad / max(c_rows, 1))
    if worst_nan > cfg.max_nan_fraction:
        reasons.append("TooManyNaNs")
    if min(st, ct) < metric.min_samples:
        reasons.append("FewSamples")
    if "TooManyNaNs" in reasons or "FewSamples" in reasons:
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
    if se + ce == 0 or se + ce == st + ct:
        upper = lower = 1.0
    else:
        upper, lower = _fisher_midp(
            canary_events=ce, canary_trials=ct, total_events=se + ce, total_trials=st + ct
        )
    p_value = _direction_p(upper, lower, metric.bad_direction)
    effect = p_c - p_s
    z = _z_critical(1.0 - cfg.alpha)
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
        significant=p_value < cfg.alpha,
        effect=effect,
        relative=relative,
        zero_baseline=zero_baseline,
        metric=metric,
    )
    return MetricResult(
        verdict=verdict,
        reasons=tuple(reasons),
        p_value=p_value,
        effect=effect,
        effect_low=low,
        effect_high=high,
        relative_effect=relative,
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
) -> MetricResult:
    """Judge one metric's canary samples against its stable samples (see module docstring).

    For a ``continuous`` metric, ``stable`` and ``canary`` are 1-D samples; for a
    ``proportion`` metric they are ``(events, trials)`` rows (shape ``(n, 2)``) or one such
    pair of totals.
    """
    cfg = config or JudgeConfig()
    if metric.kind == "proportion":
        return _judge_proportion(stable, canary, metric, cfg)
    s_raw = np.asarray(stable, dtype=np.float64).ravel()
    c_raw = np.asarray(canary, dtype=np.float64).ravel()
    s, s_nan = _clean(s_raw)
    c, c_nan = _clean(c_raw)
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
        "stable_median": float(np.median(s)) if s.size else nan,
        "canary_median": float(np.median(c)) if c.size else nan,
    }
    worst_nan = max(s_nan / max(s_raw.size, 1), c_nan / max(c_raw.size, 1))
    if worst_nan > cfg.max_nan_fraction:
        reasons.append("TooManyNaNs")
    if min(s.size, c.size) < metric.min_samples:
        reasons.append("FewSamples")
    if "TooManyNaNs" in reasons or "FewSamples" in reasons:
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

    if np.ptp(np.concatenate([s, c])) == 0.0:
        p_value = 1.0
    else:
        alternative = _MWU_ALTERNATIVE[metric.bad_direction]
        p_value = mann_whitney_p(s, c, alternative=alternative)
    effect, low, high = hodges_lehmann(s, c, confidence=1.0 - cfg.alpha)
    ref = abs(float(np.median(s)))
    if ref == 0.0:
        ref = float(np.mean(np.abs(s)))
    zero_baseline = ref == 0.0
    if zero_baseline:
        reasons.append("ZeroBaseline")
        # Many zeros make the median shift 0 even when the canary has errors; the mean shift
        # is the honest effect then.
        mean_shift = float(np.mean(c) - np.mean(s))
        if abs(mean_shift) > abs(effect):
            effect = mean_shift
        relative = math.inf if effect > 0 else (-math.inf if effect < 0 else 0.0)
    else:
        relative = effect / ref
    verdict = _classify(
        significant=p_value < cfg.alpha,
        effect=effect,
        relative=relative,
        zero_baseline=zero_baseline,
        metric=metric,
    )

    anomalous, severity = 0, Severity.INFO
    if cfg.detectors and metric.series:
        anomalous, severity = _anomalies(s, c, metric)
        if verdict == MetricVerdict.PASS and anomalous >= cfg.anomalous_fraction * c.size:
            verdict = MetricVerdict.MARGINAL
            reasons.append("AnomalousCanarySeries")
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
) -> CanaryJudgement:
    """Judge a canary run: ``samples[name] = (stable, canary)`` for every configured metric.

    A metric missing from ``samples`` is ``NoData``. The score is the weighted share of passing
    metrics among those with data (``Marginal`` counts half). Outcome: Failed if a critical
    metric regressed or the score is below ``marginal_score``; Inconclusive if a critical
    metric or more than half the weight has no data, or the score is between the two levels;
    Successful otherwise.
    """
    cfg = config or JudgeConfig()
    if not metrics:
        raise ValueError("at least one metric is needed")
    results = tuple(judge_metric(*samples.get(m.name, ([], [])), m, config=cfg) for m in metrics)
    reasons: list[str] = []
    total_w = sum(r.weight for r in results)
    data = [r for r in results if r.verdict != MetricVerdict.NODATA]
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
    # Marginal metrics lower the score (no Success) but never fail a run: only regressions do.
    regressed_w = sum(r.weight for r in data if r.failed)
    fail_score = 100.0 * (1.0 - regressed_w / data_w) if data_w else 100.0
    if data_w and fail_score < cfg.marginal_score:
        return CanaryJudgement(Outcome.FAILED, score, results, (*reasons, "ScoreBelowMarginal"))
    if "CriticalMetricNoData" in reasons or "MostlyNoData" in reasons:
        return CanaryJudgement(Outcome.INCONCLUSIVE, score, results, tuple(reasons))
    if score >= cfg.pass_score:
        return CanaryJudgement(Outcome.SUCCESSFUL, score, results, (*reasons, "ScoreAbovePass"))
    return CanaryJudgement(Outcome.INCONCLUSIVE, score, results, (*reasons, "ScoreMarginal"))
