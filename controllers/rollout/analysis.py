"""Analysis of a canary: the API's analysis config mapped onto `intelligence.canary`, one run
judged from samples (pure), and the samples read from a metrics provider (I/O).

`judge_params` is the one mapping of `spec.analysis` onto the judge's `MetricConfig` and
`JudgeConfig`. Each metric is judged by its `method`: `mannWhitney` by the canary judge
(`judge_metric`: Mann-Whitney + Hodges-Lehmann, tail test, power guard with the minimum
detectable effect); `threshold` on the canary's median; `zscore`, `iqr`, `isolationForest` and
`trend` (CUSUM) by the `intelligence.anomaly` detector primed on the stable series and run over
the canary's. The run's outcome follows the judge's rules: a critical metric that regressed
fails the run; a weighted score below `marginalScore` fails it; missing or underpowered data
makes it Inconclusive with `needs_data` (the rollout then extends the analysis and never
calls it Successful); at or above `successScore` it is Successful.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from apis.v1alpha1.rollout import AnalysisMethod, AnalysisMetric, AnalysisSpec, Verdict
from controllers.providers.metrics import Samples
from controllers.providers.prometheus import MetricsEmptyError, MetricsProvider
from intelligence.anomaly import (
    CusumDetector,
    IQRDetector,
    IsolationForestDetector,
    RobustZScore,
    Severity,
)
from intelligence.anomaly.base import AnomalyDetector
from intelligence.canary import Direction, JudgeConfig, MetricConfig, MetricVerdict, judge_metric

__all__ = [
    "REVISION_PLACEHOLDER",
    "MetricOutcome",
    "RunResult",
    "collect",
    "judge_params",
    "judge_run",
]

REVISION_PLACEHOLDER = "{{revision}}"
ANOMALOUS_FRACTION = 0.3
"""A detector method fails the canary when more than this share of its points is CRITICAL."""

_NO_DATA = (MetricVerdict.NODATA, MetricVerdict.UNDERPOWERED)
_CREDIT = {MetricVerdict.PASS: 1.0, MetricVerdict.MARGINAL: 0.5}
_ANOMALY_DIRECTION = {"increase": "up", "decrease": "down", "either": "both"}

Series = NDArray[np.float64]


def judge_params(analysis: AnalysisSpec, *, looks: int) -> tuple[list[MetricConfig], JudgeConfig]:
    """`spec.analysis` as the judge's configuration: one `MetricConfig` per metric (in
    order) and the run's `JudgeConfig` planned over `looks` intervals."""
    if looks < 1:
        raise ValueError(f"looks must be at least 1, got {looks}")
    metrics = [
        MetricConfig(
            name=m.name,
            bad_direction=Direction(m.direction),
            weight=m.weight,
            critical=m.critical,
            tolerance=m.tolerance_percent / 100.0,
            absolute_tolerance=m.absolute_tolerance,
            min_samples=analysis.minimum_samples,
            series=True,
            detectable=m.tolerance_percent / 100.0 if m.tolerance_percent > 0 else None,
            detectable_absolute=m.minimum_detectable,
        )
        for m in analysis.metrics
    ]
    config = JudgeConfig(
        pass_score=analysis.success_score,
        marginal_score=analysis.marginal_score,
        looks=looks,
    )
    return metrics, config


@dataclass(frozen=True)
class MetricOutcome:
    """One metric's verdict, as the run needs it, and its evidence line."""

    name: str
    verdict: MetricVerdict
    weight: float
    critical: bool
    evidence: str

    @property
    def failed(self) -> bool:
        return self.verdict in (MetricVerdict.HIGH, MetricVerdict.LOW)


@dataclass(frozen=True)
class RunResult:
    """One analysis run: verdict, score, whether more data is needed, evidence per metric."""

    verdict: Verdict
    score: float
    needs_data: bool
    metrics: tuple[MetricOutcome, ...]
    reasons: tuple[str, ...]

    @property
    def evidence(self) -> list[str]:
        return [m.evidence for m in self.metrics]

    @property
    def failures(self) -> list[str]:
        """Evidence of the metrics that regressed (for the rollback's condition and Event)."""
        return [m.evidence for m in self.metrics if m.failed]


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def _judge_mann_whitney(
    stable: Series, canary: Series, metric: MetricConfig, config: JudgeConfig, look: int
) -> MetricOutcome:
    r = judge_metric(stable, canary, metric, config=config, look=look)
    rel = "" if math.isnan(r.relative_effect) else f" ({r.relative_effect:+.1%})"
    line = (
        f"{r.name}: {r.verdict.value} mannWhitney p={_fmt(r.p_value)} alpha={_fmt(r.alpha)} "
        f"effect={_fmt(r.effect)}{rel} MDE={_fmt(r.mde)} stable={_fmt(r.stable_median)} "
        f"canary={_fmt(r.canary_median)} n={r.n_stable}/{r.n_canary}"
    )
    if r.reasons:
        line += f" [{','.join(r.reasons)}]"
    return MetricOutcome(r.name, r.verdict, r.weight, r.critical, line)


