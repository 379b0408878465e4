"""Observed under-provisioning: the share of time the load was above what was serving."""

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
SERVES = 10.0

params = params_with(target_per_instance=10.0, max_instances=100, predictive=False, behavior=FREE)


def replay(steps: Sequence[tuple[float, float, int]], startup: float = 30.0) -> Exceedance:
    """The tracker after decisions at (offset from NOW, load, instances asked for)."""
    state = Exceedance()
    for offset, load, current in steps:
        state = observe_exceedance(
            state, now=NOW + offset, load=load, current=current, serves=SERVES, startup=startup
        )
    return state


def test_a_miss_counts_for_the_time_until_the_next_decision() -> None:
    # 2 instances serve 20: above it for 60 s, then below for 240 s. A fifth of the time
    # (the half-life is hours, so five minutes are weighted almost evenly)
    state = replay([(0, 25, 2), (60, 15, 2), (300, 15, 2)])
    assert state.share == pytest.approx(0.2, abs=0.01)
    assert state.seconds == 300
    # the miss at the last decision is not counted yet: no time has passed since it
    assert replay([(0, 15, 2), (300, 25, 2)]).share == 0.0
    assert replay([(0, 15, 2), (300, 25, 2), (315, 25, 2)]).share == pytest.approx(
        15 / 315, rel=0.01
    )


def test_instances_asked_for_serve_only_a_start_up_later() -> None:
    # at 0 the load needs 3 instances and 2 run; the third is asked for at 0 (the count reads
    # 3 from 15 s on) and serves a start-up (60 s) after it was asked for
    steps = [(t, 25.0, 2 if t == 0 else 3) for t in range(0, 181, 15)]
    state = replay(steps, startup=60.0)
    # missed from 0 to 60 (2 serving), not after: a third of 180 s
    assert state.share == pytest.approx(60 / 180, rel=0.02)
    # with the instances counted as serving at once, only the first 15 s were short
    assert replay(steps, startup=0.0).share == pytest.approx(15 / 180, rel=0.02)


def test_a_decrease_takes_the_newest_additions_first() -> None:
    # 2 -> 5 asked for at 0 (3 starting), 5 -> 3 seen at 30: one addition still starts
    state = replay([(0, 0.0, 2), (15, 0.0, 5), (30, 0.0, 3)], startup=60.0)
    assert state.pending == ((NOW, 1),)  # stamped at the decision that asked for it
    assert replay([(0, 0.0, 2), (15, 0.0, 5), (30, 0.0, 1)], startup=60.0).pending == ()
    # so at 45 two of the three serve (20 < 25, a miss); at 80 all three do (30)
    later = replay([(0, 0.0, 2), (15, 0.0, 5), (30, 25.0, 3), (45, 25.0, 3)], startup=60.0)
    assert later.missed
    assert not replay(
        [(0, 0.0, 2), (15, 0.0, 5), (30, 25.0, 3), (80, 25.0, 3)], startup=60.0
    ).missed


def test_the_first_interval_is_not_averaged_with_time_never_seen() -> None:
    assert replay([(0, 25, 2), (15, 25, 2)]).share == pytest.approx(1.0)
    assert replay([(0, 15, 2), (15, 15, 2)]).share == 0.0


def test_old_misses_fade_with_the_half_life() -> None:
    end = 60 * 3600  # short for 60 hours, then served for one half-life
    steps = [(float(t), 25.0, 2) for t in range(0, end, 300)]
    steps += [(float(end + t), 15.0, 2) for t in range(0, int(HALF_LIFE_SECONDS) + 1, 300)]
    state = replay(steps)
    assert state.share == pytest.approx(0.5, abs=0.02)
    assert state.seconds == MAX_SECONDS  # the time seen is bounded


def test_a_gap_counts_as_at_most_max_gap() -> None:
    gapped = replay([(0, 25, 2), (3600, 15, 2), (3600 + MAX_GAP, 15, 2)])
    assert gapped.seconds == 2 * MAX_GAP
    assert gapped.share == pytest.approx(0.5, abs=0.01)  # the newer half weighs 1 % more


def test_a_decision_at_or_before_the_last_changes_nothing() -> None:
    state = replay([(0, 25, 2), (60, 15, 2)])
    assert replay([(0, 25, 2), (60, 15, 2), (30, 25, 5)]) == state


def test_the_state_round_trips_and_bad_input_starts_afresh() -> None:
    state = replay([(0, 25, 2), (15, 25, 4), (30, 15, 4)], startup=60.0)
    assert state.pending
    assert Exceedance.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    for bad in (
        {"share": "x", "seconds": 10},
        {"share": math.nan, "seconds": 10},
        {"share": 0.5},
        {},
    ):
        assert Exceedance.from_dict(bad) == Exceedance()
    clipped = Exceedance.from_dict(
        {"share": 3.0, "seconds": 1e12, "last": math.inf, "instances": -1, "pending": [["x"]]}
    )
    assert (clipped.share, clipped.seconds, clipped.last) == (1.0, MAX_SECONDS, None)
    assert (clipped.instances, clipped.pending) == (None, ())


@pytest.mark.parametrize("capacity", [None, 15.0])
def test_decide_reports_the_share_of_time_above_what_serves(capacity: float | None) -> None:
    spec = params(capacity_per_instance=capacity, startup_seconds=30.0)
    serves = capacity or spec.target_per_instance
    rng = np.random.default_rng(7)
    state, short, seconds = ScalingState(), 0.0, 0.0
    previous_miss = False
    for i in range(400):
        current = 5  # the count is not changed here (a dry run's target)
        load = float(rng.uniform(0.5, 1.2) * current * serves)
        d = decide(Observation(NOW + 15 * i, current, load), params=spec, state=state)
        if i:
            short += 15 * previous_miss
            seconds += 15
        previous_miss = load > current * serves
        state = d.state
    assert d.evidence["observedSeconds"] == seconds
    # the half-life is hours: 100 minutes are weighted within 1 % of evenly
    assert d.evidence["observedUnderProvisioning"] == pytest.approx(short / seconds, rel=0.01)
    assert 0.15 < short / seconds < 0.4
    assert json.loads(json.dumps(state.to_dict()))["exceedance"]["seconds"] == seconds
