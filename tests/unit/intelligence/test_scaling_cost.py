"""What a `decide()` call copies: its state once, not once per step.

`decide()` used to copy its frozen `ScalingState` after each step (pruning, the estimators,
stabilization, the scale event) and every open prediction of the calibration on every call:
about fourteen copies a call, a third of its time (docs/intelligence/scaling.md, "Cost").
These tests count the copies, and check that the mutable working values that replaced them
never leak into the state a caller holds.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

import pytest

from intelligence.scaling import Decision, Observation, ScalingParams, ScalingState, decide
from intelligence.scaling._evolve import evolve
from intelligence.scaling.calibration import Pending

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0


def _params(**overrides: Any) -> ScalingParams:
    """The cost bench's policy: calibration, miss feedback, the start-up hold and the
    dispersion headroom on (every estimator keeps state)."""
    settings: dict[str, Any] = {
        "target_per_instance": 10.0,
        "max_instances": 1000,
        "horizon_seconds": 15.0,
        "capacity_per_instance": 14.0,
        "target_under_provisioning": 0.05,
        "miss_feedback_target": 0.01,
        "scale_down_window_startups": 2.0,
        "dispersion_sigmas": 2.0,
        "dispersion_window_seconds": 15.0,
        "dispersion_sample_seconds": None,
    }
    return ScalingParams(**(settings | overrides))


def _load(i: int) -> float:
    """A load that swings (so the policy scales both ways) with a burst every 37 steps."""
    return 60.0 + 40.0 * math.sin(i / 20.0) + (150.0 if i % 37 == 0 else 0.0)


def _run(params: ScalingParams, steps: int) -> tuple[ScalingState, int, int]:
    """The state, the instance count and the next step after `steps` decisions."""
    state, current = ScalingState(), 6
    for i in range(steps):
        d = decide(Observation(T0 + 15.0 * i, current, _load(i)), params=params, state=state)
        state, current = d.state, d.desired
    return state, current, steps


def _built(cls: type, call: Callable[[], Decision]) -> tuple[int, Decision]:
    """How many instances of `cls` `call` builds, by its constructor, `dataclasses.replace`
    or `evolve` (the ways this package makes them), and what it returned."""
    counted = {
        evolve.__code__: "obj",
        dataclasses.replace.__code__: "obj",
        cls.__init__.__code__: "self",  # type: ignore[misc]
    }
    built = 0

    def profile(frame: FrameType, event: str, _: Any) -> None:
        nonlocal built
        name = counted.get(frame.f_code)
        if event == "call" and name is not None and type(frame.f_locals.get(name)) is cls:
            built += 1

    sys.setprofile(profile)
    try:
        result = call()
    finally:
        sys.setprofile(None)
    return built, result


def test_a_decision_builds_its_scaling_state_once() -> None:
    params = _params()
    state, current, i = _run(params, 300)
    moved = 0
    for step in range(i, i + 60):
        observed = Observation(T0 + 15.0 * step, current, _load(step))
        built, d = _built(ScalingState, partial(decide, observed, params=params, state=state))
        assert built == 1, f"step {step}: {built} ScalingStates built"
        moved += d.desired != current
        state, current = d.state, d.desired
    assert moved >= 3  # calls that recorded a scale event (a copy of their own before) counted


def test_with_the_cost_budget_the_shadow_builds_its_own_once() -> None:
    params = _params(cost_budget=1.03)
    state, current, i = _run(params, 300)
    for step in range(i, i + 20):  # the reactive shadow steps every 15 s: every call here
        observed = Observation(T0 + 15.0 * step, current, _load(step))
        built, d = _built(ScalingState, partial(decide, observed, params=params, state=state))
        assert built == 2, f"step {step}: {built} ScalingStates built"
        assert d.state.shadow is not None
        state, current = d.state, d.desired


def test_open_predictions_are_copied_only_when_the_load_is_a_new_peak() -> None:
    params = _params(horizon_seconds=120.0)  # predictions open for 150 s: ten at a time
    state, current, i = _run(params, 300)
    now, lead = T0 + 15.0 * i, params.startup_seconds + params.horizon_seconds
    still = [p for p in state.calibration.pending if now < p.opened + lead]
    seen = [p for p in still if p.peak >= 0.0]  # a load of 0 is no new peak for these
    assert len(seen) >= 2
    observed = Observation(now, current, 0.0)
    built, d = _built(Pending, partial(decide, observed, params=params, state=state))
    assert built == 1 + len(still) - len(seen)  # the one opened now, and first sightings
    pending = d.state.calibration.pending
    assert pending[-1].opened == now
    kept = {p.opened: p for p in pending}
    for p in seen:
        assert kept[p.opened] is p  # not copied: still the caller's object
    for p in still:
        assert kept[p.opened].peak == max(p.peak, 0.0)


@pytest.mark.parametrize("extra", [{}, {"cost_budget": 1.03}])
def test_a_decision_leaves_the_state_it_was_given_alone(extra: dict[str, Any]) -> None:
    params = _params(**extra)
    state, current, i = _run(params, 300)
    before = repr(state)
    observed = Observation(T0 + 15.0 * i, current, _load(i) * 2)
    first = decide(observed, params=params, state=state)
    again = decide(observed, params=params, state=state)
    assert repr(state) == before
    assert repr(again) == repr(first)  # the same state decides the same way every time
    assert first.state != state
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.state.recommendations = ()  # type: ignore[misc]