def _judge_threshold(spec: AnalysisMetric, canary: Series, metric: MetricConfig) -> MetricOutcome:
    if canary.size < metric.min_samples:
        line = f"{spec.name}: NoData threshold n={canary.size} < {metric.min_samples}"
        return MetricOutcome(spec.name, MetricVerdict.NODATA, spec.weight, spec.critical, line)
    median = float(np.median(canary))
    verdict = MetricVerdict.PASS
    if spec.max_value is not None and median > spec.max_value:
        verdict = MetricVerdict.HIGH
    elif spec.min_value is not None and median < spec.min_value:
        verdict = MetricVerdict.LOW
    bounds = f"min={spec.min_value} max={spec.max_value}"
    line = f"{spec.name}: {verdict.value} threshold canary={_fmt(median)} {bounds} n={canary.size}"
    return MetricOutcome(spec.name, verdict, spec.weight, spec.critical, line)


def _detector(method: AnalysisMethod, direction: str, history: int) -> AnomalyDetector:
    way = _ANOMALY_DIRECTION[direction]
    size = max(history, 8)
    if method is AnalysisMethod.ZSCORE:
        return RobustZScore(window=size, min_history=max(2, min(20, history)), direction=way)  # type: ignore[arg-type]
    if method is AnalysisMethod.IQR:
        return IQRDetector(window=size, min_history=max(4, min(20, history)), direction=way)  # type: ignore[arg-type]
    if method is AnalysisMethod.TREND:
        return CusumDetector(window=size, min_history=max(4, min(30, history)), direction=way)  # type: ignore[arg-type]
    return IsolationForestDetector(window=size, min_history=max(8, min(64, history)))


def _judge_detector(
    spec: AnalysisMetric, stable: Series, canary: Series, metric: MetricConfig
) -> MetricOutcome:
    name, method = spec.name, spec.method
    if min(stable.size, canary.size) < metric.min_samples:
        line = f"{name}: NoData {method.value} n={stable.size}/{canary.size}"
        return MetricOutcome(name, MetricVerdict.NODATA, spec.weight, spec.critical, line)
    detector = _detector(method, spec.direction, int(stable.size))
    multivariate = method is AnalysisMethod.ISOLATION_FOREST
    for value in stable:
        detector.update(np.array([value]) if multivariate else float(value))
    severities = [
        detector.update(np.array([v]) if multivariate else float(v)).severity for v in canary
    ]
    share = sum(s >= Severity.CRITICAL for s in severities) / len(severities)
    up = float(np.median(canary)) >= float(np.median(stable))
    bad = share > ANOMALOUS_FRACTION
    verdict = MetricVerdict.PASS
    if bad:
        verdict = MetricVerdict.HIGH if up or spec.direction == "increase" else MetricVerdict.LOW
    line = (
        f"{name}: {verdict.value} {method.value} anomalous={share:.0%} of {canary.size} points "
        f"(limit {ANOMALOUS_FRACTION:.0%}) stable={_fmt(float(np.median(stable)))} "
        f"canary={_fmt(float(np.median(canary)))}"
    )
    return MetricOutcome(name, verdict, spec.weight, spec.critical, line)


