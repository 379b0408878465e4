"""Calibrated headroom: the operating point, adaptive conformal inference, bounded state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scaling_support import params_with

from intelligence.forecasting import Forecast
from intelligence.scaling import (
    Calibration,
    Decision,
    DecisionMode,
    Observation,
    ScalingParams,
    ScalingState,
    decide,
)
from intelligence.scaling.calibration import MAX_PENDING

NOW = 1_700_000_000.0
STEP = 5.0


params = params_with(
    target_per_instance=10.0,
    max_instances=1000,
    startup_seconds=30.0,
    horizon_seconds=15.0,
    burst_exceedance=None,
    calibration_cap_at_peak=False,
    calibration_step=0.02,
    calibration_scale_seconds=600.0,
)


def replay(loads: np.ndarray, spec: ScalingParams) -> list[tuple[Decision, float]]:
    """decide() every STEP seconds on `loads`, instances following the decisions."""
    state, current, out = ScalingState(), 1, []
    for i, load in enumerate(loads):
        now = NOW + i * STEP
        d = decide(Observation(now, current, float(load)), params=spec, state=state)
        state, current = d.state, d.desired
        out.append((d, now))
    return out


def realised_miss_rate(decisions: list[tuple[Decision, float]], loads: np.ndarray) -> float:
    """The share of calibrated decisions whose covering level the load exceeded within the
    lead time (start-up + horizon), judged here from the loads, not from the policy's state."""
    lead = int(45 / STEP)
    misses = [
        float(loads[i + 1 : i + 1 + lead].max() > d.evidence["coveringLevel"])
        for i, (d, _) in enumerate(decisions[: -lead - 1])
        if d.mode is DecisionMode.CALIBRATED
    ]
    assert len(misses) > 0.8 * len(decisions)
    return float(np.mean(misses))


def bursty(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.lognormal(mean=3.0, sigma=1.0, size=n)


def smooth(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n)
    return 100.0 + 60.0 * np.sin(2 * np.pi * t / 720.0) + rng.normal(0.0, 3.0, n)


@pytest.mark.parametrize("shape", [bursty, smooth])
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_the_miss_rate_approaches_the_target_whatever_the_traffic_shape(shape, alpha):
    loads = shape(3000, np.random.default_rng(7))
    decisions = replay(loads, params(target_under_provisioning=alpha))
    assert realised_miss_rate(decisions, loads) == pytest.approx(alpha, abs=0.35 * alpha)


def test_the_headroom_grows_after_misses_and_the_policy_says_so():
    rng = np.random.default_rng(3)
    calm = 100.0 + rng.normal(0.0, 1.0, 600)
    bursts = 100.0 + rng.normal(0.0, 1.0, 600) + 60.0 * (rng.random(600) < 0.1)
    decisions = replay(np.concatenate([calm, bursts]), params(target_under_provisioning=0.1))
    before, after = decisions[599][0].evidence, decisions[-1][0].evidence
    covering_before = before["coveringLevel"] - before["calibrationBase"]
    covering_after = after["coveringLevel"] - after["calibrationBase"]
    assert covering_after > 10 * covering_before
    assert decisions[-1][0].mode is DecisionMode.CALIBRATED
    assert "calibrated level" in decisions[-1][0].message
    assert after["targetUnderProvisioning"] == 0.1


def test_until_enough_predictions_are_scored_the_usual_modes_decide():
    spec = params(target_under_provisioning=0.1, calibration_min_scores=20)
    decisions = replay(np.full(40, 50.0), spec)
    assert decisions[0][0].mode is DecisionMode.REACTIVE
    first = next(i for i, (d, _) in enumerate(decisions) if d.mode is DecisionMode.CALIBRATED)
    # one prediction opens per call and is scored 9 calls (the 45 s lead time) later: the
    # 20th score arrives at call 9 + 19
    assert first == 9 + 19


def test_no_target_turns_calibration_off():
    decisions = replay(
        bursty(200, np.random.default_rng(1)), params(target_under_provisioning=None)
    )
    assert all(d.mode is DecisionMode.REACTIVE for d, _ in decisions)
    assert decisions[-1][0].state.calibration == Calibration()


def test_state_stays_bounded_over_a_long_history():
    """Scores, open predictions, recommendations and events stay within fixed sizes: the
    serialised state after 4000 decisions is no larger than after 1000 (a 30-minute horizon
    keeps at most MAX_PENDING predictions open)."""
    spec = params(target_under_provisioning=0.1, horizon_seconds=1800.0, calibration_window=50)
    rng = np.random.default_rng(5)
    state, current, sizes = ScalingState(), 1, {}
    for i, load in enumerate(bursty(4000, rng)):
        d = decide(Observation(NOW + i * STEP, current, float(load)), params=spec, state=state)
        state, current = d.state, d.desired
        if i + 1 in (1000, 4000):
            sizes[i + 1] = len(json.dumps(state.to_dict()))
    cal = state.calibration
    assert len(cal.scores) == len(cal.ordered) == 50
    assert 1 < len(cal.pending) <= MAX_PENDING
    assert len(state.recommendations) <= 300 / STEP + 1
    assert sizes[4000] <= 1.1 * sizes[1000]


def test_state_with_calibration_round_trips_through_json():
    decisions = replay(bursty(100, np.random.default_rng(2)), params(target_under_provisioning=0.1))
    state = decisions[-1][0].state
    assert state.calibration.scores
    assert state.calibration.pending
    data = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    assert ScalingState.from_dict(data) == state


def test_calibrated_demand_is_provisioned_under_capacity_and_never_below_current_load():
    spec = params(target_under_provisioning=0.1, capacity_per_instance=20.0)
    decisions = replay(bursty(300, np.random.default_rng(4)), spec)
    for d, _ in decisions:
        if d.mode is DecisionMode.CALIBRATED:
            e = d.evidence
            assert e["calibratedDemand"] == pytest.approx(e["coveringLevel"] * 10.0 / 20.0)
            assert e["demand"] == pytest.approx(max(e["calibratedDemand"], e["currentLoad"]))


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"target_under_provisioning": 0.0}, "target_under_provisioning"),
        ({"target_under_provisioning": 1.5}, "target_under_provisioning"),
        ({"calibration_min_scores": 0}, "calibration_min_scores"),
        ({"calibration_window": 10, "calibration_min_scores": 20}, "calibration_window"),
        ({"calibration_step": 0.0}, "calibration_step"),
        ({"calibration_scale_seconds": -1.0}, "calibration_scale_seconds"),
    ],
)
def test_calibration_parameters_are_validated(kw, field):
    with pytest.raises(ValueError, match=field):
        params(**kw)


