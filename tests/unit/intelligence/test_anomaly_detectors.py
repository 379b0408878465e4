"""Detectors flag injected spikes, level shifts and slow drifts, and stay quiet on clean series."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import (
    AnomalyDetector,
    CusumDetector,
    Ensemble,
    FixedThreshold,
    IQRDetector,
    IsolationForestDetector,
    RobustZScore,
    Severity,
    Thresholds,
)

PERIOD = 100


def seasonal(n: int = 1200, seed: int = 7) -> NDArray[np.float64]:
    """A clean daily-like pattern: sine of amplitude 10 plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50.0 + 10.0 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0.0, 1.0, n)


def univariate_detectors() -> list[AnomalyDetector]:
    return [
        RobustZScore(window=200, season=PERIOD),
        IQRDetector(window=200, season=PERIOD, thresholds=Thresholds(3.0, 4.5, 8.0)),
        CusumDetector(window=200, season=PERIOD),
    ]


@pytest.mark.parametrize("detector", univariate_detectors(), ids=lambda d: d.name)
def test_quiet_on_clean_seasonal_series(detector: AnomalyDetector) -> None:
    result = detector.score(seasonal())
    assert result.max_severity <= Severity.WARNING
    assert result.anomalies.size <= 0.01 * result.scores.size


@pytest.mark.parametrize(
    "detector",
    [RobustZScore(window=200, season=PERIOD), IQRDetector(window=200, season=PERIOD)],
    ids=lambda d: d.name,
)
def test_spike_is_flagged_at_once(detector: AnomalyDetector) -> None:
    x = seasonal()
    x[900] += 15.0
    result = detector.score(x)
    assert result.severities[900] >= Severity.CRITICAL
    assert result.first_at(Severity.CRITICAL) == 900


def test_level_shift_is_flagged_quickly_by_cusum() -> None:
    x = seasonal()
    x[800:] += 4.0
    result = CusumDetector(window=200, season=PERIOD).score(x)
    first = result.first_at(Severity.WARNING)
    assert first is not None
    assert 800 <= first <= 815


def test_level_shift_is_flagged_by_robust_zscore() -> None:
    x = seasonal()
    x[800:] += 8.0
    result = RobustZScore(window=200, season=PERIOD).score(x)
    assert result.first_at(Severity.WARNING) == 800


def test_slow_drift_is_flagged_by_cusum_but_not_by_a_spike_detector() -> None:
    rng = np.random.default_rng(3)
    x = 20.0 + rng.normal(0.0, 1.0, 1000)
    x[500:] += np.linspace(0.0, 4.0, 500)  # 4 sigma over 500 points: no single point stands out
    cusum = CusumDetector(window=100, lag=100).score(x)
    first = cusum.first_at(Severity.WARNING)
    assert first is not None
    assert 500 < first < 800
    assert cusum.first_at(Severity.WARNING) is not None
    assert RobustZScore(window=100).score(x).max_severity <= Severity.WARNING


def test_drop_counts_only_for_direction_down() -> None:
    x = seasonal()
    x[900] -= 20.0
    assert RobustZScore(window=200, season=PERIOD, direction="up").score(x).severities[900] == 0
    down = RobustZScore(window=200, season=PERIOD, direction="down").score(x)
    assert down.severities[900] >= Severity.CRITICAL


@pytest.mark.parametrize("detector", univariate_detectors(), ids=lambda d: d.name)
def test_batch_equals_streaming_and_batch_leaves_state_alone(detector: AnomalyDetector) -> None:
    x = seasonal(400)
    x[300] += 20.0
    batch = detector.score(x)
    streamed = np.array([detector.update(v).score for v in x])
    np.testing.assert_array_equal(batch.scores, streamed)
    again = detector.score(x)
    np.testing.assert_array_equal(again.scores, batch.scores)


def test_nan_scores_nan_and_does_not_poison_history() -> None:
    x = seasonal(400)
    with_nan = x.copy()
    with_nan[250] = np.nan
    det = RobustZScore(window=200, season=None)
    d = det.score(with_nan)
    assert np.isnan(d.scores[250])
    assert d.severities[250] == Severity.INFO
    assert np.all(np.isfinite(d.scores[260:]))


def test_flat_series_does_not_divide_by_zero() -> None:
    x = np.full(200, 5.0)
    result = RobustZScore(window=50).score(x)
    assert np.all(np.nan_to_num(result.scores) == 0.0)
    x[150] = 6.0
    assert RobustZScore(window=50).score(x).severities[150] == Severity.EMERGENCY


def test_isolation_forest_is_seeded_deterministic_and_causal() -> None:
    rng = np.random.default_rng(11)
    cpu = rng.normal(50.0, 5.0, 400)
    latency = 2.0 * cpu + rng.normal(0.0, 2.0, 400)  # latency follows CPU
    data = np.column_stack([cpu, latency])
    data[350] = [40.0, 125.0]  # -2 and +4 sigma alone; jointly impossible
    a = IsolationForestDetector(random_state=3, refit_every=64, n_estimators=50).score(data)
    b = IsolationForestDetector(random_state=3, refit_every=64, n_estimators=50).score(data)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert np.all(np.isnan(a.scores[:64]))  # nothing scored before the first fit
    assert a.severities[350] >= Severity.WARNING
    assert a.scores[350] > np.nanpercentile(a.scores[200:], 95)
    # Causal: appending a wild future point does not change any earlier score.
    longer = np.vstack([data, [[500.0, -500.0]]])
    c = IsolationForestDetector(random_state=3, refit_every=64, n_estimators=50).score(longer)
    np.testing.assert_array_equal(c.scores[:-1], a.scores)


def test_isolation_forest_streaming_matches_batch() -> None:
    rng = np.random.default_rng(5)
    data = rng.normal(size=(100, 3))
    batch = IsolationForestDetector(min_history=32, refit_every=32, n_estimators=30).score(data)
    det = IsolationForestDetector(min_history=32, refit_every=32, n_estimators=30)
    streamed = np.array([det.update(row).score for row in data])
    np.testing.assert_allclose(batch.scores, streamed, equal_nan=True)


def test_fixed_threshold_with_for_duration() -> None:
    x = np.array([0.1, 0.6, 0.6, 0.6, 0.95, 0.2])
    det = FixedThreshold(warning=0.5, critical=0.9, emergency=0.99, for_points=2)
    sev = det.score(x).severities.tolist()
    assert sev == [0, 0, 1, 1, 1, 0]
    down = FixedThreshold(warning=0.99, critical=0.95, emergency=0.9, direction="down")
    assert down.score(np.array([0.999, 0.97, 0.92, 0.5])).severities.tolist() == [0, 1, 2, 3]


def test_ensemble_votes() -> None:
    x = seasonal()
    x[900] += 15.0
    members: list[AnomalyDetector] = [
        RobustZScore(window=200, season=PERIOD),
        CusumDetector(window=200, season=PERIOD),
    ]
    any_vote = Ensemble(members, min_votes=1).score(x)
    both = Ensemble(members, min_votes=2).score(x)
    assert any_vote.severities[900] >= Severity.CRITICAL  # the z-score sees the spike
    assert both.severities[900] < any_vote.severities[900]  # CUSUM does not: one spike
    assert Ensemble(members).score(seasonal()).max_severity <= Severity.WARNING


def test_detectors_satisfy_the_protocol() -> None:
    for det in [*univariate_detectors(), IsolationForestDetector(), Ensemble([RobustZScore()])]:
        assert isinstance(det, AnomalyDetector)


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="ordered"):
        Thresholds(3.0, 2.0, 5.0)