def _outcome(results: Sequence[MetricOutcome], config: JudgeConfig) -> RunResult:
    """The run's verdict from its metrics (the judge's rules, over every method)."""
    results = tuple(results)
    data = [r for r in results if r.verdict not in _NO_DATA]
    data_w = sum(r.weight for r in data)
    total_w = sum(r.weight for r in results)
    score = (
        100.0 * sum(r.weight * _CREDIT.get(r.verdict, 0.0) for r in data) / data_w
        if data_w
        else 0.0
    )
    if any(r.critical and r.failed for r in results):
        return RunResult(Verdict.FAILED, 0.0, False, results, ("CriticalMetricFailed",))
    regressed = sum(r.weight for r in data if r.failed)
    if data_w and 100.0 * (1.0 - regressed / data_w) < config.marginal_score:
        return RunResult(Verdict.FAILED, score, False, results, ("ScoreBelowMarginal",))
    reasons = []
    if any(r.critical and r.verdict in _NO_DATA for r in results):
        reasons.append("CriticalMetricNoData")
    if total_w and data_w < 0.5 * total_w:
        reasons.append("MostlyNoData")
    if any(r.verdict is MetricVerdict.UNDERPOWERED for r in results):
        reasons.append("MetricUnderpowered")
    if reasons:
        return RunResult(Verdict.INCONCLUSIVE, score, True, results, tuple(reasons))
    if score >= config.pass_score:
        return RunResult(Verdict.SUCCESSFUL, score, False, results, ("ScoreAbovePass",))
    return RunResult(Verdict.INCONCLUSIVE, score, False, results, ("ScoreMarginal",))


def judge_run(
    analysis: AnalysisSpec,
    samples: Mapping[str, tuple[Series, Series]],
    *,
    look: int,
    looks: int,
) -> RunResult:
    """Judge one look of a run: `samples[name] = (stable, canary)` for each metric (a metric
    without samples has no data)."""
    configs, config = judge_params(analysis, looks=looks)
    outcomes = []
    empty = np.array([], dtype=np.float64)
    for spec, metric in zip(analysis.metrics, configs, strict=True):
        stable, canary = samples.get(spec.name, (empty, empty))
        if spec.method is AnalysisMethod.MANN_WHITNEY:
            outcomes.append(_judge_mann_whitney(stable, canary, metric, config, look))
        elif spec.method is AnalysisMethod.THRESHOLD:
            outcomes.append(_judge_threshold(spec, canary, metric))
        else:
            outcomes.append(_judge_detector(spec, stable, canary, metric))
    return _outcome(outcomes, config)


async def _series(
    provider: MetricsProvider, query: str, *, start: float, end: float, step: float
) -> Series:
    found = await _samples(provider, query, start=start, end=end, step=step)
    if found is None:
        return np.array([], dtype=np.float64)
    return np.asarray(found.values, dtype=np.float64)


async def _samples(
    provider: MetricsProvider, query: str, *, start: float, end: float, step: float
) -> Samples | None:
    try:
        return await provider.query_range(query, start=start, end=end, step=step)
    except MetricsEmptyError:
        return None


async def _ratio(
    provider: MetricsProvider,
    query: str,
    denominator: str,
    *,
    start: float,
    end: float,
    step: float,
) -> Series:
    """numerator / denominator per aligned point of the denominator: a point the numerator
    lacks counted nothing (0, e.g. no 5xx in that step); a zero denominator has no ratio (NaN,
    dropped)."""
    below = await _samples(provider, denominator, start=start, end=end, step=step)
    if below is None:
        return np.array([], dtype=np.float64)
    above = await _samples(provider, query, start=start, end=end, step=step)
    counted = dict(zip(above.timestamps, above.values, strict=True)) if above else {}
    num = np.array([counted.get(t, 0.0) for t in below.timestamps], dtype=np.float64)
    den = np.asarray(below.values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
    return np.asarray(ratio[np.isfinite(ratio)], dtype=np.float64)


async def collect(
    analysis: AnalysisSpec,
    source: Callable[[AnalysisMetric], MetricsProvider],
    *,
    stable: str,
    canary: str,
    start: dt.datetime,
    end: dt.datetime,
    step: float,
) -> dict[str, tuple[Series, Series]]:
    """Each metric's series for both revisions over [start, end] (`{{revision}}` replaced;
    query / denominator per point when the metric has a denominator); an empty answer is no
    data, other failures raise (TransientError: try again later)."""
    begin, finish = start.timestamp(), end.timestamp()
    if finish - begin < step:
        begin = finish - step
    out: dict[str, tuple[Series, Series]] = {}
    for metric in analysis.metrics:
        provider = source(metric)
        pair = []
        for revision in (stable, canary):
            query = metric.query.replace(REVISION_PLACEHOLDER, revision)
            if metric.denominator:
                below = metric.denominator.replace(REVISION_PLACEHOLDER, revision)
                series = await _ratio(provider, query, below, start=begin, end=finish, step=step)
            else:
                series = await _series(provider, query, start=begin, end=finish, step=step)
            pair.append(series)
        out[metric.name] = (pair[0], pair[1])
    return out
