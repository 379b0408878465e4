"""The canary judge: clear regressions fail, identical versions pass, thin data is inconclusive."""

from __future__ import annotations

import numpy as np
import pytest

from intelligence.canary import (
    JudgeConfig,
    MetricConfig,
    MetricVerdict,
    Outcome,
    hodges_lehmann,
    judge,
    judge_metric,
)

LATENCY = MetricConfig("latency_p95", bad_direction="increase", tolerance=0.1)
ERRORS = MetricConfig(
    "error_rate", bad_direction="increase", critical=True, absolute_tolerance=0.005
)
THROUGHPUT = MetricConfig("throughput", bad_direction="decrease", tolerance=0.1)


def lognormal(seed: int, n: int = 60, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).lognormal(np.log(200.0), 0.2, n)


def test_clear_latency_regression_fails() -> None:
    result = judge({"latency_p95": (lognormal(1), lognormal(2, scale=1.5))}, [LATENCY])
    assert result.outcome == Outcome.FAILED
    m = result.metric("latency_p95")
    assert m.verdict == MetricVerdict.HIGH
    assert m.p_value < 1e-6
    assert 0.35 < m.relative_effect < 0.65
    assert m.effect_low < m.effect < m.effect_high


def test_identical_distributions_succeed() -> None:
    same = lognormal(3)
    assert judge({"latency_p95": (same, same.copy())}, [LATENCY]).outcome == Outcome.SUCCESSFUL
    independent = judge({"latency_p95": (lognormal(4), lognormal(5))}, [LATENCY])
    assert independent.outcome == Outcome.SUCCESSFUL
    assert independent.score == 100.0


def test_few_samples_are_inconclusive_and_say_so() -> None:
    result = judge({"latency_p95": (lognormal(1, n=4), lognormal(2, n=4, scale=3.0))}, [LATENCY])
    assert result.outcome == Outcome.INCONCLUSIVE
    m = result.metric("latency_p95")
    assert m.verdict == MetricVerdict.NODATA
    assert "FewSamples" in m.reasons


def test_improvement_in_a_bad_is_up_metric_passes() -> None:
    result = judge({"latency_p95": (lognormal(1), lognormal(2, scale=0.5))}, [LATENCY])
    assert result.outcome == Outcome.SUCCESSFUL


def test_decrease_bad_metric_fails_low() -> None:
    m = judge_metric(lognormal(1), lognormal(2, scale=0.6), THROUGHPUT)
    assert m.verdict == MetricVerdict.LOW


def test_significant_but_tolerated_shift_passes() -> None:
    m = judge_metric(lognormal(1, n=2000), lognormal(2, n=2000, scale=1.03), LATENCY)
    assert m.p_value < 0.05  # detectable, yet smaller than the 10% tolerance
    assert m.verdict == MetricVerdict.PASS


def test_zero_error_baseline_uses_absolute_effect() -> None:
    stable = np.zeros(30)
    canary = np.zeros(30)
    canary[::2] = 0.05  # half the minutes see 5% errors
    m = judge_metric(stable, canary, ERRORS)
    assert "ZeroBaseline" in m.reasons
    assert m.verdict == MetricVerdict.HIGH
    assert m.effect == pytest.approx(0.025)
    ok = judge_metric(np.zeros(30), np.zeros(30), ERRORS)
    assert "ZeroBaseline" in ok.reasons
    assert ok.verdict == MetricVerdict.PASS
    assert ok.p_value == 1.0


def test_zero_baseline_with_a_stray_error_within_tolerance_passes() -> None:
    canary = np.zeros(30)
    canary[7] = 0.01
    assert judge_metric(np.zeros(30), canary, ERRORS).verdict == MetricVerdict.PASS


def test_nans_are_dropped_and_named() -> None:
    stable, canary = lognormal(1), lognormal(2)
    canary[::10] = np.nan
    m = judge_metric(stable, canary, LATENCY)
    assert m.nan_dropped == 6
    assert "NaNsDropped" in m.reasons
    assert m.verdict == MetricVerdict.PASS
    assert m.n_canary == 54


def test_mostly_nan_metric_has_no_data() -> None:
    canary = np.full(60, np.nan)
    canary[:5] = 200.0
    result = judge({"latency_p95": (lognormal(1), canary)}, [LATENCY])
    m = result.metric("latency_p95")
    assert m.verdict == MetricVerdict.NODATA
    assert "TooManyNaNs" in m.reasons
    assert result.outcome == Outcome.INCONCLUSIVE


def test_critical_metric_fails_the_run_alone() -> None:
    metrics = [LATENCY, ERRORS, THROUGHPUT, MetricConfig("cpu", weight=5.0)]
    errors_stable = np.full(40, 0.01)
    errors_canary = np.full(40, 0.05)
    samples = {
        "latency_p95": (lognormal(1), lognormal(2)),
        "error_rate": (errors_stable, errors_canary),
        "throughput": (lognormal(3), lognormal(4)),
        "cpu": (lognormal(5), lognormal(6)),
    }
    result = judge(samples, metrics)
    assert result.outcome == Outcome.FAILED
    assert "CriticalMetricFailed" in result.reasons
    assert result.metric("error_rate").verdict == MetricVerdict.HIGH


