"""Scaling decisions: HPA v2's documented behaviour, bounds, schedules, predictive fallback."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from intelligence import scaling
from intelligence.forecasting import Forecast
from intelligence.scaling import (
    CronSchedule,
    Decision,
    Observation,
    PolicyType,
    RateRules,
    Rates,
    Recommendation,
    ScaleEvent,
    ScalingParams,
    ScalingState,
    SelectPolicy,
    StepLimit,
    burst_envelope,
    schedules,
)


def decide(*, spec: ScalingParams, state: ScalingState | None = None, **observed: Any) -> Decision:
    """The keyword call these tests are written in: `scaling.decide` of an `Observation`."""
    return scaling.decide(Observation(**observed), params=spec, state=state)


NOW = 1_700_000_000.0
NO_WINDOWS = Rates(
    scale_up=RateRules(0, (StepLimit(PolicyType.PERCENT, 100, 15),)),
    scale_down=RateRules(0, (StepLimit(PolicyType.PERCENT, 100, 15),)),
)


def spec(**kw) -> ScalingParams:
    base: dict = {"target_per_instance": 100.0, "min_instances": 1, "max_instances": 1000}
    base.update(kw)
    return ScalingParams(**base)


# --- the algorithm details page: desired = ceil(current * currentMetric / desiredMetric) ------


@pytest.mark.parametrize(
    ("current", "per_instance_load", "expected", "reason"),
    [
        (4, 200.0, 8, "CurrentLoad"),  # 200m vs 100m target: replicas double
        (4, 50.0, 2, "CurrentLoad"),  # 50m: replicas halve
        (4, 105.0, 4, "WithinTolerance"),  # within the default 10 % tolerance
        (4, 95.0, 4, "WithinTolerance"),
        (4, 111.0, 5, "CurrentLoad"),  # just outside: ceil(4.44)
        (10, 89.0, 9, "CurrentLoad"),
    ],
)
def test_documented_replica_ratio_and_tolerance(current, per_instance_load, expected, reason):
    d = decide(
        now=NOW,
        current_instances=current,
        current_load=current * per_instance_load,
        spec=spec(behavior=NO_WINDOWS),
    )
    assert d.desired == expected
    assert d.reason == reason
    assert d.mode == "reactive"
    assert d.fallback == "NoForecast"


# --- configurable scaling behaviour page --------------------------------------------------------

DOC_SCALE_DOWN = RateRules(
    stabilization_window_seconds=0,
    policies=(
        StepLimit(PolicyType.PODS, 4, 60),
        StepLimit(PolicyType.PERCENT, 10, 60),
    ),
)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        # "if there are 80 replicas ... during the first step 8 replicas will be reduced"
        (80, 72),
        # "72 replicas, 10% of the pods is 7.2 ... 8" (int(72 * 0.9) = 64)
        (72, 64),
        (40, 36),  # both policies agree at 40
        (30, 26),  # below 40 the Pods policy (4) allows the bigger change
        (12, 10),  # never below minReplicas (the docs' "scaled down to 10")
    ],
)
def test_documented_scale_down_policies_select_max(current, expected):
    s = spec(min_instances=10, behavior=Rates(scale_down=DOC_SCALE_DOWN))
    d = decide(now=NOW, current_instances=current, current_load=0.0, spec=s)
    assert d.desired == expected
    assert d.reason in {"ScaleDownLimit", "TooFewReplicas"}


def test_documented_scale_down_sequence_one_period_per_step():
    s = spec(behavior=Rates(scale_down=DOC_SCALE_DOWN))
    state, current, seen = ScalingState(), 80, []
    for i in range(6):
        d = decide(
            now=NOW + 61 * i, current_instances=current, current_load=1000.0, spec=s, state=state
        )
        state, current = d.state, d.desired
        seen.append(current)
    assert seen == [72, 64, 57, 51, 45, 40]


def test_within_a_period_no_second_scale_down():
    s = spec(behavior=Rates(scale_down=DOC_SCALE_DOWN))
    d1 = decide(now=NOW, current_instances=80, current_load=1000.0, spec=s)
    d2 = decide(now=NOW + 30, current_instances=72, current_load=1000.0, spec=s, state=d1.state)
    assert d2.desired == 72
    assert d2.reason == "ScaleDownLimit"
    d3 = decide(now=NOW + 61, current_instances=72, current_load=1000.0, spec=s, state=d2.state)
    assert d3.desired == 64


def test_documented_select_policy_min_limits_to_five_pods_per_minute():
    rules = RateRules(
        stabilization_window_seconds=0,
        policies=(
            StepLimit(PolicyType.PERCENT, 10, 60),
            StepLimit(PolicyType.PODS, 5, 60),
        ),
        select_policy=SelectPolicy.MIN,
    )
    d = decide(
        now=NOW,
        current_instances=80,
        current_load=1000.0,
        spec=spec(behavior=Rates(scale_down=rules)),
    )
    assert d.desired == 75


def test_documented_scale_down_disabled():
    rules = RateRules(0, DOC_SCALE_DOWN.policies, select_policy=SelectPolicy.DISABLED)
    d = decide(
        now=NOW,
        current_instances=80,
        current_load=0.0,
        spec=spec(behavior=Rates(scale_down=rules)),
    )
    assert d.desired == 80


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (1, 5),  # default scale-up: max(100 % -> 2, +4 pods -> 5)
        (10, 20),  # max(100 % -> 20, +4 -> 14)
        (3, 7),
    ],
)
def test_default_scale_up_is_fastest_of_100_percent_or_4_pods(current, expected):
    d = decide(now=NOW, current_instances=current, current_load=100_000.0, spec=spec())
    assert d.desired == expected
    assert d.reason == "ScaleUpLimit"


def test_scale_up_period_counts_earlier_events():
    rules = RateRules(0, (StepLimit(PolicyType.PODS, 4, 60),))
    s = spec(behavior=Rates(scale_up=rules))
    d1 = decide(now=NOW, current_instances=2, current_load=5000.0, spec=s)
    assert d1.desired == 6
    d2 = decide(now=NOW + 30, current_instances=6, current_load=5000.0, spec=s, state=d1.state)
    assert d2.desired == 6
    d3 = decide(now=NOW + 61, current_instances=6, current_load=5000.0, spec=s, state=d2.state)
    assert d3.desired == 10


def test_default_scale_down_stabilization_keeps_highest_recommendation_for_five_minutes():
    s = spec()  # default: 300 s scale-down window
    state = ScalingState()
    current = 10
    loads = [1000.0, 800.0, 600.0, 300.0]
    for i, load in enumerate(loads):
        d = decide(
            now=NOW + 15 * i, current_instances=current, current_load=load, spec=s, state=state
        )
        state, current = d.state, d.desired
    assert current == 10
    assert d.reason == "ScaleDownStabilized"
    # after the window the highest remaining recommendation (3) wins
    d = decide(
        now=NOW + 15 * 3 + 300, current_instances=current, current_load=300.0, spec=s, state=state
    )
    assert d.desired == 3


def test_shorter_stabilization_window_from_the_docs_example():
    rules = RateRules(60, (StepLimit(PolicyType.PERCENT, 100, 15),))
    s = spec(behavior=Rates(scale_down=rules))
    d1 = decide(now=NOW, current_instances=10, current_load=1000.0, spec=s)
    d2 = decide(now=NOW + 30, current_instances=10, current_load=200.0, spec=s, state=d1.state)
    assert d2.desired == 10
    d3 = decide(now=NOW + 61, current_instances=10, current_load=200.0, spec=s, state=d2.state)
    assert d3.desired == 2


def test_scale_up_stabilization_uses_lowest_recommendation():
    rules = RateRules(60, (StepLimit(PolicyType.PODS, 100, 15),))
    s = spec(behavior=Rates(scale_up=rules, scale_down=NO_WINDOWS.scale_down))
    d1 = decide(now=NOW, current_instances=2, current_load=200.0, spec=s)
    d2 = decide(now=NOW + 15, current_instances=2, current_load=900.0, spec=s, state=d1.state)
    assert d2.desired == 2
    assert d2.reason == "ScaleUpStabilized"


def test_max_and_min_bounds():
    s = spec(min_instances=2, max_instances=6, behavior=NO_WINDOWS)
    assert decide(now=NOW, current_instances=4, current_load=10_000.0, spec=s).desired == 6
    assert decide(now=NOW, current_instances=4, current_load=0.0, spec=s).desired == 2
    over = decide(now=NOW, current_instances=9, current_load=10_000.0, spec=s)
    assert over.desired == 6
    assert over.reason == "OutsideBounds"


def test_tolerance_is_configurable_per_direction():
    up = RateRules(0, NO_WINDOWS.scale_up.policies, tolerance=0.0)
    s = spec(behavior=Rates(scale_up=up, scale_down=NO_WINDOWS.scale_down))
    assert decide(now=NOW, current_instances=4, current_load=404.0, spec=s).desired == 5
    assert decide(now=NOW, current_instances=4, current_load=380.0, spec=s).desired == 4


# --- schedules ---------------------------------------------------------------------------------


def test_cron_schedule_raises_the_minimum_while_active():
    # 2023-11-14 is a Tuesday; 08:00 UTC on weekdays for two hours
    at_0830 = 1_699_950_600.0  # 2023-11-14 08:30:00 UTC
    sched = CronSchedule("0 8 * * 1-5", duration_seconds=7200, min_instances=8, name="office")
    assert sched.active(at_0830)
    assert not sched.active(at_0830 - 3600)  # 07:30
    assert not sched.active(at_0830 + 2 * 3600)  # 10:30
    assert not sched.active(at_0830 + 4 * 86400)  # Saturday
    d = decide(now=at_0830, current_instances=2, current_load=50.0, spec=spec(schedules=(sched,)))
    assert d.desired == 8
    assert d.active_schedules == ("office",)
    assert d.reason == "ScheduleMinimum"


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("*/15 * * * *", True),
        ("31-59 * * * *", False),
        ("30 8 14 11 *", True),
        ("30 8 1 * 2", True),
    ],
)
def test_cron_fields(cron, expected):
    at_0830 = 1_699_950_600.0
    assert CronSchedule(cron, duration_seconds=60, min_instances=1).active(at_0830) is expected


def test_cron_rejects_bad_expressions():
    with pytest.raises(ValueError, match="5 fields"):
        CronSchedule("* * *", duration_seconds=60, min_instances=1).active(NOW)
    with pytest.raises(ValueError, match="out of range"):
        CronSchedule("61 * * * *", duration_seconds=60, min_instances=1).active(NOW)


# --- predictive --------------------------------------------------------------------------------


def ramp_forecast(start: float, *, peak: float) -> Forecast:
    point = np.linspace(400.0, peak, 20)
    return Forecast(
        start=start,
        step=15.0,
        point=point,
        lower=point * 0.9,
        upper=point * 1.1,
        level=0.8,
        model="test",
    )


def test_predictive_provisions_the_upper_quantile_over_lead_time():
    fc = ramp_forecast(NOW + 15, peak=1900.0)
    s = spec(behavior=NO_WINDOWS, startup_seconds=30, horizon_seconds=30)
    d = decide(
        now=NOW,
        current_instances=4,
        current_load=400.0,
        spec=s,
        forecast=fc,
        forecast_smape=10.0,
        history_seconds=3600,
    )
    window = (fc.timestamps > NOW) & (fc.timestamps <= NOW + 60)
    expected_peak = float(fc.upper[window].max())
    assert d.mode == "predictive"
    assert d.reason == "ForecastPeak"
    assert d.evidence["forecastPeakUpper"] == pytest.approx(expected_peak)
    assert d.desired == math.ceil(expected_peak / 100.0)
    assert d.desired > 4


@pytest.mark.parametrize(
    ("smape", "history", "fallback"),
    [
        (60.0, 3600.0, "ForecastErrorTooHigh"),
        (10.0, 120.0, "HistoryTooShort"),
        (float("nan"), 3600.0, "ForecastErrorUnknown"),
    ],
)
def test_untrusted_forecast_falls_back_to_reactive(smape, history, fallback):
    d = decide(
        now=NOW,
        current_instances=4,
        current_load=400.0,
        spec=spec(behavior=NO_WINDOWS),
        forecast=ramp_forecast(NOW + 15, peak=5000.0),
        forecast_smape=smape,
        history_seconds=history,
    )
    assert d.mode == "reactive"
    assert d.fallback == fallback
    assert d.desired == 4
    assert "scaling on current load" in d.message


def test_stale_forecast_falls_back():
    d = decide(
        now=NOW,
        current_instances=4,
        current_load=400.0,
        spec=spec(),
        forecast=ramp_forecast(NOW - 3600, peak=5000.0),
        forecast_smape=5.0,
        history_seconds=3600,
    )
    assert d.fallback == "ForecastDoesNotCoverLeadTime"


@pytest.mark.parametrize(("points", "covers"), [(3, False), (4, True)])
def test_a_forecast_that_stops_inside_the_lead_time_is_not_used(points, covers):
    """Start-up 30 s + horizon 30 s: the lead time ends at NOW + 60. A forecast from NOW + 15
    every 15 s reaches NOW + 45 with 3 points (its peak would be the lead time's first part
    only) and NOW + 60 with 4."""
    fc = ramp_forecast(NOW + 15, peak=5000.0)
    fc = replace(fc, point=fc.point[:points], lower=fc.lower[:points], upper=fc.upper[:points])
    d = decide(
        now=NOW,
        current_instances=4,
        current_load=400.0,
        spec=spec(behavior=NO_WINDOWS, startup_seconds=30, horizon_seconds=30),
        forecast=fc,
        forecast_smape=5.0,
        history_seconds=3600,
    )
    if covers:
        assert d.mode == "predictive"
        assert d.evidence["forecastPeakUpper"] == pytest.approx(fc.upper[3])
    else:
        assert d.fallback == "ForecastDoesNotCoverLeadTime"


def test_current_load_wins_when_forecast_underestimates():
    fc = ramp_forecast(NOW + 15, peak=400.0)
    d = decide(
        now=NOW,
        current_instances=5,
        current_load=900.0,
        spec=spec(behavior=NO_WINDOWS),
        forecast=fc,
        forecast_smape=5.0,
        history_seconds=3600,
    )
    assert d.mode == "predictive"
    assert d.desired == 9
    assert d.reason == "CurrentLoad"


def test_state_round_trips_through_a_dict():
    state = ScalingState(
        recommendations=(Recommendation(NOW, 3), Recommendation(NOW + 15, 4)),
        scale_up_events=(ScaleEvent(NOW, 2),),
        scale_down_events=(ScaleEvent(NOW + 15, 1),),
    )
    assert ScalingState.from_dict(state.to_dict()) == state


def test_state_is_pruned_to_the_longest_window():
    s = spec()
    d = decide(now=NOW, current_instances=4, current_load=400.0, spec=s)
    later = decide(now=NOW + 1000, current_instances=4, current_load=400.0, spec=s, state=d.state)
    assert all(r.timestamp > NOW + 1000 - 300 for r in later.state.recommendations)


def test_capacity_aware_demand_provisions_point_at_target_and_upper_under_capacity():
    point = np.full(20, 800.0)
    fc = Forecast(
        start=NOW + 15,
        step=15.0,
        point=point,
        lower=point - 100,
        upper=point + 400,
        level=0.8,
        model="test",
    )
    common = {"behavior": NO_WINDOWS, "startup_seconds": 30, "horizon_seconds": 15}
    kw: dict[str, Any] = {
        "now": NOW,
        "current_instances": 8,
        "current_load": 800.0,
        "forecast": fc,
        "forecast_smape": 5.0,
        "history_seconds": 3600,
    }
    plain = decide(spec=spec(**common), **kw)
    assert plain.desired == 12  # upper 1200 at target 100
    aware = decide(spec=spec(capacity_per_instance=150.0, **common), **kw)
    # point 800 / 100 = 8; upper 1200 must fit 150 per instance = 8 -> stays at 8
    assert aware.desired == 8
    assert aware.evidence["forecastDemand"] == pytest.approx(800.0)
    tight = decide(spec=spec(capacity_per_instance=110.0, **common), **kw)
    assert tight.desired == math.ceil(1200 / 110)


def test_capacity_below_target_is_rejected():
    with pytest.raises(ValueError, match="capacity_per_instance"):
        spec(capacity_per_instance=50.0)


def test_predictive_scale_down_window_applies_only_while_forecast_is_trusted():
    flat = np.full(20, 200.0)
    fc = Forecast(
        start=NOW + 15, step=15.0, point=flat, lower=flat, upper=flat, level=0.8, model="t"
    )
    s = spec(predictive_scale_down_window_seconds=60)  # behaviour keeps the default 300 s
    first = decide(now=NOW, current_instances=10, current_load=1000.0, spec=s)
    kw: dict[str, Any] = {
        "current_instances": 10,
        "current_load": 200.0,
        "spec": s,
        "forecast": fc,
        "history_seconds": 3600,
    }
    trusted = decide(now=NOW + 90, state=first.state, forecast_smape=5.0, **kw)
    assert trusted.mode == "predictive"
    assert trusted.desired == 2
    assert trusted.evidence["scaleDownWindowSeconds"] == 60
    untrusted = decide(now=NOW + 90, state=first.state, forecast_smape=90.0, **kw)
    assert untrusted.mode == "reactive"
    assert untrusted.desired == 10
    assert untrusted.reason == "ScaleDownStabilized"


# --- burst envelope: the fallback when the forecast is not trusted ----------------------------


def bursty_history(*, seconds: float = 1800.0, step: float = 15.0, seed: int = 7):
    """Mostly idle load with bursts of 1000-3000 about one sample in eight."""
    rng = np.random.default_rng(seed)
    t = NOW - seconds + step * np.arange(1, int(seconds / step) + 1)
    v = np.where(rng.random(t.size) < 0.125, rng.uniform(1000, 3000, t.size), 50.0)
    return t, v


def test_burst_envelope_is_mean_plus_cantelli_sigmas_capped_at_the_peak():
    t, v = bursty_history()
    env = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1)
    assert env is not None
    assert env.sigmas == pytest.approx(3.0)  # sqrt(1 / 0.1 - 1)
    assert env.level == pytest.approx(min(v.mean() + 3.0 * v.std(ddof=1), v.max()))
    assert env.samples == v.size
    assert env.span_seconds == pytest.approx(NOW - t[0])
    # a smooth series: mean + 3 sd is above anything seen, so the peak is the envelope
    smooth = burst_envelope(
        t, 500.0 + np.arange(t.size), now=NOW, window_seconds=3600, exceedance=0.1
    )
    assert smooth is not None
    assert smooth.level == pytest.approx(500.0 + t.size - 1)


def test_burst_envelope_looks_only_at_its_window_and_needs_three_samples():
    t, v = bursty_history()
    env = burst_envelope(t, v, now=NOW, window_seconds=300, exceedance=0.1)
    assert env is not None
    assert env.samples == 20  # 300 s of 15 s samples
    assert env.span_seconds <= 300
    assert burst_envelope(t[:2], v[:2], now=NOW, window_seconds=3600, exceedance=0.1) is None
    future = burst_envelope(t + 10_000, v, now=NOW, window_seconds=3600, exceedance=0.1)
    assert future is None  # samples after `now` are not history
    with pytest.raises(ValueError, match="exceedance"):
        burst_envelope(t, v, now=NOW, window_seconds=300, exceedance=1.0)


def test_a_detrended_envelope_does_not_provision_a_slow_swing_as_bursts():
    # an hour holding most of a slow cycle (a compressed day), with noise and short bursts
    rng = np.random.default_rng(3)
    t = NOW - 3600 + 5.0 * np.arange(1, 721)
    swing = 1000.0 + 600.0 * np.sin(2 * np.pi * (t - NOW) / 2880.0)
    bursts = np.where(rng.random(t.size) < 0.02, 400.0, 0.0)
    v = swing + rng.normal(0.0, 40.0, t.size) + bursts
    plain = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1)
    local = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600)
    assert plain is not None
    assert local is not None
    # the plain spread is the swing's (~600 / sqrt 2); about the trend it is the noise and bursts'
    assert plain.std > 350.0
    noise_and_bursts = float(np.std(rng.normal(0.0, 40.0, 100_000))) + 400.0 * np.sqrt(0.02)
    assert local.std < 1.5 * noise_and_bursts
    # the base is where the load is now (the last 600 s), not the hour's mean
    assert local.mean == pytest.approx(v[t > NOW - 600].mean())
    assert local.level == pytest.approx(min(local.mean + 3.0 * local.std, v.max()))
    assert local.level < plain.level - 300.0
    assert local.trend_seconds == 600
    assert "last 600s mean" in local.describe()
    assert "sd about the trend" in local.describe()


def test_a_detrended_envelope_keeps_the_spread_of_bursts_on_a_flat_load():
    t, v = bursty_history(seconds=3600.0)
    plain = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1)
    local = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600)
    assert plain is not None
    assert local is not None
    # bursts one sample long are deviations from any 600 s trend: their spread stays
    assert local.std == pytest.approx(plain.std, rel=0.1)


def test_the_detrended_envelope_does_not_depend_on_the_samples_order():
    t, v = bursty_history(seconds=3600.0, step=5.0)
    v = v + np.linspace(0.0, 500.0, v.size)  # a trend, so the order matters if it is lost
    ordered = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600)
    shuffle = np.random.default_rng(5).permutation(t.size)
    shuffled = burst_envelope(
        t[shuffle], v[shuffle], now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600
    )
    assert ordered is not None
    assert shuffled is not None
    assert shuffled.mean == pytest.approx(ordered.mean)
    assert shuffled.std == pytest.approx(ordered.std)


def test_a_lead_envelope_counts_the_drift_within_the_lead_time():
    # a steady ramp with noise: about its centred trend only the noise is left, but a base
    # taken as the last 600 s mean trails the load, and by more the longer the lead
    rng = np.random.default_rng(7)
    t = NOW - 3600 + 5.0 * np.arange(1, 721)
    v = 1000.0 + 0.5 * (t - t[0]) + rng.normal(0.0, 30.0, t.size)  # +0.5 per second
    centred = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600)
    near, far = (
        burst_envelope(
            t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600, lead_seconds=lead
        )
        for lead in (30.0, 300.0)
    )
    assert centred is not None
    assert near is not None
    assert far is not None
    trailing = v[t > NOW - 600].mean()
    # the mean lead error: half the trailing window's lag plus the lead, at 0.5 per second
    assert near.mean - trailing == pytest.approx(0.5 * (300.0 + 30.0), rel=0.1)
    assert far.mean - trailing == pytest.approx(0.5 * (300.0 + 300.0), rel=0.1)
    assert far.mean > near.mean > centred.mean
    assert far.level >= near.level >= centred.level  # each capped at the hour's peak
    assert near.trend_seconds == 600
    # the spread is still the noise's (the drift is in the mean, not counted twice)
    assert near.std == pytest.approx(30.0, rel=0.25)


def test_a_lead_envelope_needs_three_lead_errors_else_takes_the_centred_trend():
    t, v = bursty_history(seconds=3600.0, step=5.0)
    centred = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600)
    too_far = burst_envelope(
        t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600, lead_seconds=4000
    )
    assert centred is not None
    assert too_far is not None
    assert (too_far.mean, too_far.std) == (centred.mean, centred.std)


def test_samples_too_sparse_for_the_trend_get_the_plain_envelope():
    t, v = bursty_history(seconds=3600.0, step=300.0)  # 2 samples per 600 s
    plain = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1)
    local = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=600)
    assert local == plain
    assert local is not None
    assert local.trend_seconds is None
    assert "sd about the trend" not in local.describe()


def test_burst_trend_seconds_must_be_positive():
    with pytest.raises(ValueError, match="burst_trend_seconds"):
        ScalingParams(target_per_instance=1.0, burst_trend_seconds=0.0)
    assert (
        ScalingParams(target_per_instance=1.0, burst_trend_seconds=None).burst_trend_seconds is None
    )


BURST_SPEC = {
    "target_per_instance": 100.0,
    "capacity_per_instance": 150.0,
    "behavior": NO_WINDOWS,
    "startup_seconds": 30,
    "horizon_seconds": 15,
}


def test_untrusted_forecast_with_recent_load_provisions_the_burst_envelope():
    t, v = bursty_history()
    d = decide(
        now=NOW,
        current_instances=10,
        current_load=50.0,
        spec=spec(**BURST_SPEC),
        forecast=ramp_forecast(NOW + 15, peak=400.0),
        forecast_smape=80.0,
        history_seconds=3600,
        recent_load=(t, v),
    )
    trend = ScalingParams(target_per_instance=100.0).burst_trend_seconds
    env = burst_envelope(t, v, now=NOW, window_seconds=3600, exceedance=0.1, trend_seconds=trend)
    assert env is not None
    assert d.mode == "envelope"
    assert d.fallback == "ForecastErrorTooHigh"
    assert d.reason == "BurstEnvelope"
    # an upper bound, so it only has to fit under capacity, like the forecast's upper quantile
    assert d.evidence["burstDemand"] == pytest.approx(env.level * 100.0 / 150.0)
    assert d.desired == math.ceil(env.level / 150.0 - 1e-9)
    assert d.desired > 10
    assert d.evidence["burstSigmas"] == pytest.approx(3.0)
    assert d.evidence["forecastSmape"] == 80.0
    assert "forecast sMAPE 80.0% > 30.0%" in d.message
    assert "burst envelope" in d.message
    assert "at most 10% of the time" in d.message


def test_current_load_above_the_envelope_still_wins():
    t, v = bursty_history()
    d = decide(
        now=NOW,
        current_instances=40,
        current_load=5000.0,
        spec=spec(**BURST_SPEC),
        recent_load=(t, v),
    )
    assert d.mode == "envelope"
    assert d.fallback == "NoForecast"
    assert d.reason == "CurrentLoad"
    assert d.desired == 50


def test_trusted_forecast_ignores_the_envelope():
    t, v = bursty_history()
    d = decide(
        now=NOW,
        current_instances=4,
        current_load=400.0,
        spec=spec(**BURST_SPEC),
        forecast=ramp_forecast(NOW + 15, peak=400.0),
        forecast_smape=5.0,
        history_seconds=3600,
        recent_load=(t, v),
    )
    assert d.mode == "predictive"
    assert "burstLevel" not in d.evidence
    assert d.desired == 4


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"recent_load": None}, "no recent load for a burst envelope"),
        ({"recent_load": bursty_history(seconds=120)}, "recent load spans 105s < 300s"),
        ({"burst_exceedance": None}, None),
    ],
)
def test_without_a_usable_envelope_the_fallback_is_reactive_and_says_why(kw, why):
    recent = kw.pop("recent_load", bursty_history())
    d = decide(
        now=NOW,
        current_instances=4,
        current_load=400.0,
        spec=spec(**BURST_SPEC, **kw),
        forecast=ramp_forecast(NOW + 15, peak=5000.0),
        forecast_smape=60.0,
        history_seconds=3600,
        recent_load=recent,
    )
    assert d.mode == "reactive"
    assert d.fallback == "ForecastErrorTooHigh"
    assert d.desired == 4
    assert "scaling on current load" in d.message
    if why:
        assert why in d.message


def test_burst_scale_down_window_applies_only_while_the_envelope_provisions():
    t, _ = bursty_history()
    s = spec(target_per_instance=100.0, burst_scale_down_window_seconds=60)  # default 300 s
    first = decide(now=NOW, current_instances=10, current_load=1000.0, spec=s)
    calm = (t, np.full(t.size, 100.0))
    kw: dict[str, Any] = {"current_instances": 10, "current_load": 100.0, "spec": s}
    enveloped = decide(now=NOW + 90, state=first.state, recent_load=calm, **kw)
    assert enveloped.mode == "envelope"
    assert enveloped.evidence["scaleDownWindowSeconds"] == 60
    assert enveloped.desired == 1  # the 1000-load recommendation is older than 60 s
    reactive = decide(now=NOW + 90, state=first.state, **kw)
    assert reactive.mode == "reactive"
    assert reactive.evidence["scaleDownWindowSeconds"] == 300
    assert reactive.desired == 10
    assert reactive.reason == "ScaleDownStabilized"


def test_burst_envelope_respects_the_bounds():
    t, v = bursty_history()
    s = spec(**{**BURST_SPEC, "max_instances": 6})
    d = decide(now=NOW, current_instances=5, current_load=50.0, spec=s, recent_load=(t, v))
    assert d.desired == 6
    assert d.reason == "TooManyReplicas"
    low = (t, np.zeros(t.size))
    d = decide(
        now=NOW,
        current_instances=5,
        current_load=0.0,
        spec=spec(min_instances=3, behavior=NO_WINDOWS),
        recent_load=low,
    )
    assert d.desired == 3


def test_burst_spec_is_validated():
    with pytest.raises(ValueError, match="burst_exceedance"):
        spec(burst_exceedance=0.0)
    with pytest.raises(ValueError, match="burst_window_seconds"):
        spec(burst_window_seconds=0.0)


# --- the package's own additions: requested reactive mode, time zones, croniter parsed once ---


def test_reactive_params_ignore_a_trusted_forecast_and_the_envelope():
    t, v = bursty_history()
    kw: dict[str, Any] = {
        "now": NOW,
        "current_instances": 4,
        "current_load": 400.0,
        "forecast": ramp_forecast(NOW + 15, peak=5000.0),
        "forecast_smape": 5.0,
        "history_seconds": 3600,
        "recent_load": (t, v),
    }
    predictive = decide(spec=spec(behavior=NO_WINDOWS), **kw)
    assert predictive.mode == "predictive"
    assert predictive.desired > 4
    reactive = decide(spec=spec(behavior=NO_WINDOWS, predictive=False), **kw)
    assert reactive.mode == "reactive"
    assert reactive.fallback is None
    assert reactive.desired == 4
    assert "forecastPeakUpper" not in reactive.evidence
    assert "burstLevel" not in reactive.evidence


def test_cron_schedule_follows_its_time_zone_through_daylight_saving():
    london = ZoneInfo("Europe/London")
    sched = CronSchedule("0 8 * * 1-5", duration_seconds=3600, min_instances=4, tz=london)
    summer_0700_utc = 1_719_903_600.0  # Tue 2024-07-02 07:00 UTC = 08:00 BST
    winter_0730_utc = 1_704_785_400.0  # Tue 2024-01-09 07:30 UTC = 07:30 GMT
    assert sched.active(summer_0700_utc)
    assert not sched.active(summer_0700_utc - 1)
    assert not sched.active(winter_0730_utc)
    assert sched.active(winter_0730_utc + 1800)
    assert sched.last_match(summer_0700_utc + 60) == summer_0700_utc


def test_cron_expression_is_parsed_once_not_per_call(monkeypatch):
    sched = CronSchedule("*/15 * * * *", duration_seconds=60, min_instances=1)

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(schedules, "croniter", no_parsing)
    at_0830 = 1_699_950_600.0
    assert sched.active(at_0830)
    assert not sched.active(at_0830 + 120)


def test_cron_equal_range_is_one_value_and_impossible_dates_are_rejected():
    at_0830 = 1_699_950_600.0  # 08:30 UTC
    assert CronSchedule("30 8-8 * * *", duration_seconds=60, min_instances=1).active(at_0830)
    # croniter alone reads `9-9` as every hour
    assert not CronSchedule("30 9-9 * * *", duration_seconds=60, min_instances=1).active(at_0830)
    with pytest.raises(ValueError, match="never matches"):
        CronSchedule("0 0 31 2 *", duration_seconds=60, min_instances=1)
