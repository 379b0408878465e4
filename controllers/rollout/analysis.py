"""Analysis of a canary: the API's analysis config mapped onto `intelligence.canary`, one run
judged from samples (pure), and the samples read from a metrics provider (I/O).

`judge_params` is the one mapping of `spec.analysis` onto the judge's `MetricConfig` and
`JudgeConfig`. Each metric is judged by its `method`: `mannWhitney` by the canary judge
(`judge_metric`: Mann-Whitney + Hodges-Lehmann, tail test, power guard with the minimum
detectable effect); `threshold` on the canary's median; `zscore`, `iqr`, `isolationForest` and
`trend` (CUSUM) by the `intelligence.anomaly` detector primed on the stable series and run over
the canary's; `proportion` by the canary judge's binomial test (`judge_metric` with
`MetricKind.PROPORTION`: Fisher mid-p on the pooled (events, trials) counts, the difference
of the rates, the power guard on the trials). The run's outcome follows the judge's rules: a
critical metric that regressed fails the run; a weighted score below `marginalScore` fails
it; missing or underpowered data makes it Inconclusive with `needs_data` (the rollout then
extends the analysis and never calls it Successful); at or above `successScore` it is
Successful.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from apis.v1alpha1.rollout import (
    AnalysisMethod,
    AnalysisMetric,
    AnalysisSpec,
    MetricSource,
    Verdict,
)
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
from intelligence.canary import (
    Direction,
    JudgeConfig,
    MetricConfig,
    MetricKind,
    MetricResult,
    MetricVerdict,
    judge_metric,
)

__all__ = [
    "REVISION_PLACEHOLDER",
    "STEP_PLACEHOLDER",
    "MetricOutcome",
    "RunResult",
    "collect",
    "judge_params",
    "judge_run",
    "prometheus_duration",
    "render_query",
    "window_overlap",
]

REVISION_PLACEHOLDER = "{{revision}}"
STEP_PLACEHOLDER = "{{step}}"
ANOMALOUS_FRACTION = 0.3
"""A detector method fails the canary when more than this share of its points is CRITICAL."""

_NO_DATA = (MetricVerdict.NODATA, MetricVerdict.UNDERPOWERED)
_CREDIT = {MetricVerdict.PASS: 1.0, MetricVerdict.MARGINAL: 0.5}
_ANOMALY_DIRECTION = {"increase": "up", "decrease": "down", "either": "both"}

Series = NDArray[np.float64]


def _empty() -> Series:
    """A series without samples."""
    return np.array([], dtype=np.float64)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# a range selector or a subquery's range: `[5m]`, `[1h30m]`, `[5m:30s]`, `[10m:]`
_RANGE = re.compile(r"\[\s*((?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+)\s*(?::[^\]]*)?\]")


def window_overlap(query: str, *, step: float) -> float:
    """Points per independent sample of a PromQL series read at `step` seconds: its longest
    range (`rate(x[5m])`, a subquery's `[5m:1m]`) over the step, at least 1. A rate over 5 m
    read every minute shares four fifths of its requests with the next point; counted as
    independent, such points make a small, steady difference look significant (the judge
    then counts `n / overlap` samples)."""
    longest = 0.0
    for match in _RANGE.finditer(query):
        seconds = sum(float(v) * _UNIT_SECONDS[u] for v, u in _DURATION.findall(match.group(1)))
        longest = max(longest, seconds)
    return max(1.0, longest / step) if step > 0 else 1.0


def _overlap(metric: AnalysisMetric, step: float | None) -> float:
    """The metric's `pointsPerSample` when set; else the overlap of a Prometheus metric's
    series at `step` (its query and denominator, each rendered with the step), 1 for Cloud
    Monitoring (aligned per step) or an unknown step."""
    if metric.points_per_sample is not None:
        return metric.points_per_sample
    if step is None or metric.source is not MetricSource.PROMETHEUS:
        return 1.0
    queries = [metric.query] + ([metric.denominator] if metric.denominator else [])
    return max(window_overlap(render_query(q, revision="r", step=step), step=step) for q in queries)


def judge_params(
    analysis: AnalysisSpec, *, looks: int, step: float | None = None
) -> tuple[list[MetricConfig], JudgeConfig]:
    """`spec.analysis` as the judge's configuration: one `MetricConfig` per metric (in
    order) and the run's `JudgeConfig` planned over `looks` intervals. With the query `step`
    a continuous Prometheus metric's points are counted by their overlap (`window_overlap`)."""
    if looks < 1:
        raise ValueError(f"looks must be at least 1, got {looks}")
    metrics = [
        MetricConfig(
            name=m.name,
            bad_direction=Direction(m.direction),
            kind=MetricKind.PROPORTION if _proportion(m) else MetricKind.CONTINUOUS,
            weight=m.weight,
            critical=m.critical,
            tolerance=m.tolerance_percent / 100.0,
            absolute_tolerance=m.absolute_tolerance,
            min_samples=analysis.minimum_samples,
            series=not _proportion(m),
            detectable=m.tolerance_percent / 100.0 if m.tolerance_percent > 0 else None,
            detectable_absolute=m.minimum_detectable,
            overlap=1.0 if _proportion(m) else _overlap(m, step),
            paired=m.paired,
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


def _proportion(metric: AnalysisMetric) -> bool:
    return metric.method is AnalysisMethod.PROPORTION


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def _judged(r: MetricResult, line: str) -> MetricOutcome:
    """The judge's result as the run needs it, its reasons appended to the evidence line."""
    if r.reasons:
        line += f" [{','.join(r.reasons)}]"
    return MetricOutcome(r.name, r.verdict, r.weight, r.critical, line)


def _judge_mann_whitney(
    stable: Series, canary: Series, metric: MetricConfig, config: JudgeConfig, look: int
) -> MetricOutcome:
    r = judge_metric(stable, canary, metric, config=config, look=look)
    rel = "" if math.isnan(r.relative_effect) else f" ({r.relative_effect:+.1%})"
    overlap = f" overlap={_fmt(metric.overlap)}" if metric.overlap > 1.0 else ""
    test = "wilcoxon (paired steps)" if metric.paired else "mannWhitney"
    return _judged(
        r,
        f"{r.name}: {r.verdict.value} {test} p={_fmt(r.p_value)} alpha={_fmt(r.alpha)} "
        f"effect={_fmt(r.effect)}{rel} MDE={_fmt(r.mde)} stable={_fmt(r.stable_median)} "
        f"canary={_fmt(r.canary_median)} n={r.n_stable}/{r.n_canary}{overlap}",
    )


def _judge_proportion(
    stable: Series, canary: Series, metric: MetricConfig, config: JudgeConfig, look: int
) -> MetricOutcome:
    """Fisher's test on the pooled (events, trials) rows; rates, their difference, the MDE."""
    r = judge_metric(_rows(stable), _rows(canary), metric, config=config, look=look)
    return _judged(
        r,
        f"{r.name}: {r.verdict.value} proportion (Fisher) stable={_fmt(r.stable_median)} "
        f"canary={_fmt(r.canary_median)} effect={_fmt(r.effect)} p={_fmt(r.p_value)} "
        f"alpha={_fmt(r.alpha)} MDE={_fmt(r.mde)} n={r.n_stable}/{r.n_canary} trials",
    )


def _rows(values: Series) -> Series:
    """(events, trials) rows; an empty sample as a (0, 2) array."""
    return values.reshape(-1, 2) if values.size else np.zeros((0, 2), dtype=np.float64)


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
    step: float | None = None,
) -> RunResult:
    """Judge one look of a run: `samples[name] = (stable, canary)` for each metric (a metric
    without samples has no data; a proportion metric's are (events, trials) rows), read at
    the query `step` (seconds; None: every point counts as independent)."""
    configs, config = judge_params(analysis, looks=looks, step=step)
    outcomes = []
    empty = _empty()
    for spec, metric in zip(analysis.metrics, configs, strict=True):
        stable, canary = samples.get(spec.name, (empty, empty))
        if spec.method is AnalysisMethod.MANN_WHITNEY:
            outcomes.append(_judge_mann_whitney(stable, canary, metric, config, look))
        elif spec.method is AnalysisMethod.PROPORTION:
            outcomes.append(_judge_proportion(stable, canary, metric, config, look))
        elif spec.method is AnalysisMethod.THRESHOLD:
            outcomes.append(_judge_threshold(spec, canary, metric))
        else:
            outcomes.append(_judge_detector(spec, stable, canary, metric))
    return _outcome(outcomes, config)


async def _samples(
    provider: MetricsProvider, query: str, *, start: float, end: float, step: float
) -> Samples | None:
    try:
        return await provider.query_range(query, start=start, end=end, step=step)
    except MetricsEmptyError:
        return None


async def _aligned(
    provider: MetricsProvider,
    query: str,
    denominator: str,
    *,
    start: float,
    end: float,
    step: float,
) -> tuple[Series, Series, Series] | None:
    """(steps, numerator, denominator) on the denominator's steps: a step the numerator lacks
    counted nothing (0, e.g. no 5xx in that step); None when the denominator has no series."""
    below = await _samples(provider, denominator, start=start, end=end, step=step)
    if below is None:
        return None
    above = await _samples(provider, query, start=start, end=end, step=step)
    counted = dict(zip(above.timestamps, above.values, strict=True)) if above else {}
    num = np.array([counted.get(t, 0.0) for t in below.timestamps], dtype=np.float64)
    steps = np.asarray(below.timestamps, dtype=np.float64)
    return steps, num, np.asarray(below.values, dtype=np.float64)


async def _timed_ratio(
    provider: MetricsProvider, query: str, denominator: str, **window: float
) -> tuple[Series, Series]:
    """(steps, numerator / denominator) on the denominator's steps; a zero denominator has no
    ratio (NaN)."""
    found = await _aligned(provider, query, denominator, **window)
    if found is None:
        return _empty(), _empty()
    steps, num, den = found
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
    return steps, np.asarray(ratio, dtype=np.float64)


async def _counts(
    provider: MetricsProvider, query: str, denominator: str, **window: float
) -> Series:
    """(events, trials) rows per step of the denominator (a step with 0 trials is kept: it
    weighs nothing). Events are capped at the trials: `increase()` extrapolates numerator and
    denominator separately, so a step where every request failed can read a hair above."""
    found = await _aligned(provider, query, denominator, **window)
    if found is None:
        return np.zeros((0, 2), dtype=np.float64)
    _, num, den = found
    trials = np.clip(den, 0.0, None)
    return np.column_stack([np.clip(num, 0.0, trials), trials])


def prometheus_duration(seconds: float) -> str:
    """`seconds` as a Prometheus duration: `5s`, or `1500ms` when not whole seconds."""
    if seconds <= 0:
        raise ValueError(f"step: expected a positive number of seconds, got {seconds}")
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def render_query(query: str, *, revision: str, step: float) -> str:
    """`query` with `{{revision}}` and `{{step}}` (the query step as a duration) replaced."""
    rendered = query.replace(REVISION_PLACEHOLDER, revision)
    return rendered.replace(STEP_PLACEHOLDER, prometheus_duration(step))


async def _metric_series(
    metric: AnalysisMetric, provider: MetricsProvider, revision: str, **window: float
) -> Series:
    """One revision's samples of `metric`: (events, trials) rows for a proportion, else its
    continuous values (`_timed_series`; a step without a value, a zero denominator, left out)."""
    if _proportion(metric) and metric.denominator is not None:
        step = window["step"]
        query = render_query(metric.query, revision=revision, step=step)
        below = render_query(metric.denominator, revision=revision, step=step)
        return await _counts(provider, query, below, **window)
    _, values = await _timed_series(metric, provider, revision, **window)
    return np.asarray(values[np.isfinite(values)], dtype=np.float64)


async def _timed_series(
    metric: AnalysisMetric, provider: MetricsProvider, revision: str, **window: float
) -> tuple[Series, Series]:
    """One revision's (steps, values) of a continuous metric: the query's series, or the
    ratio per step of the denominator (NaN where it is 0)."""
    step = window["step"]
    query = render_query(metric.query, revision=revision, step=step)
    if metric.denominator is not None:
        below = render_query(metric.denominator, revision=revision, step=step)
        return await _timed_ratio(provider, query, below, **window)
    found = await _samples(provider, query, **window)
    if found is None:
        return _empty(), _empty()
    return (
        np.asarray(found.timestamps, dtype=np.float64),
        np.asarray(found.values, dtype=np.float64),
    )


def pair_steps(
    stable: tuple[Series, Series], canary: tuple[Series, Series]
) -> tuple[Series, Series]:
    """Both revisions' (steps, values) on the union of their steps, in time order, NaN where
    one lacks the step (a paired judge leaves such steps out)."""
    steps = np.union1d(stable[0], canary[0])
    out = []
    for at, values in (stable, canary):
        row = np.full(steps.size, np.nan)
        row[np.searchsorted(steps, at)] = values
        out.append(row)
    return out[0], out[1]


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
    """Each metric's series for both revisions over [start, end] (`{{revision}}` and
    `{{step}}` replaced; query / denominator per point when the metric has a denominator;
    (events, trials) rows per step for a proportion; a paired metric's two series on the same
    steps, NaN where one revision lacks a step); an empty answer is no data, other failures
    raise (TransientError: try again later)."""
    begin, finish = start.timestamp(), end.timestamp()
    if finish - begin < step:
        begin = finish - step
    window = {"start": begin, "end": finish, "step": step}
    out: dict[str, tuple[Series, Series]] = {}
    for metric in analysis.metrics:
        provider = source(metric)
        if metric.paired:
            revisions = (stable, canary)
            timed = [await _timed_series(metric, provider, rev, **window) for rev in revisions]
            out[metric.name] = pair_steps(timed[0], timed[1])
            continue
        pair = [await _metric_series(metric, provider, rev, **window) for rev in (stable, canary)]
        out[metric.name] = (pair[0], pair[1])
    return out
