"""Circuit breakers, one per upstream: closed, open, half-open.

Closed counts consecutive failures; at the threshold the breaker opens and callers are refused
at once until the reset timeout has passed. Then it is half-open: one trial request goes
through; success closes the breaker, failure opens it again for another reset timeout. The
clock is injectable so the state machine is tested without waiting.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Breaker", "BreakerBoard", "BreakerOpenError", "BreakerState"]


class BreakerState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class BreakerOpenError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("circuit open")
        self.retry_after = retry_after


@dataclass
class Breaker:
    failure_threshold: int
    reset_seconds: float
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[BreakerState], None] | None = None
    _state: BreakerState = BreakerState.CLOSED
    _failures: int = 0
    _opened_at: float = 0.0
    _trial_in_flight: bool = field(default=False, repr=False)

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self.clock() - self._opened_at >= self.reset_seconds
        ):
            self._set(BreakerState.HALF_OPEN)
            self._trial_in_flight = False
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial through (the reset timeout otherwise)."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self.reset_seconds - (self.clock() - self._opened_at))
        return self.reset_seconds

    def before_call(self) -> None:
        """Raise BreakerOpenError when the call must not go out."""
        state = self.state
        if state is BreakerState.OPEN:
            raise BreakerOpenError(self.reset_seconds - (self.clock() - self._opened_at))
        if state is BreakerState.HALF_OPEN:
            if self._trial_in_flight:
                raise BreakerOpenError(self.reset_seconds)
            self._trial_in_flight = True

    def release_trial(self) -> None:
        """Forget a half-open trial that ended without an outcome (no-op otherwise)."""
        self._trial_in_flight = False

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._trial_in_flight = False
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._opened_at = self.clock()
        self._failures = 0
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self.on_change is not None:
                self.on_change(state)


@dataclass
class BreakerBoard:
    """The breakers of all upstreams, created on first use."""

    failure_threshold: int
    reset_seconds: float
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[str, BreakerState], None] | None = None
    breakers: dict[str, Breaker] = field(default_factory=dict)

    def get(self, upstream: str) -> Breaker:
        breaker = self.breakers.get(upstream)
        if breaker is None:
            notify = self.on_change
            on_change: Callable[[BreakerState], None] | None = None
            if notify is not None:

                def on_change(state: BreakerState, upstream: str = upstream) -> None:
                    notify(upstream, state)

            breaker = Breaker(
                failure_threshold=self.failure_threshold,
                reset_seconds=self.reset_seconds,
                clock=self.clock,
                on_change=on_change,
            )
            self.breakers[upstream] = breaker
            if notify:
                notify(upstream, BreakerState.CLOSED)
        return breaker

    def states(self) -> dict[str, str]:
        return {u: b.state.label for u, b in self.breakers.items()}
