"""Observed under-provisioning: the share of time the load was above what the policy asked for."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
from scaling_support import FREE, params_with

from intelligence.scaling import Observation, ScalingState, decide
from intelligence.scaling.exceedance import (
    HALF_LIFE_SECONDS,
    MAX_GAP,
    MAX_SECONDS,
    Exceedance,
    observe_exceedance,
)

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0

params = params_with(target_per_instance=10.0, max_instances=100, predictive=False, behavior=FREE)


def replay(steps: Sequence[tuple[float, bool]]) -> Exceedance:
    """The tracker after decisions at the given offsets from NOW, each with its miss."""
    state = Exceedance()
    for offset, missed in steps:
        state = observe_exceedance(state, now=NOW + offset, missed=missed)
    return state


def test_a_miss_counts_for_the_time_until_the_next_decision() -> None:
    # missed for 60 s, then served for 240 s: a fifth of the time (the half-life is hours,
    # so five minutes are weighted almost evenly)
    state = replay([(0, True), (60, False), (300, False)])
    assert state.share == pytest.approx(0.2, abs=0.01)
    assert state.seconds == 300
    # the miss at the last decision has not been counted yet: no time has passed since it
    assert replay([(0, False), (300, True)]).share == 0.0
    assert replay([(0, False), (300, True), (315, True)]).share == pytest.approx(15 / 315, 1e-2)


def test_the_first_interval_is_not_averaged_with_time_never_seen() -> None:
    assert replay([(0, True), (15, True)]).share == pytest.approx(1.0)
    assert replay([(0, False), (15, False)]).share == 0.0


def test_old_misses_fade_with_the_half_life() -> None:
    steps = [(t, True) for t in range(0, 60 * 3600, 300)]  # misses for 60 hours
    steps += [(steps[-1][0] + 300 + t, False) for t in range(0, int(HALF_LIFE_SECONDS), 300)]
    state = replay(steps)
    assert state.share == pytest.approx(0.5, abs=0.02)
    assert state.seconds == MAX_SECONDS  # the time seen is bounded


def test_a_gap_counts_as_at_most_max_gap() -> None:
    gapped = replay([(0, True), (3600, False), (3600 + MAX_GAP, False)])
    assert gapped.seconds == 2 * MAX_GAP
    assert gapped.share == pytest.approx(0.5, abs=0.01)  # the newer half weighs 1 % more


def test_a_decision_at_or_before_the_last_changes_no_share() -> None:
    state = replay([(0, True), (60, False)])
    again = observe_exceedance(state, now=NOW + 30, missed=True)
    assert (again.share, again.seconds, again.last) == (state.share, state.seconds, state.last)


def test_the_state_round_trips_and_bad_input_starts_afresh() -> None:
    state = replay([(0, True), (60, False), (90, True)])
    assert Exceedance.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    for bad in (
        {"share": "x", "seconds": 10},
        {"share": math.nan, "seconds": 10},
        {"share": 0.5},
        {},
    ):
        assert Exceedance.from_dict(bad) == Exceedance()
    clipped = Exceedance.from_dict({"share": 3.0, "seconds": 1e12, "last": math.inf})
    assert (clipped.share, clipped.seconds, clipped.last) == (1.0, MAX_SECONDS, None)


@pytest.mark.parametrize("capacity", [None, 15.0])
def test_decide_reports_the_share_of_time_above_what_is_asked_for(capacity: float | None) -> None:
    spec = params(capacity_per_instance=capacity)
    serves = capacity or spec.target_per_instance
    rng = np.random.default_rng(7)
    state, expected, seconds = ScalingState(), 0.0, 0.0
    previous_miss = False
    for i in range(400):
        current = 5  # a target whose instances are not changed by the policy (dry run)
        load = float(rng.uniform(0.5, 1.2) * current * serves)
        d = decide(Observation(NOW + 15 * i, current, load), params=spec, state=state)
        if i:
            expected += 15 * previous_miss
            seconds += 15
        previous_miss = load > current * serves
        state = d.state
    assert d.evidence["observedSeconds"] == seconds
    # the half-life is hours: 100 minutes are weighted within 1 % of evenly
    assert d.evidence["observedUnderProvisioning"] == pytest.approx(expected / seconds, rel=0.01)
    assert 0.15 < expected / seconds < 0.4
    assert json.loads(json.dumps(state.to_dict()))["exceedance"]["seconds"] == seconds
