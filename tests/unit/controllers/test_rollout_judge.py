"""The analysis config mapped onto intelligence.canary, and runs judged from samples."""

from __future__ import annotations

import numpy as np
import pytest

from apis.v1alpha1.rollout import AnalysisSpec, Verdict
from controllers.rollout.analysis import judge_params, judge_run, window_overlap
from intelligence.canary import Direction, MetricVerdict


def spec(**overrides: object) -> AnalysisSpec:
    body: dict[str, object] = {
        "interval": "30s",
        "successScore": 80,
        "marginalScore": 60,
        "minimumSamples": 10,
        "metrics": [
            {
                "name": "latency",
                "query": 'q{revision="{{revision}}"}',
                "direction": "increase",
                "tolerancePercent": 10,
                "critical": True,
                "weight": 2,
            },
            {
                "name": "errors",
                "query": "e",
                "direction": "either",
                "tolerancePercent": 0,
                "absoluteTolerance": 0.01,
                "minimumDetectable": 0.02,
            },
        ],
    }
    body.update(overrides)
    return AnalysisSpec.model_validate(body)


def test_judge_params_maps_every_field() -> None:
    metrics, config = judge_params(spec(), looks=6)
    latency, errors = metrics
    assert latency.name == "latency"
    assert latency.bad_direction is Direction.INCREASE
    assert latency.weight == 2
    assert latency.critical
    assert latency.tolerance == pytest.approx(0.10)
    assert latency.detectable == pytest.approx(0.10)
    assert latency.min_samples == 10
    assert latency.series
    assert errors.bad_direction is Direction.EITHER
    assert not errors.critical
    assert errors.tolerance == 0
    assert errors.detectable is None
    assert errors.absolute_tolerance == 0.01
    assert errors.detectable_absolute == 0.02
    assert config.pass_score == 80
    assert config.marginal_score == 60
    assert config.looks == 6


def test_judge_params_refuses_zero_looks() -> None:
    with pytest.raises(ValueError, match="looks must be at least 1"):
        judge_params(spec(), looks=0)


def latency_only() -> AnalysisSpec:
    return spec(metrics=[{"name": "latency", "query": "q", "tolerancePercent": 10}])


def test_healthy_canary_is_successful_and_slow_one_fails_with_evidence() -> None:
    rng = np.random.default_rng(1)
    stable = rng.lognormal(np.log(0.1), 0.2, 400)
    healthy = rng.lognormal(np.log(0.1), 0.2, 400)
    slow = rng.lognormal(np.log(0.15), 0.2, 400)
    ok = judge_run(latency_only(), {"latency": (stable, healthy)}, look=1, looks=1)
    assert ok.verdict is Verdict.SUCCESSFUL
    assert not ok.needs_data
    bad = judge_run(latency_only(), {"latency": (stable, slow)}, look=1, looks=1)
    assert bad.verdict is Verdict.FAILED
    (line,) = bad.failures
    assert line.startswith("latency: High")
    assert "p=" in line
    assert "MDE=" in line
    assert "effect=" in line


def test_too_few_samples_needs_data_and_is_never_successful() -> None:
    rng = np.random.default_rng(2)
    stable, canary = rng.lognormal(0, 0.2, 5), rng.lognormal(0, 0.2, 5)
    run = judge_run(latency_only(), {"latency": (stable, canary)}, look=1, looks=1)
    assert run.verdict is Verdict.INCONCLUSIVE
    assert run.needs_data


def test_underpowered_metric_is_inconclusive_needing_data() -> None:
    # enough samples to test, too few (and too noisy) to see a 1 % regression
    rng = np.random.default_rng(3)
    noisy = spec(metrics=[{"name": "latency", "query": "q", "tolerancePercent": 1}])
    stable, canary = rng.lognormal(0, 1.0, 30), rng.lognormal(0, 1.0, 30)
    run = judge_run(noisy, {"latency": (stable, canary)}, look=1, looks=1)
    assert run.metrics[0].verdict is MetricVerdict.UNDERPOWERED
    assert run.verdict is Verdict.INCONCLUSIVE
    assert run.needs_data


