"""Unit tests of the circuit breaker state machine, with a fake clock."""

from __future__ import annotations

import pytest

from services.gateway.breaker import Breaker, BreakerBoard, BreakerOpenError, BreakerState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_full_cycle() -> None:
    clock = Clock()
    changes: list[BreakerState] = []
    b = Breaker(failure_threshold=3, reset_seconds=10, clock=clock, on_change=changes.append)
    for _ in range(2):
        b.before_call()
        b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_success()  # resets the count
    for _ in range(3):
        b.before_call()
        b.record_failure()
    assert b.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(BreakerOpenError) as info:
        b.before_call()
    assert info.value.retry_after == pytest.approx(6)
    clock.now += 6
    assert b.state is BreakerState.HALF_OPEN
    b.before_call()  # the one trial
    with pytest.raises(BreakerOpenError):
        b.before_call()  # no second trial while the first is in flight
    b.record_failure()
    assert b.state is BreakerState.OPEN  # a failed trial re-opens at once
    clock.now += 10
    b.before_call()
    b.record_success()
    assert b.state is BreakerState.CLOSED
    b.before_call()
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_board_keeps_one_breaker_per_upstream_and_reports_states() -> None:
    seen: list[tuple[str, BreakerState]] = []
    board = BreakerBoard(
        failure_threshold=1,
        reset_seconds=5,
        clock=Clock(),
        on_change=lambda u, s: seen.append((u, s)),
    )
    a = board.get("http://a")
    assert board.get("http://a") is a
    board.get("http://b").record_failure()
    assert board.states() == {"http://a": "closed", "http://b": "open"}
    assert seen == [
        ("http://a", BreakerState.CLOSED),
        ("http://b", BreakerState.CLOSED),
        ("http://b", BreakerState.OPEN),
    ]


def test_a_trial_that_ends_without_an_outcome_is_released() -> None:
    clock = Clock()
    b = Breaker(failure_threshold=1, reset_seconds=5, clock=clock)
    b.record_failure()
    assert b.retry_after() == pytest.approx(5)
    clock.now += 2
    assert b.retry_after() == pytest.approx(3)
    clock.now += 3
    b.before_call()  # the trial, which then ends early (say, a 413)
    b.release_trial()
    b.before_call()  # a new trial may go
    assert b.state is BreakerState.HALF_OPEN
