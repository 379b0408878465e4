"""Miss feedback (headroom moved by the policy's own visible misses) and start-up hysteresis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scaling_support import FREE, params_with

from intelligence.scaling import (
    Observation,
    ScalingParams,
    ScalingState,
    decide,
)

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0
STEP = 15.0


params = params_with(
    target_per_instance=10.0,
    max_instances=10_000,
    predictive=False,
    behavior=FREE,
    startup_seconds=30.0,
    horizon_seconds=15.0,
)


def run(spec: ScalingParams, loads: np.ndarray) -> tuple[np.ndarray, ScalingState]:
    """Misses (load above what the instances serve) of a policy whose instances are ready at
    once, over `loads` one decision apart."""
    state, current, missed = ScalingState(), 10, []
    for i, load in enumerate(loads):
        missed.append(load > current * spec.target_per_instance)
        d = decide(Observation(NOW + i * STEP, current, float(load)), params=spec, state=state)
        state, current = d.state, d.desired
    return np.array(missed), state


def noisy_load(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(mean=np.log(200.0), sigma=0.25, size=n)


@pytest.mark.parametrize("target", [0.05, 0.2])
def test_the_miss_rate_approaches_the_target(target: float) -> None:
    loads = noisy_load(3000, seed=int(target * 100))
    plain, _ = run(params(), loads)
    missed, state = run(params(miss_feedback_target=target, miss_feedback_cap=2.0), loads)
    rate = missed[1000:].mean()
    assert plain[1000:].mean() > 0.4  # scaling on the last load misses about half the time
    assert target * 0.6 < rate < target * 1.5, rate
    assert state.feedback.headroom > 0


def test_misses_raise_the_headroom_and_a_run_of_hits_lowers_it() -> None:
    spec = params(miss_feedback_target=0.1, miss_feedback_step=0.1)
    state = ScalingState()
    d = decide(Observation(NOW, 10, 100.0), params=spec, state=state)
    for i in range(1, 5):  # the load doubles each time: each decision misses
        d = decide(Observation(NOW + i * STEP, d.desired, 100.0 * 2**i), params=spec, state=d.state)
    raised = d.state.feedback.headroom
    assert raised == pytest.approx(4 * 0.1 * 0.9)
    assert d.desired == int(np.ceil(1600 * (1 + raised) / 10 - 1e-9))
    assert d.evidence["missFeedbackHeadroom"] == pytest.approx(raised)
    assert "miss feedback" in d.message
    for i in range(5, 200):  # steady load well inside capacity
        d = decide(Observation(NOW + i * STEP, d.desired, 1600.0), params=spec, state=d.state)
    assert d.state.feedback.headroom == 0.0
    assert d.desired == 160


def test_the_headroom_stays_within_the_cap_and_the_state_round_trips() -> None:
    spec = params(miss_feedback_target=0.01, miss_feedback_step=0.5, miss_feedback_cap=0.3)
    missed, state = run(spec, 100.0 * 1.5 ** np.arange(15))  # grows faster than 1.3x
    assert missed[1:].all()
    assert state.feedback.headroom == pytest.approx(0.3)
    again = ScalingState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.feedback == state.feedback


def test_a_negative_floor_sheds_part_of_the_envelope_while_nothing_is_missed() -> None:
    def last_decision(**kw: object) -> tuple[int, float]:
        spec = params(predictive=True, **kw)
        state, current = ScalingState(), 10
        for i in range(400):
            now = NOW + i * STEP
            times = now - np.arange(240)[::-1] * STEP
            values = np.where(np.arange(240) % 2 == 0, 100.0, 300.0)  # envelope: the peak
            observed = Observation(now, current, 100.0, recent_load=(times, values))
            d = decide(observed, params=spec, state=state)
            state, current = d.state, d.desired
        return current, state.feedback.headroom

    assert last_decision() == (30, 0.0)
    assert last_decision(miss_feedback_target=0.05, miss_feedback_step=0.2) == (30, 0.0)
    shed, headroom = last_decision(
        miss_feedback_target=0.05, miss_feedback_step=0.2, miss_feedback_floor=-0.3
    )
    assert headroom == pytest.approx(-0.3)
    assert shed == 21  # 300 x 0.7 / 10, still above current load's 10


def test_scale_down_waits_for_the_startup_multiple() -> None:
    spec = params(scale_down_window_startups=2.0)  # 2 x (30 s + 15 s) = 90 s
    state, current, counts = ScalingState(), 100, []
    for i in range(20):
        load = 1000.0 if i < 4 else 100.0
        d = decide(Observation(NOW + i * STEP, current, load), params=spec, state=state)
        state, current = d.state, d.desired
        counts.append(current)
    drop = counts.index(10)
    assert counts[3] == 100
    assert drop > 4
    assert (drop - 3) * STEP >= 90  # the last 100-instance recommendation was at step 3
    assert (drop - 3) * STEP <= 90 + STEP


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("miss_feedback_target", 0.0),
        ("miss_feedback_target", 1.0),
        ("miss_feedback_step", 0.0),
        ("miss_feedback_cap", -0.1),
        ("miss_feedback_floor", -1.0),
        ("miss_feedback_floor", 0.1),
        ("scale_down_window_startups", -1.0),
    ],
)
def test_bad_feedback_parameters_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        params(**{field: value})