def test_threshold_method_judges_the_canary_median() -> None:
    threshold = spec(
        metrics=[{"name": "p95", "query": "q", "method": "threshold", "maxValue": 0.5}]
    )
    stable = np.full(20, 0.2)
    under = judge_run(threshold, {"p95": (stable, np.full(20, 0.3))}, look=1, looks=1)
    over = judge_run(threshold, {"p95": (stable, np.full(20, 0.7))}, look=1, looks=1)
    assert under.verdict is Verdict.SUCCESSFUL
    assert over.verdict is Verdict.FAILED
    assert "threshold canary=0.7" in over.failures[0]


@pytest.mark.parametrize("method", ["zscore", "iqr", "trend", "isolationForest"])
def test_detector_methods_fail_a_shifted_canary_and_pass_a_steady_one(method: str) -> None:
    rng = np.random.default_rng(4)
    detector = spec(metrics=[{"name": "lat", "query": "q", "method": method}])
    stable = rng.normal(100, 2, 80)
    steady = rng.normal(100, 2, 40)
    shifted = rng.normal(160, 2, 40)
    ok = judge_run(detector, {"lat": (stable, steady)}, look=1, looks=1)
    bad = judge_run(detector, {"lat": (stable, shifted)}, look=1, looks=1)
    assert ok.verdict is Verdict.SUCCESSFUL, ok.evidence
    assert bad.verdict is Verdict.FAILED, bad.evidence
    assert f"{method} anomalous=" in bad.failures[0]


def test_missing_metric_is_no_data() -> None:
    run = judge_run(latency_only(), {}, look=1, looks=1)
    assert run.verdict is Verdict.INCONCLUSIVE
    assert run.needs_data


@pytest.mark.parametrize(
    ("query", "step", "overlap"),
    [
        ('sum(rate(d_sum{revision="{{revision}}"}[5m]))', 60, 5.0),
        ("sum(increase(c[{{step}}]))", 5, 1.0),  # one step: the windows tile the time
        ("sum(c) - (sum(c offset {{step}}) or vector(0))", 1, 1.0),  # no window at all
        ("rate(a[5s]) / rate(b[10s])", 1, 10.0),  # the longest window
        ("max_over_time(rate(x[1m])[1h30m:1m])", 60, 90.0),  # a subquery's range
        ("rate(x[500ms])", 1, 1.0),  # shorter than the step: never below 1
        ('rate(x{path=~"[a-z]+"}[2m])', 30, 4.0),  # a regex class is not a range
    ],
)
def test_window_overlap_reads_the_longest_range_over_the_step(
    query: str, step: float, overlap: float
) -> None:
    metric = spec(metrics=[{"name": "m", "query": query}]).metrics[0]
    (config,), _ = judge_params(
        spec(metrics=[metric.model_dump(by_alias=True)]), looks=1, step=step
    )
    assert config.overlap == pytest.approx(overlap)
    rendered = query.replace("{{step}}", f"{step}s").replace("{{revision}}", "r")
    assert window_overlap(rendered, step=step) == pytest.approx(overlap)


def test_overlap_applies_to_continuous_prometheus_metrics_only() -> None:
    metrics = [
        {"name": "lat", "query": "rate(x[1m])"},
        {"name": "err", "method": "proportion", "query": "increase(e[1m])",
         "denominator": "increase(a[1m])"},
        {"name": "cm", "source": "cloudMonitoring", "query": 'metric.type="x" [1m]'},
    ]  # fmt: skip
    lat, err, cm = judge_params(spec(metrics=metrics), looks=1, step=5)[0]
    assert lat.overlap == 12.0
    assert err.overlap == 1.0  # counted per step: the proportion's own business
    assert cm.overlap == 1.0  # Cloud Monitoring aligns one point per step
    assert judge_params(spec(metrics=metrics), looks=1)[0][0].overlap == 1.0  # no step known


