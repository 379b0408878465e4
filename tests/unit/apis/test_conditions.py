"""Condition helpers: transition times, the Ready/Reconciling/Stalled rules, kstatus."""

from __future__ import annotations

import datetime as dt

import pytest

from apis.conditions import (
    READY,
    RECONCILING,
    STALLED,
    KStatus,
    check_invariants,
    get_condition,
    kstatus,
    mark_ready,
    mark_reconciling,
    mark_stalled,
    set_condition,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_transition_time_moves_only_when_status_changes() -> None:
    conds = set_condition(
        [],
        type_=READY,
        status="False",
        reason="Creating",
        message="a",
        observed_generation=1,
        now=T0,
    )
    same = set_condition(
        conds,
        type_=READY,
        status="False",
        reason="Waiting",
        message="b",
        observed_generation=2,
        now=T1,
    )
    ready = get_condition(same, READY)
    assert ready is not None
    assert ready.last_transition_time == T0
    assert (ready.reason, ready.message, ready.observed_generation) == ("Waiting", "b", 2)
    flipped = set_condition(
        same, type_=READY, status="True", reason="Ready", message="", observed_generation=2, now=T1
    )
    flipped_ready = get_condition(flipped, READY)
    assert flipped_ready is not None
    assert flipped_ready.last_transition_time == T1


def test_mark_helpers_keep_the_invariants() -> None:
    conds = mark_reconciling([], reason="Creating", message="creating", generation=1, now=T0)
    assert [c.type for c in conds] == [READY, RECONCILING]
    assert get_condition(conds, READY).status == "Unknown"  # type: ignore[union-attr]
    assert check_invariants(generation=1, observed_generation=1, conditions=conds) == []

    conds = mark_stalled(conds, reason="SecretMissing", message="no s", generation=1, now=T1)
    assert [c.type for c in conds] == [READY, STALLED]
    assert get_condition(conds, READY).status == "False"  # type: ignore[union-attr]
    assert check_invariants(generation=1, observed_generation=1, conditions=conds) == []

    conds = mark_ready(conds, reason="Ready", message="ok", generation=1, now=T1)
    assert [c.type for c in conds] == [READY]
    assert check_invariants(generation=1, observed_generation=1, conditions=conds) == []


@pytest.mark.parametrize(
    ("generation", "observed", "build", "expected"),
    [
        (2, 1, "ready", KStatus.IN_PROGRESS),
        (1, 1, "ready", KStatus.CURRENT),
        (1, 1, "reconciling", KStatus.IN_PROGRESS),
        (1, 1, "stalled", KStatus.FAILED),
        (1, 1, "none", KStatus.CURRENT),
    ],
)
def test_kstatus(generation: int, observed: int, build: str, expected: KStatus) -> None:
    makers = {
        "ready": lambda: mark_ready([], reason="Ready", message="", generation=1, now=T0),
        "reconciling": lambda: mark_reconciling([], reason="X", message="", generation=1, now=T0),
        "stalled": lambda: mark_stalled([], reason="X", message="", generation=1, now=T0),
        "none": list,
    }
    conds = makers[build]()
    assert (
        kstatus(generation=generation, observed_generation=observed, conditions=conds) == expected
    )


def test_check_invariants_reports_each_violation() -> None:
    both = set_condition(
        mark_reconciling([], reason="A", message="", generation=1, now=T0),
        type_=STALLED,
        status="True",
        reason="B",
        message="",
        observed_generation=1,
        now=T0,
    )
    assert "Reconciling and Stalled are both True" in check_invariants(
        generation=1, observed_generation=1, conditions=both
    )
    assert "Ready condition is missing" in check_invariants(
        generation=1, observed_generation=1, conditions=[]
    )
    ready = mark_ready([], reason="Ready", message="", generation=2, now=T0)
    assert check_invariants(generation=3, observed_generation=2, conditions=ready) == []
    problems = check_invariants(generation=3, observed_generation=3, conditions=ready)
    assert any("Ready=True for generation 2 but observedGeneration is 3" in p for p in problems)
    problems = check_invariants(generation=2, observed_generation=3, conditions=ready)
    assert any("ahead of generation" in p for p in problems)
    assert any(
        "not an integer" in p
        for p in check_invariants(generation=2, observed_generation="2", conditions=ready)
    )
    false_stalled = set_condition(
        ready, type_=STALLED, status="False", reason="X", message="", observed_generation=2, now=T0
    )
    assert "Stalled is present with status False" in check_invariants(
        generation=2, observed_generation=2, conditions=false_stalled
    )
