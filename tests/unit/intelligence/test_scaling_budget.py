"""Cost budget: a reactive shadow beside the policy, and headroom paid from the savings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scaling_support import params_with

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
    startup_seconds=30.0,
    horizon_seconds=15.0,
)


def wandering_load(n: int, seed: int) -> np.ndarray:
    """A load that drifts over 50-400 with noise: the shadow scales both ways."""
    rng = np.random.default_rng(seed)
    level = np.exp(np.cumsum(rng.normal(0.0, 0.05, n)).clip(-1.4, 0.7)) * 200.0
    return level * rng.lognormal(0.0, 0.1, n)


def run(spec: ScalingParams, loads: np.ndarray) -> tuple[list[int], list[int], ScalingState]:
    """(the policy's counts, the shadow's counts, the final state) over `loads` one sync
    apart, instances ready at once."""
    state, current, ours, shadow = ScalingState(), 20, [], []
    for i, load in enumerate(loads):
        d = decide(Observation(NOW + i * STEP, current, float(load)), params=spec, state=state)
        state, current = d.state, d.desired
        ours.append(current)
        shadow.append(state.budget.shadow or 0)
    return ours, shadow, state


def test_the_shadow_is_hpa_on_the_same_metric() -> None:
    loads = wandering_load(600, seed=1)
    hpa, _, _ = run(params(predictive=False), loads)
    _, shadow, _ = run(params(cost_budget=1.0, cost_budget_cap=0.0, cost_budget_floor=0.0), loads)
    assert len(set(hpa)) > 10  # it scales both ways, through the scale-down window
    assert shadow == hpa


def test_the_shadow_syncs_as_hpa_does_when_the_policy_decides_more_often() -> None:
    loads = wandering_load(900, seed=2)  # one reading every 5 s
    hpa, _, _ = run(params(predictive=False), loads[::3])  # HPA looks every 15 s
    state, shadow = ScalingState(), []
    spec = params(cost_budget=1.0, cost_budget_cap=0.0, cost_budget_floor=0.0)
    for i, load in enumerate(loads):
        d = decide(Observation(NOW + i * 5.0, 20, float(load)), params=spec, state=state)
        state = d.state
        if i % 3 == 0:
            shadow.append(state.budget.shadow)
    assert shadow == hpa


@pytest.mark.parametrize("budget", [1.1, 1.25])
def test_instance_hours_approach_the_budget_times_the_reactive_rule(budget: float) -> None:
    loads = wandering_load(4000, seed=int(budget * 100))
    plain, shadow_plain, _ = run(params(cost_budget=1.0, cost_budget_cap=0.0), loads)
    ours, shadow, state = run(params(cost_budget=budget, cost_budget_step=0.05), loads)
    assert sum(plain[500:]) / sum(shadow_plain[500:]) < 1.02  # alone, it spends what HPA does
    assert sum(ours[500:]) / sum(shadow[500:]) == pytest.approx(budget, abs=0.03)
    assert 0 < state.budget.headroom < 0.5


def test_overspending_sheds_the_modes_margin_down_to_current_load() -> None:
    # every sync the load doubles then halves: the policy is asked for more than it had, but
    # a budget below 1 cannot be met by a policy that never goes below current load
    spec = params(cost_budget=0.5, cost_budget_step=0.1)
    state, current = ScalingState(), 10
    for i in range(40):
        load = 100.0 if i % 2 == 0 else 200.0
        d = decide(Observation(NOW + i * STEP, current, load), params=spec, state=state)
        state, current = d.state, d.desired
    assert state.budget.headroom == pytest.approx(-0.5)  # at the floor
    assert d.evidence["demand"] == pytest.approx(200.0)  # current load still bounds it
    assert "cost budget 0.5x reactive" in d.message


def test_savings_raise_the_demand_by_the_headroom() -> None:
    spec = params(cost_budget=1.2, cost_budget_step=0.1)
    d = decide(Observation(NOW, 10, 100.0), params=spec, state=ScalingState())
    for i in range(1, 6):  # steady at the shadow's count: 20 % under budget every sync
        d = decide(Observation(NOW + i * STEP, 10, 100.0), params=spec, state=d.state)
    assert d.state.budget.shadow == 10
    assert d.state.budget.headroom == pytest.approx(5 * 0.1 * 0.2)
    assert d.evidence["costBudgetHeadroom"] == pytest.approx(0.1)
    assert d.evidence["demand"] == pytest.approx(110.0)
    assert d.evidence["reactiveInstances"] == 10.0


def test_off_by_default_and_the_state_round_trips() -> None:
    loads = wandering_load(300, seed=3)
    _, _, plain = run(params(), loads)
    assert plain.budget.shadow is None
    assert plain.budget.headroom == 0.0
    assert "budget" not in plain.to_dict()  # nothing added to a status that does not use it
    assert "shadow" not in plain.to_dict()
    _, _, state = run(params(cost_budget=1.1), loads)
    again = ScalingState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert state.shadow is not None
    assert state.shadow.shadow is None  # one level deep
    assert state.shadow.recommendations  # the shadow's own scale-down window


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cost_budget", 0.0),
        ("cost_budget", float("nan")),
        ("cost_budget_step", 0.0),
        ("cost_budget_cap", -0.1),
        ("cost_budget_floor", 0.1),
        ("cost_budget_floor", -1.0),
    ],
)
def test_bad_budget_settings_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        params(**{field: value})
