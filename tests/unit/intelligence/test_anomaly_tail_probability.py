"""TailProbabilityDetector: flags spikes and level shifts, quiet on clean seasonal data, causal."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import AnomalyDetector, Direction, Severity, TailProbabilityDetector
from intelligence.anomaly.base import Thresholds
from intelligence.anomaly.tail_probability import FeatureOptions, TailCalibrator, detect_season

PERIOD = 100


def seasonal(n: int = 1500, seed: int = 7) -> NDArray[np.float64]:
    """A clean daily-like pattern: sine of amplitude 10 plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50.0 + 10.0 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0.0, 1.0, n)


def alarms(det: TailProbabilityDetector, x: NDArray[np.float64]) -> list[int]:
    return [i for i, v in enumerate(x) if det.update(v).evidence.get("alarm", 0.0) > 0.0]


def test_is_an_anomaly_detector() -> None:
    assert isinstance(TailProbabilityDetector(), AnomalyDetector)


def test_finds_the_period_of_a_seasonal_series() -> None:
    period, acf = detect_season(seasonal()[:500], min_acf=0.5)  # five cycles
    assert period is not None
    assert abs(period - PERIOD) <= 2  # noise can move the autocorrelation peak by a lag
    assert acf > 0.8
    noise = np.random.default_rng(1).normal(size=400)
    assert detect_season(noise, min_acf=0.5)[0] is None


def test_quiet_on_clean_seasonal_series() -> None:
    det = TailProbabilityDetector(window=300, alarm_level=2.5)
    x = seasonal()
    fired = [i for i in alarms(det, x) if i >= 300]
    assert det.period is not None
    assert abs(det.period - PERIOD) <= 2
    # alarm_level 2.5 is a 0.3% tail per point and feature: a few alarms in 1200 clean points
    assert len(fired) <= 3
    result = TailProbabilityDetector(window=300).score(x)
    assert np.sum(result.severities[300:] >= Severity.CRITICAL) == 0


def test_spike_raises_one_alarm_at_once() -> None:
    x = seasonal()
    x[1000] += 15.0
    fired = [i for i in alarms(TailProbabilityDetector(window=300, alarm_level=2.5), x) if i >= 300]
    assert 1000 in fired
    assert len(fired) <= 3
    result = TailProbabilityDetector(window=300).score(x)
    assert result.severities[1000] >= Severity.CRITICAL
    assert result.first_at(Severity.CRITICAL) == 1000


def directed(way: Direction) -> TailProbabilityDetector:
    return TailProbabilityDetector(window=300, escalation=None, direction=way)


def test_a_directed_detector_alarms_only_its_way_and_a_wrong_way_point_hides_nothing() -> None:
    """A dip at 1200 and a spike 20 points later, inside the refractory half window a dip
    alarm starts (no escalation through it, as the analytics engine runs it): both ways alarms
    on the dip only; up on the spike only, down on the dip only. The scores do not depend on
    the direction."""
    x = seasonal()
    x[1200] -= 15.0
    x[1220] += 15.0
    fired = {
        way: [i for i in alarms(directed(way), x) if 1190 <= i < 1300]
        for way in ("both", "up", "down")
    }
    assert fired == {"both": [1200], "up": [1220], "down": [1200]}
    both, up = (directed(way).score(x) for way in ("both", "up"))
    np.testing.assert_array_equal(both.scores, up.scores)


def test_level_shift_is_flagged_quickly() -> None:
    x = seasonal()
    x[1000:] += 5.0
    fired = [i for i in alarms(TailProbabilityDetector(window=300), x) if i >= 300]
    assert any(1000 <= i <= 1010 for i in fired)