def test_points_per_sample_overrides_the_inferred_overlap_and_is_for_mann_whitney_only() -> None:
    metrics = [
        {"name": "gauge", "query": "x", "pointsPerSample": 3},  # no range: inferred 1
        {"name": "lat", "query": "rate(x[1m])", "pointsPerSample": 2},  # inferred 12
        {"name": "cm", "source": "cloudMonitoring", "query": 'metric.type="x"',
         "pointsPerSample": 4},
    ]  # fmt: skip
    for step in (5, None):
        gauge, lat, cm = judge_params(spec(metrics=metrics), looks=1, step=step)[0]
        assert (gauge.overlap, lat.overlap, cm.overlap) == (3.0, 2.0, 4.0)
    for bad, message in (
        ({"method": "threshold", "maxValue": 1}, "pointsPerSample: for method mannWhitney only"),
        ({"pointsPerSample": 0.5}, "pointsPerSample"),
    ):
        metric = {"name": "m", "query": "q", "pointsPerSample": 2, **bad}
        with pytest.raises(ValueError, match=message):
            spec(metrics=[metric])


def test_a_paired_metric_sees_a_rise_the_loads_swings_hide_from_two_samples() -> None:
    # latency follows a load that swings ninefold over the run; the canary is 10 % slower at
    # every step. As two samples the swings leave it too noisy to judge (more data, 20 of 20
    # seeds when this was written); step by step they cancel and it fails (20 of 20).
    rng = np.random.default_rng(6)
    load = 1.0 + 0.8 * np.sin(np.arange(60) / 6.0)
    stable = 0.1 * load * rng.lognormal(0.0, 0.05, 60)
    canary = 0.11 * load * rng.lognormal(0.0, 0.05, 60)
    stable[7] = canary[50] = np.nan  # a step one revision lacks is left out
    for paired, verdict, test in ((False, Verdict.INCONCLUSIVE, "mannWhitney"),
                                  (True, Verdict.FAILED, "wilcoxon (paired steps)")):  # fmt: skip
        metrics = [{"name": "latency", "query": "q", "tolerancePercent": 5, "critical": True,
                    "paired": paired}]  # fmt: skip
        run = judge_run(spec(metrics=metrics), {"latency": (stable, canary)}, look=1, looks=1)
        assert run.verdict is verdict, run.evidence
        assert run.needs_data is not paired
        assert f" {test} p=" in run.evidence[0]
    assert "n=58/58" in run.evidence[0]
    with pytest.raises(ValueError, match=r"paired: for method mannWhitney only"):
        spec(metrics=[{"name": "m", "query": "q", "method": "iqr", "paired": True}])


def test_a_judged_series_of_overlapping_windows_says_so_and_asks_for_more_data() -> None:
    # 60 points of 5-step windows with an 8 % rise: as 60 independent points it fails; as the
    # 12 independent windows it holds, it cannot be told from noise yet (more data, not a verdict)
    rng = np.random.default_rng(4)
    window = np.ones(5) / 5
    stable = np.convolve(rng.lognormal(np.log(0.1), 0.3, 64), window, "valid")
    canary = np.convolve(1.08 * rng.lognormal(np.log(0.1), 0.3, 64), window, "valid")
    analysis = spec(metrics=[{"name": "latency", "query": "rate(q[5s])", "tolerancePercent": 5,
                              "critical": True}])  # fmt: skip
    plain = judge_run(analysis, {"latency": (stable, canary)}, look=1, looks=1)
    counted = judge_run(analysis, {"latency": (stable, canary)}, look=1, looks=1, step=1)
    assert plain.verdict is Verdict.FAILED
    assert "overlap" not in plain.evidence[0]
    assert counted.verdict is Verdict.INCONCLUSIVE
    assert counted.needs_data
    assert "n=60/60 overlap=5 [" in counted.evidence[0]
    assert "InsufficientPower" in counted.evidence[0]
