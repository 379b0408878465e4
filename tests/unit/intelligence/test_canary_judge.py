"""The canary judge: clear regressions fail, identical versions pass, thin data is inconclusive."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.canary import (
    Direction,
    JudgeConfig,
    MetricConfig,
    MetricKind,
    MetricVerdict,
    Outcome,
    Spending,
    hodges_lehmann,
    judge,
    judge_metric,
)

LATENCY = MetricConfig("latency_p95", bad_direction=Direction.INCREASE, tolerance=0.1)
ERRORS = MetricConfig(
    "error_rate", bad_direction=Direction.INCREASE, critical=True, absolute_tolerance=0.005
)
THROUGHPUT = MetricConfig("throughput", bad_direction=Direction.DECREASE, tolerance=0.1)


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


def test_a_zero_baseline_does_not_claim_the_power_to_see_errors() -> None:
    """Stable 0 at every point says nothing of the error ratio's noise: a canary with errors
    in some windows that the test cannot show yet is Underpowered (extend), not a pass with
    an MDE of 0; the same canary with more windows fails, one stray error still passes."""
    errors = MetricConfig(
        "errors", tolerance=0.0, absolute_tolerance=0.01, detectable_absolute=0.02
    )
    cfg = JudgeConfig(looks=4)
    rng = np.random.default_rng(20)
    canary = rng.binomial(20, 0.05, 20) / 20  # 5% errors, 20 requests per window
    early = judge_metric(np.zeros(20), canary, errors, config=cfg, look=3)
    assert early.verdict == MetricVerdict.UNDERPOWERED, early
    assert early.mde > 0.02
    later = rng.binomial(20, 0.05, 60) / 20
    assert judge_metric(np.zeros(60), later, errors, config=cfg, look=4).verdict == (
        MetricVerdict.HIGH
    )
    stray = np.zeros(30)
    stray[7] = 0.01
    clean = judge_metric(np.zeros(30), stray, errors, config=cfg, look=3)
    assert clean.verdict == MetricVerdict.PASS
    assert judge_metric(np.zeros(30), np.zeros(30), errors, config=cfg, look=3).verdict == (
        MetricVerdict.PASS
    )


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
    kind=MetricKind.PROPORTION,
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


def test_small_samples_get_the_exact_u_distribution() -> None:
    from scipy import stats

    from intelligence.canary import mann_whitney_p

    rng = np.random.default_rng(8)
    for n_s, n_c in ((7, 7), (4, 9), (12, 15)):
        s, c = rng.normal(0.0, 1.0, n_s), rng.normal(0.7, 1.0, n_c)
        for alt in ("greater", "less", "two-sided"):
            want = stats.mannwhitneyu(c, s, alternative=alt, method="exact").pvalue
            assert mann_whitney_p(np.sort(s), c, alternative=alt) == pytest.approx(want, rel=1e-9)
    # seven canary points above seven stable ones: exactly one labeling in C(14, 7) is as
    # extreme (the normal approximation says 0.0009, above a look's level of ~0.0005)
    p = mann_whitney_p(np.zeros(7), np.linspace(0.1, 0.3, 7), alternative="greater")
    assert p == pytest.approx(1 / 3432, rel=1e-12)


def test_exact_u_p_value_with_ties_is_the_permutation_share() -> None:
    from itertools import combinations

    from intelligence.canary import mann_whitney_p

    s = np.array([0.0, 0.0, 0.0, 0.1, 0.2, 0.2])  # an error ratio: many zeros
    c = np.array([0.0, 0.2, 0.3, 0.3, 0.4])
    pooled = np.concatenate([s, c])

    def u_of(idx: tuple[int, ...]) -> float:
        canary = pooled[list(idx)]
        stable = np.delete(pooled, list(idx))
        return float(sum((x > y) + 0.5 * (x == y) for x in canary for y in stable))

    observed = u_of(tuple(range(s.size, pooled.size)))
    us = [u_of(idx) for idx in combinations(range(pooled.size), c.size)]
    want = sum(u >= observed - 1e-9 for u in us) / len(us)
    assert mann_whitney_p(s, c, alternative="greater") == pytest.approx(want, rel=1e-9)


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


# --- the tail test, alpha spending over looks, and the minimum detectable effect ---------------

PER_REQUEST = MetricConfig("latency", tolerance=0.1, series=False)


def test_tail_regression_fails_through_the_tail_test() -> None:
    rng = np.random.default_rng(11)
    stable = rng.lognormal(0.0, 0.6, 3000)
    canary = rng.lognormal(0.0, 0.6, 3000)
    slow = canary > np.quantile(canary, 0.9)
    canary = np.where(slow, 1.6 * canary, canary)  # a slow path: only the slowest 10% slower
    m = judge_metric(stable, canary, PER_REQUEST)
    assert m.verdict == MetricVerdict.HIGH
    assert "TailRegression" in m.reasons
    assert m.tail_p_value < 1e-6
    assert m.relative_effect < PER_REQUEST.tolerance  # the median shift alone would pass
    assert m.tail_effect == pytest.approx(0.6, abs=0.15)  # the p95 rose by about 60%
    blind = judge_metric(stable, canary, PER_REQUEST, config=JudgeConfig(tail_weight=0.0))
    assert blind.verdict == MetricVerdict.PASS
    assert np.isnan(blind.tail_p_value)


def test_tail_test_watches_the_lower_tail_of_a_decrease_metric() -> None:
    rng = np.random.default_rng(12)
    stable = rng.lognormal(0.0, 0.5, 3000)
    canary = rng.lognormal(0.0, 0.5, 3000)
    canary = np.where(canary < np.quantile(canary, 0.1), 0.5 * canary, canary)
    m = judge_metric(stable, canary, MetricConfig("throughput", bad_direction=Direction.DECREASE))
    assert m.verdict == MetricVerdict.LOW
    assert "TailRegression" in m.reasons
    assert m.tail_effect < -0.2


def test_alpha_spending_splits_the_run_budget_over_the_looks() -> None:
    assert JudgeConfig(alpha=0.01).alpha_at(1) == 0.01  # one look: the whole budget
    for spending in (Spending.POCOCK, Spending.OBRIEN_FLEMING, Spending.UNIFORM):
        cfg = JudgeConfig(alpha=0.01, looks=3, spending=spending)
        levels = [cfg.alpha_at(k) for k in (1, 2, 3)]
        assert sum(levels) == pytest.approx(0.01)
        assert all(level > 0 for level in levels)
    pocock = JudgeConfig(alpha=0.01, looks=3, spending=Spending.POCOCK)
    obf = JudgeConfig(alpha=0.01, looks=3, spending=Spending.OBRIEN_FLEMING)
    assert pocock.alpha_at(1) > pocock.alpha_at(2) > pocock.alpha_at(3)  # front-loaded
    assert obf.alpha_at(1) < 0.001 < obf.alpha_at(3)  # kept for the end
    with pytest.raises(ValueError, match="look 4"):
        pocock.alpha_at(4)
    m = judge_metric(lognormal(1), lognormal(2), LATENCY, config=pocock, look=2)
    assert m.alpha == pytest.approx(pocock.alpha_at(2))
    assert m.evidence()["alpha"] == m.alpha


def _null_false_failures(cfg: JudgeConfig, *, per_look_level: bool, runs: int) -> float:
    """Share of healthy canaries failed at any of 3 looks on cumulative samples (fixed seed)."""
    rng = np.random.default_rng(2024)
    metric = MetricConfig("latency", tolerance=0.0, series=False)
    failed = 0
    for _ in range(runs):
        stable = rng.lognormal(0.0, 0.7, 120)
        canary = rng.lognormal(0.0, 0.7, 120)
        for k in (1, 2, 3):
            look = 1 if per_look_level else k
            if judge_metric(
                stable[: 40 * k], canary[: 40 * k], metric, config=cfg, look=look
            ).failed:
                failed += 1
                break
    return failed / runs


def test_alpha_spending_keeps_false_failures_under_alpha_on_a_null() -> None:
    alpha, runs = 0.05, 600
    spent = _null_false_failures(JudgeConfig(alpha=alpha, looks=3), per_look_level=False, runs=runs)
    naive = _null_false_failures(JudgeConfig(alpha=alpha), per_look_level=True, runs=runs)
    se = np.sqrt(alpha * (1 - alpha) / runs)
    assert spent <= alpha + se  # the whole run, all looks, at most alpha
    assert naive > alpha + 2 * se  # testing every look at alpha would not be
    assert spent < naive


def test_proportion_false_failures_stay_under_alpha_over_looks() -> None:
    rng = np.random.default_rng(7)
    cfg = JudgeConfig(alpha=0.05, looks=3)
    metric = MetricConfig("error_rate", kind=MetricKind.PROPORTION, tolerance=0.0)
    failed, runs = 0, 800
    for _ in range(runs):
        trials = rng.integers(50, 400, size=3)
        s = np.column_stack([rng.binomial(trials, 0.03), trials])
        c = np.column_stack([rng.binomial(trials, 0.03), trials])
        if any(judge_metric(s[:k], c[:k], metric, config=cfg, look=k).failed for k in (1, 2, 3)):
            failed += 1
    assert failed / runs <= 0.05 + np.sqrt(0.05 * 0.95 / runs)


def test_too_few_samples_for_the_target_effect_are_underpowered() -> None:
    target = MetricConfig("latency", tolerance=0.1, series=False, detectable=0.25)
    rng = np.random.default_rng(3)
    few = judge_metric(rng.lognormal(0.0, 0.7, 30), rng.lognormal(0.0, 0.7, 30), target)
    assert few.verdict == MetricVerdict.UNDERPOWERED
    assert "InsufficientPower" in few.reasons
    assert few.mde_relative > 0.25
    assert few.detectable == pytest.approx(0.25 * few.stable_median)
    assert few.evidence()["mde"] == few.mde
    run = judge({"latency": (rng.lognormal(0.0, 0.7, 30), rng.lognormal(0.0, 0.7, 30))}, [target])
    assert run.outcome == Outcome.INCONCLUSIVE
    assert "MetricUnderpowered" in run.reasons
    many = judge_metric(rng.lognormal(0.0, 0.7, 3000), rng.lognormal(0.0, 0.7, 3000), target)
    assert many.verdict == MetricVerdict.PASS
    assert many.mde_relative < 0.25
    # the power guard never hides a regression that was seen
    slow = judge_metric(rng.lognormal(0.0, 0.2, 30), 3.0 * rng.lognormal(0.0, 0.2, 30), target)
    assert slow.verdict == MetricVerdict.HIGH


def test_zero_error_baseline_needs_an_absolute_target() -> None:
    target = MetricConfig(
        "error_rate", kind=MetricKind.PROPORTION, absolute_tolerance=0.01, detectable_absolute=0.05
    )
    few = judge_metric((0, 40), (0, 40), target)
    assert "ZeroBaseline" in few.reasons
    assert few.verdict == MetricVerdict.UNDERPOWERED
    assert few.mde > 0.05
    assert few.mde_relative == np.inf
    enough = judge_metric((0, 3000), (1, 3000), target)
    assert enough.verdict == MetricVerdict.PASS
    assert enough.mde < 0.05


@pytest.mark.parametrize(
    ("kind", "n", "level"),
    [
        ("continuous", 60, 0.0),
        ("continuous", 600, 0.0),
        ("proportion", 300, 0.0),
        ("proportion", 2000, 0.02),
    ],
)
def test_minimum_detectable_effect_is_detected_at_about_the_power(
    kind: str, n: int, level: float
) -> None:
    rng = np.random.default_rng(5)
    cfg = JudgeConfig(alpha=0.01, power=0.9, tail_weight=0.0)
    metric = MetricConfig("m", kind=kind, tolerance=0.0, series=False)  # type: ignore[arg-type]
    hits, reps = 0, 300
    s: NDArray[np.float64] | tuple[int, int]
    c: NDArray[np.float64] | tuple[int, int]
    if kind == "continuous":
        mde = judge_metric(rng.lognormal(0, 0.7, n), rng.lognormal(0, 0.7, n), metric, config=cfg)
        for _ in range(reps):
            s, c = rng.lognormal(0, 0.7, n), (1 + mde.mde_relative) * rng.lognormal(0, 0.7, n)
            hits += judge_metric(s, c, metric, config=cfg).failed
    else:
        events = round(level * n)
        mde = judge_metric((events, n), (events, n), metric, config=cfg)
        for _ in range(reps):
            s = (rng.binomial(n, level), n)
            c = (rng.binomial(n, level + mde.mde), n)
            hits += judge_metric(s, c, metric, config=cfg).failed
    assert 0.75 <= hits / reps <= 1.0  # about 0.9: the MDE is an approximation


# --- paired (time-aligned) series ---------------------------------------------------------------

SATURATION = MetricConfig("saturation", tolerance=0.1, paired=True, series=False)


def _load_and_versions(seed: int, factor: float, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    load = rng.lognormal(0.0, 1.0, n)  # the same swings of load for both versions
    return load * rng.lognormal(0.0, 0.2, n), factor * load * rng.lognormal(0.0, 0.2, n)


def test_paired_series_see_a_rise_the_load_swings_hide_from_an_unpaired_test() -> None:
    stable, canary = _load_and_versions(1, 1.3)
    m = judge_metric(stable, canary, SATURATION)
    assert m.verdict == MetricVerdict.HIGH
    assert m.relative_effect == pytest.approx(0.3, abs=0.1)
    assert m.effect_low < m.effect < m.effect_high
    unpaired = judge_metric(stable, canary, MetricConfig("saturation", tolerance=0.1))
    assert unpaired.verdict == MetricVerdict.PASS
    same = judge_metric(*_load_and_versions(2, 1.0), SATURATION)
    assert same.verdict == MetricVerdict.PASS


def test_paired_test_matches_scipy_wilcoxon_and_drops_idle_buckets() -> None:
    from scipy import stats

    from intelligence.canary import paired_test

    stable, canary = _load_and_versions(3, 1.2)
    p = paired_test(stable, canary)[0]
    r = 2 * (canary - stable) / (canary + stable)
    want = stats.wilcoxon(r, alternative="greater", method="approx", correction=True).pvalue
    assert p == pytest.approx(want, rel=1e-9)
    idle = np.zeros(30)  # a silent stretch: both versions at 0
    assert paired_test(np.concatenate([stable, idle]), np.concatenate([canary, idle]))[0] == p


def test_paired_metric_guards() -> None:
    stable, canary = _load_and_versions(4, 1.0)
    canary[3] = np.nan
    m = judge_metric(stable, canary, SATURATION)
    assert "NaNsDropped" in m.reasons
    assert m.n_stable == m.n_canary == 29  # the bucket is lost on both sides
    with pytest.raises(ValueError, match="same buckets"):
        judge_metric(stable, canary[:-1], SATURATION)
    # 8 buckets cannot reach a small level even if all are worse: no change is detectable
    few = judge_metric(stable[:8], 2.0 * stable[:8], SATURATION, config=JudgeConfig(alpha=0.001))
    assert few.verdict == MetricVerdict.PASS
    assert few.mde_relative == np.inf


def test_paired_false_failures_stay_under_alpha() -> None:
    cfg = JudgeConfig(alpha=0.05, looks=3)
    metric = MetricConfig("saturation", tolerance=0.0, paired=True, series=False)
    failed, runs = 0, 600
    for seed in range(runs):
        s, c = _load_and_versions(1000 + seed, 1.0)
        if any(
            judge_metric(s[: 10 * k], c[: 10 * k], metric, config=cfg, look=k).failed
            for k in (1, 2, 3)
        ):
            failed += 1
    assert failed / runs <= 0.05 + np.sqrt(0.05 * 0.95 / runs)


def test_paired_detectors_ignore_load_both_versions_ride() -> None:
    rng = np.random.default_rng(8)
    load = np.full(30, 100.0)
    load[12:20] *= 5.0  # a burst of traffic, for both versions
    stable = load * rng.lognormal(0.0, 0.05, 30)
    canary = load * rng.lognormal(0.0, 0.05, 30)
    series = MetricConfig("saturation", tolerance=0.1, paired=True)
    m = judge_metric(stable, canary, series)
    assert m.verdict == MetricVerdict.PASS
    assert m.anomalous_points == 0
    unpaired = judge_metric(stable, canary, MetricConfig("saturation", tolerance=0.1))
    assert unpaired.anomalous_points > 0  # the level-based detector mistakes the burst
    canary[22:] *= 1.6  # the canary alone, late: anomalous bucket by bucket
    late = judge_metric(stable, canary, series, config=JudgeConfig(anomalous_fraction=0.2))
    assert late.anomalous_points >= 3  # CUSUM needs a few buckets to build up


def test_configuration_takes_enum_members_or_their_strings_and_names_a_bad_value() -> None:
    m = MetricConfig("m", bad_direction="decrease", kind="proportion")  # type: ignore[arg-type]
    assert m.bad_direction is Direction.DECREASE
    assert m.kind is MetricKind.PROPORTION
    assert m == MetricConfig("m", bad_direction=Direction.DECREASE, kind=MetricKind.PROPORTION)
    assert JudgeConfig(spending="obrien-fleming").spending is Spending.OBRIEN_FLEMING  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bad_direction must be one of 'increase'.*'up'"):
        MetricConfig("m", bad_direction="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be one of"):
        MetricConfig("m", kind="ratio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spending must be one of"):
        JudgeConfig(spending="linear")  # type: ignore[arg-type]


def moving_window_series(
    rng: np.random.Generator,
    points: int,
    window: int,
    per_step: int,
    load: np.ndarray | None = None,
) -> np.ndarray:
    """A rate-like series: per-step mean latencies of `per_step` requests, each point the mean
    over the last `window` steps (a PromQL `rate(...[window])` read every step); `load`, one
    factor per step, scales both versions' steps alike (a paired metric's shared swings)."""
    shape = (points + window - 1, per_step)
    steps = rng.lognormal(np.log(0.05), 0.3, size=shape)
    if load is not None:
        steps *= load[:, None]
    return np.convolve(steps.mean(axis=1), np.ones(window) / window, mode="valid")


def test_overlapping_windows_are_counted_once_not_window_times() -> None:
    """An unchanged canary read through 5-step windows: counted as independent, its points
    fail it far more often than the judge's alpha; counted by their overlap, about as often as
    alpha allows (400 seeded runs; alpha 0.002)."""
    cfg = JudgeConfig()

    assert false_failures(cfg, paired=False, overlap=1.0) >= 10 * cfg.alpha * 400  # 23 of 400
    assert false_failures(cfg, paired=False, overlap=5.0) <= 2


def false_failures(cfg: JudgeConfig, *, paired: bool, overlap: float) -> int:
    """Of 400 seeded runs of an unchanged canary read through 5-step windows (a small canary:
    few requests per step), how many the judge fails. Paired: both versions share the load's
    swings step by step."""
    metric = MetricConfig(
        "latency", tolerance=0.0, min_samples=3, overlap=overlap, paired=paired, series=not paired
    )
    load = 1.0 + 0.5 * np.sin(np.arange(34) / 5.0) if paired else None
    count = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        stable = moving_window_series(rng, 30, 5, per_step=20, load=load)
        canary = moving_window_series(rng, 30, 5, per_step=2, load=load)
        verdict = judge_metric(stable, canary, metric, config=cfg, look=1).verdict
        count += verdict is MetricVerdict.HIGH
    return count


def test_a_paired_metric_counts_overlapping_buckets_once_too() -> None:
    """The same for the signed-rank test of a paired metric (it ignored the overlap before:
    23 of 400 either way)."""
    cfg = JudgeConfig()
    assert false_failures(cfg, paired=True, overlap=1.0) >= 10 * cfg.alpha * 400  # 23 of 400
    assert false_failures(cfg, paired=True, overlap=5.0) <= 2


def test_overlap_widens_a_paired_interval_and_mde_and_keeps_the_estimate() -> None:
    from intelligence.canary import paired_test

    rng = np.random.default_rng(4)
    load = 1.0 + 0.5 * np.sin(np.arange(43) / 5.0)
    stable = moving_window_series(rng, 40, 4, per_step=20, load=load)
    canary = 1.2 * moving_window_series(rng, 40, 4, per_step=20, load=load)
    p1, est1, low1, high1, mde1 = paired_test(stable, canary)
    p4, est4, low4, high4, mde4 = paired_test(stable, canary, overlap=4.0)
    assert est4 == est1
    assert high4 - low4 > high1 - low1
    assert mde4 > mde1
    assert p4 > p1


def test_overlap_widens_the_interval_and_the_mde_and_keeps_the_estimate() -> None:
    rng = np.random.default_rng(3)
    stable = moving_window_series(rng, 40, 4, per_step=20)
    canary = 1.2 * moving_window_series(rng, 40, 4, per_step=20)
    plain = judge_metric(stable, canary, MetricConfig("latency"), config=JudgeConfig(), look=1)
    counted = judge_metric(
        stable, canary, MetricConfig("latency", overlap=4.0), config=JudgeConfig(), look=1
    )
    assert counted.effect == plain.effect
    assert counted.effect_high - counted.effect_low > plain.effect_high - plain.effect_low
    assert counted.mde > plain.mde
    assert counted.p_value > plain.p_value
    assert MetricConfig("latency", overlap=1.0) == MetricConfig("latency")


@pytest.mark.parametrize("bad", [0.5, 0.0, -2.0, float("nan"), float("inf")])
def test_overlap_below_one_is_refused_by_name(bad: float) -> None:
    with pytest.raises(ValueError, match="overlap must be a finite number >= 1"):
        MetricConfig("latency", overlap=bad)
