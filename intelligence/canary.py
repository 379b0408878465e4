"""The canary judge: compares a canary's metrics with the stable version's and decides.

Modelled on Kayenta's NetflixACAJudge, per metric:

1. clean: drop NaN / inf samples (``NaNsDropped``); too many of them (``TooManyNaNs``) or too
   few samples left (``FewSamples``) makes the metric ``NoData``;
2. test: a two-sided Mann-Whitney U test of canary against stable, and the Hodges-Lehmann
   estimate of the shift (median of all pairwise differences) with its distribution-free
   confidence interval;
3. classify: the metric is ``High`` (or ``Low``) when the shift is significant, in the metric's
   bad direction, and larger than its tolerance (relative to the stable median, or absolute when
   the stable median is zero: ``ZeroBaseline``); otherwise ``Pass``;
4. watch the canary's own series with anomaly detectors (robust z-score and CUSUM, primed on the
   stable samples): a passing metric whose canary series is persistently anomalous becomes
   ``Marginal`` (``AnomalousCanarySeries``), which costs half its weight.

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
from scipy import stats

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
]

BadDirection = Literal["increase", "decrease", "either"]

MAX_HL_POINTS = 400
"""Samples larger than this are summarised by this many quantiles for the Hodges-Lehmann
estimate (the U test always uses every sample)."""


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
        min_samples: fewer finite samples on either side gives ``NoData``.
    """

    name: str
    bad_direction: BadDirection = "increase"
    weight: float = 1.0
    critical: bool = False
    tolerance: float = 0.1
    absolute_tolerance: float = 0.0
    min_samples: int = 8


@dataclass(frozen=True)
class JudgeConfig:
    """Run-level settings (Kayenta's defaults where it has one)."""

    alpha: float = 0.01
    pass_score: float = 95.0
    marginal_score: float = 75.0
    max_nan_fraction: float = 0.5
    detectors: bool = True
    anomalous_fraction: float = 0.3


@dataclass(frozen=True)
class MetricResult:
    """One metric's verdict and the numbers behind it."""

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
    x = _compress(np.asarray(stable, dtype=np.float64))
    y = _compress(np.asarray(canary, dtype=np.float64))
    m, n = x.size, y.size
    if m == 0 or n == 0:
        nan = float("nan")
        return nan, nan, nan
    diffs = np.sort((y[:, None] - x[None, :]).ravel())
    est = float(np.median(diffs))
    z = _z_critical(confidence)
    k = math.floor(m * n / 2.0 - z * math.sqrt(m * n * (m + n + 1) / 12.0))
    k = min(max(k, 0), diffs.size - 1)
    return est, float(diffs[k]), float(diffs[diffs.size - 1 - k])


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
    for sign in signs:  # Page's CUSUM on the signed z-scores, allowance 0.5
        acc = 0.0
        for i, v in enumerate((sign * z).tolist()):
            acc = max(0.0, acc + v - 0.5)
            cusum[i] = max(cusum[i], acc)
    c_sev = CUSUM_LEVELS.classify_many(cusum)
    worst = int(max(z_sev.max(initial=0), c_sev.max(initial=0)))
    flagged = (z_sev >= Severity.CRITICAL) | (c_sev >= Severity.CRITICAL)
    return int(flagged.sum()), Severity(worst)


def judge_metric(
    stable: ArrayLike,
    canary: ArrayLike,
    metric: MetricConfig,
    *,
    config: JudgeConfig | None = None,
) -> MetricResult:
    """Judge one metric's canary samples against its stable samples (see module docstring)."""
    cfg = config or JudgeConfig()
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
        p_value = float(stats.mannwhitneyu(c, s, alternative="two-sided").pvalue)
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

    def exceeds(shift: float, rel: float) -> bool:
        if shift <= metric.absolute_tolerance:
            return False
        return zero_baseline or rel > metric.tolerance

    significant = p_value < cfg.alpha
    up_bad = metric.bad_direction in ("increase", "either")
    down_bad = metric.bad_direction in ("decrease", "either")
    verdict = MetricVerdict.PASS
    if significant and up_bad and effect > 0 and exceeds(effect, relative):
        verdict = MetricVerdict.HIGH
    elif significant and down_bad and effect < 0 and exceeds(-effect, -relative):
        verdict = MetricVerdict.LOW

    anomalous, severity = 0, Severity.INFO
    if cfg.detectors:
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