def test_missing_seasonal_peak_is_flagged_by_the_seasonal_feature() -> None:
    x = seasonal()
    day = slice(1000, 1000 + PERIOD // 2)
    x[day] = 50.0 + np.random.default_rng(2).normal(0.0, 1.0, PERIOD // 2)  # a flattened cycle
    det = TailProbabilityDetector(window=300)
    evidence = [det.update(v).evidence for v in x]
    hits = [i for i, e in enumerate(evidence) if e.get("alarm", 0.0) > 0.0 and i >= 300]
    assert any(1000 <= i < 1050 for i in hits)
    first = next(i for i in hits if i >= 1000)
    assert evidence[first]["seasonal_surprise"] >= 2.5


def test_causal_scores_do_not_change_when_future_points_are_appended() -> None:
    x = seasonal(1200)
    x[900:] += 6.0
    short = TailProbabilityDetector(window=300).score(x[:1000]).scores
    full = TailProbabilityDetector(window=300).score(x).scores
    np.testing.assert_array_equal(short, full[:1000])


def test_batch_and_streaming_agree_and_reset_forgets() -> None:
    x = seasonal(800)
    det = TailProbabilityDetector(window=200)
    batch = det.score(x).scores
    stream = np.array([det.update(v).score for v in x])
    np.testing.assert_array_equal(batch, stream)
    det.reset()
    again = np.array([det.update(v).score for v in x])
    np.testing.assert_array_equal(batch, again)


def test_nan_is_skipped() -> None:
    det = TailProbabilityDetector(window=100)
    d = det.update(float("nan"))
    assert np.isnan(d.score)
    assert d.severity == Severity.INFO


def test_calibrator_respects_the_empirical_tail() -> None:
    cal = TailCalibrator(min_history=10)
    for v in np.linspace(0.0, 1.0, 100):
        cal.add(float(v))
    assert cal.surprise(0.5) == 0.0
    assert cal.surprise(5.0) > 10.0
    for _ in range(20):  # a recurring large value is no longer rare
        cal.add(5.0)
    assert cal.surprise(5.0) < 1.0


def flat_then(changes: list[float], **kw: object) -> list[Mapping[str, float]]:
    """Evidence of each change after 600 points of a perfectly flat series."""
    det = TailProbabilityDetector(window=240, **kw)  # type: ignore[arg-type]
    for _ in range(600):
        det.update(5.0)
    return [det.update(v).evidence for v in changes]


def test_surprise_is_capped_where_a_flat_history_has_no_tail_scale() -> None:
    # a point-mass history has no spread: uncapped, a 2 % change claims ~1e-36, a jump 1e-15000
    uncapped = flat_then([5.1, 50.0], max_surprise=None)
    assert all(ev["value_surprise"] > 30.0 for ev in uncapped)
    for ev in flat_then([5.1, 50.0]):
        assert ev["score"] == 6.0
        assert max(ev[f"{k}_surprise"] for k in ("value", "level", "seasonal", "context")) <= 6.0


def test_a_wobble_after_a_flat_stretch_is_not_an_alarm_but_a_change_is() -> None:
    no_floor = TailProbabilityDetector(window=240, options=FeatureOptions(z_min_scale=0.0))
    for _ in range(600):
        no_floor.update(5.0)
    assert no_floor.update(5.001).evidence["alarm"] == 1.0  # a 0.02 % wobble, without the floor
    wobble, change = flat_then([5.001]), flat_then([5.05])
    assert wobble[0]["alarm"] == 0.0
    assert wobble[0]["score"] < 2.375
    assert change[0]["alarm"] == 1.0  # 1 %


def test_an_alarm_at_the_cap_is_not_escalated_by_a_later_one() -> None:
    # uncapped, the larger absurd score breaks the refractory period as "news"
    first, later = flat_then([5.1, 50.0], max_surprise=None)
    assert first["alarm"] == 1.0
    assert later["alarm"] == 1.0
    first, later = flat_then([5.1, 50.0])
    assert first["alarm"] == 1.0
    assert later["alarm"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_history": 1}, r"need 2 <= min_history <= window, got 1 and 300"),
        ({"window": 40}, r"need 2 <= min_history <= window, got 50 and 40"),
        ({"short_window": 0}, r"short_window must be >= 1, got 0"),
        ({"context_order": -1}, r"context_order must be >= 0 or None, got -1"),
        ({"context_bins": 0}, r"context_bins must be >= 1, got 0"),
        ({"calibration_window": 10}, r"calibration_window must be >= min_history \(50\), got 10"),
        (
            {"calibration_window": 60, "options": FeatureOptions(calibration_min_history=100)},
            r"calibration_window must be >= options.calibration_min_history \(100\), got 60",
        ),
        ({"refractory": -1}, r"refractory must be >= 0, got -1"),
        ({"escalation": 0.0}, r"escalation must be > 0 or None, got 0.0"),
        ({"escalation_gap": -2}, r"escalation_gap must be >= 0, got -2"),
        ({"direction": "sideways"}, r"direction must be 'both', 'up' or 'down', got 'sideways'"),
        ({"rate_window": -1}, r"rate_window must be >= 0, got -1"),
        ({"lone_penalty": -0.5}, r"lone_penalty must be >= 0, got -0.5"),
        # several wrong at once: the first part checked is the one named
        ({"rate_window": -1, "direction": "x", "context_bins": 0}, r"context_bins must be >= 1"),
        ({"rate_window": -1, "direction": "x"}, r"direction must be"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TailProbabilityDetector(**kwargs)  # type: ignore[arg-type]


def test_unset_parameters_are_derived_from_the_window_and_the_options() -> None:
    det = TailProbabilityDetector(window=100, min_history=20, rate_window=30, lone_penalty=0.5)
    assert (det.refractory, det.season_horizon, det.calibration_min_history) == (50, 400, 20)
    assert (det.rate_window, det.lone_penalty) == (30, 0.5)
    assert det._gate.silent == frozenset()
    opts = FeatureOptions(calibration_min_history=30, scored_features=("value", "level"))
    other = TailProbabilityDetector(
        window=100, min_history=20, refractory=7, season_horizon=250, options=opts
    )
    assert (other.refractory, other.season_horizon, other.calibration_min_history) == (7, 250, 30)
    assert other._gate.silent == frozenset({2, 3, 4})  # seasonal, context, resonance


def test_the_cap_keeps_every_default_severity_reachable() -> None:
    det = TailProbabilityDetector(alarm_level=2.375)
    assert det.thresholds.emergency == 2.375 + 3.5 <= 6.0
    high = TailProbabilityDetector(alarm_level=4.0)  # default EMERGENCY stops at the cap
    assert (high.thresholds.critical, high.thresholds.emergency) == (5.5, 6.0)


def test_bad_caps_are_refused_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match="max_surprise must be above alarm_level"):
        TailProbabilityDetector(alarm_level=3.0, max_surprise=3.0)
    with pytest.raises(ValueError, match=r"thresholds.emergency \(8.0\) is above max_surprise"):
        TailProbabilityDetector(thresholds=Thresholds(2.0, 4.0, 8.0))
    assert TailProbabilityDetector(thresholds=Thresholds(2.0, 4.0, 8.0), max_surprise=None)
