"""Error metrics judged as proportions on counts (method `proportion`): the API's rules for
`denominator`, `{{step}}` in queries, `collect`'s (events, trials) rows, and the judge's
verdicts: a canary that served ~60 requests without an error is Underpowered (a ratio series
of the same traffic is all zeros on both sides and passes), a +5 pp canary with enough
requests fails."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from apis.v1alpha1.rollout import AnalysisMetric, AnalysisSpec, Verdict
from controllers.providers.metrics import MetricsEmptyError, Samples
from controllers.rollout.analysis import (
    collect,
    judge_params,
    judge_run,
    prometheus_duration,
    render_query,
)
from intelligence.canary import MetricKind, MetricVerdict

pytestmark = pytest.mark.unit

ERRORS = 'sum(increase(req_total{revision="{{revision}}",status=~"5.."}[{{step}}]))'
ALL = 'sum(increase(req_total{revision="{{revision}}"}[{{step}}]))'
RATIO = f"({ERRORS} or vector(0)) / {ALL}"


def errors_metric(**extra: Any) -> dict[str, Any]:
    return {
        "name": "errors",
        "query": ERRORS,
        "denominator": ALL,
        "method": "proportion",
        "tolerancePercent": 0,
        "absoluteTolerance": 0.01,
        "minimumDetectable": 0.02,
        "critical": True,
        **extra,
    }


def analysis(metric: dict[str, Any]) -> AnalysisSpec:
    return AnalysisSpec.model_validate({"minimumSamples": 3, "metrics": [metric]})


def rows(events: list[int], trials: list[int]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.column_stack([events, trials]).astype(np.float64)


STEPS = 12  # 5 s steps over a minute


def test_a_canary_without_errors_at_60_requests_is_underpowered_not_passed() -> None:
    """The promoted bad canary of the benchmark: ~60 requests, no error yet. As counts the
    judge knows how little that is (MDE far above 2 pp); as a ratio series both sides read 0
    at every point: identical samples, MDE 0, a pass."""
    stable = rows([0] * STEPS, [400] * STEPS)
    canary = rows([0] * STEPS, [5] * STEPS)
    result = judge_run(analysis(errors_metric()), {"errors": (stable, canary)}, look=1, looks=4)
    (errors,) = result.metrics
    assert errors.verdict is MetricVerdict.UNDERPOWERED, errors.evidence
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.needs_data
    for token in ("proportion (Fisher)", "stable=0", "canary=0", "MDE=", "n=4800/60 trials"):
        assert token in errors.evidence, errors.evidence

    ratio = {**errors_metric(query=RATIO, method="mannWhitney"), "denominator": None}
    zeros = np.zeros(STEPS)
    as_ratio = judge_run(analysis(ratio), {"errors": (zeros, zeros)}, look=1, looks=4)
    assert as_ratio.verdict is Verdict.SUCCESSFUL, as_ratio.evidence


def judged_at(stable_rate: float, canary_rate: float, canary_trials: int) -> Any:
    """A run of 12 steps: 400 stable requests and `canary_trials` canary ones per step."""
    rng = np.random.default_rng(7)
    stable = rows(rng.binomial(400, stable_rate, STEPS).tolist(), [400] * STEPS)
    canary = rows(rng.binomial(canary_trials, canary_rate, STEPS).tolist(), [canary_trials] * STEPS)
    return judge_run(analysis(errors_metric()), {"errors": (stable, canary)}, look=1, looks=4)


def test_a_canary_five_points_worse_with_enough_requests_fails() -> None:
    result = judged_at(0.01, 0.06, 60)
    assert result.verdict is Verdict.FAILED, result.evidence
    (line,) = result.failures
    assert line.startswith("errors: High proportion (Fisher)"), line
    assert "n=4800/720 trials" in line


def test_a_healthy_canary_with_enough_requests_passes() -> None:
    result = judged_at(0.01, 0.01, 400)
    assert result.verdict is Verdict.SUCCESSFUL, result.evidence


def test_judge_params_judges_a_proportion_on_counts() -> None:
    spec = AnalysisSpec.model_validate(
        {"metrics": [errors_metric(), {"name": "latency", "query": "q"}]}
    )
    (errors, latency), _ = judge_params(spec, looks=2)
    assert errors.kind is MetricKind.PROPORTION
    assert not errors.series
    assert errors.detectable_absolute == 0.02
    assert latency.kind is MetricKind.CONTINUOUS
    assert latency.series


def test_proportion_needs_a_denominator_naming_the_field() -> None:
    body = errors_metric()
    del body["denominator"]
    with pytest.raises(ValidationError, match=r"metrics\[errors\]\.denominator: method proportion"):
        AnalysisMetric.model_validate(body)


def test_proportion_takes_no_statistic() -> None:
    body = errors_metric(source="cloudMonitoring", statistic="mean")
    with pytest.raises(ValidationError, match=r"metrics\[errors\]\.statistic: not for method"):
        AnalysisMetric.model_validate(body)


def test_a_denominator_on_prometheus_is_for_proportion_only() -> None:
    assert AnalysisMetric.model_validate(errors_metric()).denominator == ALL
    other = errors_metric(method="mannWhitney")
    with pytest.raises(ValidationError, match=r"denominator: only for source cloudMonitoring or"):
        AnalysisMetric.model_validate(other)


@pytest.mark.parametrize(
    ("seconds", "duration"), [(5, "5s"), (1.0, "1s"), (60, "60s"), (1.5, "1500ms")]
)
def test_step_is_a_prometheus_duration(seconds: float, duration: str) -> None:
    assert prometheus_duration(seconds) == duration
    assert render_query(ALL, revision="r1", step=seconds).endswith(
        f'{{revision="r1"}}[{duration}]))'
    )


def test_a_non_positive_step_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="step: expected a positive number of seconds"):
        prometheus_duration(0)


def recorded(table: Mapping[str, list[tuple[float, float]] | None], seen: list[str]) -> Any:
    """A provider answering from `table` (None: no series), keeping the queries in `seen`."""

    async def query_range(query: str, *, start: float, end: float, step: float) -> Samples:
        seen.append(query)
        if (points := table[query]) is None:
            raise MetricsEmptyError(f"{query}: no series")
        times, values = np.asarray(points, dtype=np.float64).T
        return Samples(timestamps=times.copy(), values=values.copy())

    return SimpleNamespace(query_range=query_range)


async def test_collect_gives_events_and_trials_on_the_denominators_steps() -> None:
    def q(text: str, rev: str) -> str:
        return render_query(text, revision=rev, step=5)

    table = {
        # stable: errors in steps 1 and 3 (the others counted none); step 2 had no traffic
        q(ERRORS, "stable"): [(5.0, 1.0), (15.0, 3.0)],
        q(ALL, "stable"): [(5.0, 10.0), (10.0, 0.0), (15.0, 30.0), (20.0, 20.0)],
        # canary: no 5xx series at all; increase() read a hair above its trials in step 2
        q(ERRORS, "canary"): [(10.0, 5.2)],
        q(ALL, "canary"): [(5.0, 5.0), (10.0, 5.0)],
    }
    seen: list[str] = []
    provider = recorded(table, seen)
    start = dt.datetime.fromtimestamp(0, tz=dt.UTC)
    samples = await collect(
        analysis(errors_metric()),
        lambda _: provider,
        stable="stable",
        canary="canary",
        start=start,
        end=start + dt.timedelta(seconds=20),
        step=5,
    )
    stable, canary = samples["errors"]
    assert stable.tolist() == [[1, 10], [0, 0], [3, 30], [0, 20]]
    assert canary.tolist() == [[0, 5], [5, 5]]
    assert len(seen) == 4
    assert all("[5s]" in query and "{{" not in query for query in seen)
