"""Property tests: decisions stay within bounds and never change faster than policies allow."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from intelligence.scaling import (
    Observation,
    PolicyType,
    RateRules,
    Rates,
    ScalingParams,
    ScalingState,
    SelectPolicy,
    StepLimit,
    burst_envelope,
    decide,
)

policies = st.lists(
    st.builds(
        StepLimit,
        type=st.sampled_from(list(PolicyType)),
        value=st.integers(1, 200),
        period_seconds=st.sampled_from([15, 30, 60, 120]),
    ),
    min_size=1,
    max_size=3,
)
rules = st.builds(
    RateRules,
    stabilization_window_seconds=st.sampled_from([0, 30, 60, 300]),
    policies=policies.map(tuple),
    select_policy=st.sampled_from([SelectPolicy.MAX, SelectPolicy.MIN]),
    tolerance=st.sampled_from([0.0, 0.1, 0.2]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ScalingParams, int, list[float]]:
    lo = draw(st.integers(0, 5))
    hi = draw(st.integers(max(lo, 1), 60))
    spec = ScalingParams(
        target_per_instance=draw(st.sampled_from([1.0, 10.0, 75.0])),
        min_instances=lo,
        max_instances=hi,
        behavior=Rates(scale_up=draw(rules), scale_down=draw(rules)),
    )
    start = draw(st.integers(lo, hi))
    loads = draw(st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=25))
    return spec, start, loads


def _limit(rules: RateRules, start_of: dict[int, int], *, up: bool) -> int:
    proposals = []
    for p in rules.policies:
        s = start_of[p.period_seconds]
        if p.type is PolicyType.PODS:
            proposals.append(s + p.value if up else s - p.value)
        elif up:
            proposals.append(math.ceil(s * (1 + p.value / 100)))
        else:
            proposals.append(int(s * (1 - p.value / 100)))
    pick_max = (rules.select_policy is SelectPolicy.MAX) == up
    return max(proposals) if pick_max else min(proposals)


def _assert_within_bounds_and_policies(
    spec, desired: int, current: int, history: list[tuple[float, int]], now: float
) -> None:
    """`desired` is within [min, max] and moves no faster than the policies allow, judged
    from the replicas at the start of each policy's period (read off the trajectory)."""
    assert spec.min_instances <= desired <= spec.max_instances
    periods = {
        p.period_seconds
        for p in spec.behavior.scale_up.policies + spec.behavior.scale_down.policies
    }
    start_of = {period: [r for t, r in history if t <= now - period][-1] for period in periods}
    if desired > current:
        assert desired <= max(current, _limit(spec.behavior.scale_up, start_of, up=True))
    if desired < current:
        assert desired >= min(current, _limit(spec.behavior.scale_down, start_of, up=False))


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.sampled_from([15, 20, 45]))
def test_within_bounds_and_never_faster_than_policies(scenario, interval) -> None:
    spec, current, loads = scenario
    state = ScalingState()
    history: list[tuple[float, int]] = [(-math.inf, current)]  # (time, replicas from then on)
    t0 = 1_000_000.0
    for i, load in enumerate(loads):
        now = t0 + i * interval
        d = decide(Observation(now, current, load), params=spec, state=state)
        _assert_within_bounds_and_policies(spec, d.desired, current, history, now)
        if d.desired != current:
            history.append((now, d.desired))
        state, current = d.state, d.desired


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_decisions_are_deterministic_given_the_state(scenario) -> None:
    spec, current, loads = scenario
    a = decide(Observation(5e6, current, loads[0]), params=spec)
    b = decide(Observation(5e6, current, loads[0]), params=spec)
    assert a == b
    assert a.evidence["desired"] == a.desired


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.sampled_from([5, 15, 45]), st.data())
def test_envelope_mode_stays_within_bounds_and_policies(scenario, interval, data) -> None:
    spec, current, loads = scenario
    spec = replace(spec, burst_scale_down_window_seconds=data.draw(st.sampled_from([None, 0, 60])))
    past = data.draw(st.lists(st.floats(0, 5000, allow_nan=False), min_size=0, max_size=60))
    t0 = 1_000_000.0
    times = [t0 - 15.0 * (len(past) - i) for i in range(len(past))]
    state = ScalingState()
    history: list[tuple[float, int]] = [(-math.inf, current)]
    for i, load in enumerate(loads):
        now = t0 + i * interval
        times.append(now)
        past.append(load)
        d = decide(
            Observation(now, current, load, recent_load=(times, past)), params=spec, state=state
        )
        _assert_within_bounds_and_policies(spec, d.desired, current, history, now)
        if d.mode == "envelope":
            assert d.fallback == "NoForecast"
            assert d.evidence["burstLevel"] <= max(past) + 1e-9
        if d.desired != current:
            history.append((now, d.desired))
        state, current = d.state, d.desired


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=3, max_size=300),
    st.sampled_from([0.01, 0.05, 0.1, 0.25, 0.5]),
)
def test_burst_envelope_is_exceeded_at_most_its_share_of_the_time(values, exceedance) -> None:
    """Cantelli's bound holds for the samples' own distribution, whatever its shape."""
    t = [float(i) for i in range(len(values))]
    env = burst_envelope(t, values, now=t[-1], window_seconds=1e9, exceedance=exceedance)
    assert env is not None
    above = sum(1 for v in values if v > env.level * (1 + 1e-9) + 1e-9)
    assert above <= exceedance * len(values) + 1e-9
    assert min(values) - 1e-6 <= env.level <= max(values)