def test_weighted_score_between_levels_is_inconclusive() -> None:
    metrics = [MetricConfig(f"m{i}") for i in range(10)]
    samples = {f"m{i}": (lognormal(i), lognormal(100 + i)) for i in range(10)}
    samples["m0"] = (lognormal(0), lognormal(100, scale=2.0))  # 1 of 10 fails: score 90
    result = judge(samples, metrics)
    assert result.score == pytest.approx(90.0)
    assert result.outcome == Outcome.INCONCLUSIVE


def test_missing_metric_is_no_data() -> None:
    result = judge({}, [LATENCY])
    assert result.outcome == Outcome.INCONCLUSIVE
    assert result.metric("latency_p95").verdict == MetricVerdict.NODATA


def test_anomalous_canary_series_is_marginal_not_failed() -> None:
    stable = lognormal(1)
    canary = lognormal(2)
    canary[-25:] *= 1.6  # a late burst: the medians barely move
    cfg = JudgeConfig(anomalous_fraction=0.2)
    m = judge_metric(stable, canary, LATENCY, config=cfg)
    assert m.anomalous_points > 0
    assert m.verdict in (MetricVerdict.MARGINAL, MetricVerdict.HIGH)
    quiet = judge_metric(stable, canary, LATENCY, config=JudgeConfig(detectors=False))
    assert quiet.anomalous_points == 0


def test_hodges_lehmann_recovers_a_known_shift() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(10.0, 1.0, 300)
    y = rng.normal(12.0, 1.0, 300)
    est, low, high = hodges_lehmann(x, y)
    assert low < 2.0 < high
    assert est == pytest.approx(2.0, abs=0.2)
    assert high - low < 0.5


ERROR_COUNTS = MetricConfig(
    "error_rate",
    kind="proportion",
    critical=True,
    tolerance=0.2,
    absolute_tolerance=0.01,
)


def test_proportion_counts_catch_a_rise_through_empty_buckets() -> None:
    # 20 buckets, half of them without any request on either side (a silent stretch):
    # empty buckets carry no information, they are not missing data.
    trials = np.array([40, 0] * 10)
    stable = np.column_stack([np.zeros(20), trials])
    canary = np.column_stack([np.where(trials > 0, 8, 0), trials])  # 20% errors vs none
    m = judge_metric(stable, canary, ERROR_COUNTS)
    assert m.verdict == MetricVerdict.HIGH
    assert "ZeroBaseline" in m.reasons
    assert "TooManyNaNs" not in m.reasons
    assert m.n_canary == 400
    assert m.effect == pytest.approx(0.2)
    assert m.effect_low < 0.2 < m.effect_high
    assert m.p_value < 1e-20


def test_proportion_healthy_and_tolerated_rates_pass() -> None:
    same = judge_metric((3, 300), (4, 300), ERROR_COUNTS)
    assert same.verdict == MetricVerdict.PASS
    assert same.stable_median == pytest.approx(0.01)
    tiny = judge_metric((10, 100_000), (20, 100_000), ERROR_COUNTS)  # significant, < 1pp
    assert tiny.p_value < 0.05
    assert tiny.verdict == MetricVerdict.PASS


def test_proportion_few_trials_and_bad_rows() -> None:
    few = judge_metric((0, 5), (3, 5), ERROR_COUNTS)
    assert few.verdict == MetricVerdict.NODATA
    assert "FewSamples" in few.reasons
    rows = np.array([[1.0, 50.0], [np.nan, 50.0], [0.0, 50.0], [2.0, 50.0]])
    m = judge_metric(rows, rows, ERROR_COUNTS)
    assert m.nan_dropped == 2
    assert "NaNsDropped" in m.reasons
    with pytest.raises(ValueError, match="events, trials"):
        judge_metric(np.ones((3, 3)), np.ones((3, 3)), ERROR_COUNTS)


def test_proportion_fisher_mid_p_matches_scipy() -> None:
    from scipy import stats

    m = judge_metric((1, 200), (9, 150), ERROR_COUNTS)
    dist = stats.hypergeom(350, 10, 150)
    assert m.p_value == pytest.approx(dist.sf(9) + 0.5 * dist.pmf(9), rel=1e-9)


def test_mann_whitney_matches_scipy_asymptotic() -> None:
    from scipy import stats

    from intelligence.canary import mann_whitney_p

    rng = np.random.default_rng(4)
    s = np.round(rng.lognormal(0.0, 0.5, 80), 1)  # ties
    c = np.round(rng.lognormal(0.2, 0.5, 70), 1)
    for alt in ("greater", "less", "two-sided"):
        want = stats.mannwhitneyu(c, s, alternative=alt, method="asymptotic").pvalue
        assert mann_whitney_p(s, c, alternative=alt) == pytest.approx(want, rel=1e-9)


def test_per_request_samples_are_not_watched_as_a_series() -> None:
    rng = np.random.default_rng(6)
    per_request = MetricConfig("latency", series=False)
    s = rng.lognormal(0.0, 0.8, 500)  # a wide request mix
    c = rng.lognormal(0.0, 0.8, 500)
    m = judge_metric(s, c, per_request)
    assert m.verdict == MetricVerdict.PASS
    assert m.anomalous_points == 0
    slow = judge_metric(s, 1.25 * rng.lognormal(0.0, 0.8, 500), per_request)
    assert slow.verdict == MetricVerdict.HIGH