def test_headroom_is_the_conformal_quantile_of_the_scores():
    scores = tuple(float(x) for x in range(1, 101))
    cal = Calibration(level=0.1, scores=scores, ordered=scores)
    # ceil((n + 1) * (1 - level)) = ceil(90.9) = 91st smallest
    assert cal.headroom(target=0.1, min_scores=20) == 91.0
    assert Calibration(level=0.0, scores=scores, ordered=scores).headroom(
        target=0.1, min_scores=20
    ) == max(scores)
    assert Calibration().headroom(target=0.1, min_scores=1) is None


def test_with_the_cap_the_covering_level_never_exceeds_the_recent_peak():
    spec = params(target_under_provisioning=0.05, calibration_cap_at_peak=True)
    loads = bursty(400, np.random.default_rng(6))
    for d, _ in replay(loads, spec):
        if d.mode is DecisionMode.CALIBRATED:
            cal = d.state.calibration
            assert cal.high is not None
            assert d.evidence["coveringLevel"] <= max(cal.high, d.evidence["calibrationBase"])
            assert "recent peak" in d.message


def forecast_obs(now: float, current: int, load: float, point: float) -> Observation:
    ts = np.arange(1, 9, dtype=np.float64)
    values = np.full(ts.size, point)
    fc = Forecast(now + 15.0, 15.0, values, values * 0.9, values * 1.1, 0.8, "test")
    return Observation(now, current, load, fc, forecast_smape=5.0, history_seconds=7200.0)


@pytest.mark.parametrize("calibrate_forecast", [False, True])
def test_a_trusted_forecast_decides_unless_calibrate_forecast(calibrate_forecast):
    """Calibration keeps scoring while a trusted forecast decides; with `calibrate_forecast`
    the forecast's point peak is the base of the calibrated level instead."""
    spec = params(target_under_provisioning=0.1, calibrate_forecast=calibrate_forecast)
    rng = np.random.default_rng(8)
    state, current = ScalingState(), 5
    for i in range(60):
        load = float(50.0 + rng.normal(0.0, 2.0))
        obs = forecast_obs(NOW + i * STEP, current, load, point=80.0)
        d = decide(obs, params=spec, state=state)
        state, current = d.state, d.desired
    assert len(state.calibration.scores) >= 40
    if calibrate_forecast:
        assert d.mode is DecisionMode.CALIBRATED
        assert d.evidence["calibrationBase"] >= 80.0
    else:
        assert d.mode is DecisionMode.PREDICTIVE
        assert "coveringLevel" not in d.evidence
