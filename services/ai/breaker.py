"""Per-provider cooldown, as LiteLLM's router cools a deployment down.

A provider is *available* until it fails ``failures`` times in a row, or answers 429; then it
*cools down* (is skipped) for ``cooldown`` seconds, or for the 429's ``Retry-After`` when it
gave one (capped). After the cooldown one trial call goes through (*half-open*): success makes
it available again, failure starts another cooldown. The clock is injectable, so the states
are tested without waiting. (The gateway's breaker lives in ``services/gateway``, which a
service may not import; this one also honours ``Retry-After``.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Cooldown"]


@dataclass
class Cooldown:
    failures: int
    cooldown: float
    max_retry_after: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _streak: int = 0
    _until: float = 0.0
    _cooling: bool = False
    _trial: bool = False

    @property
    def state(self) -> str:
        """``available``, ``cooling`` or ``half_open``."""
        if not self._cooling:
            return "available"
        return "cooling" if self.clock() < self._until else "half_open"

    def retry_in(self) -> float:
        """Seconds until the provider may be tried again (0 when it may now)."""
        return max(0.0, self._until - self.clock()) if self._cooling else 0.0

    def admit(self) -> bool:
        """May a call go out now? A half-open provider admits one trial at a time."""
        state = self.state
        if state == "available":
            return True
        if state == "cooling" or self._trial:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        self._streak = 0
        self._cooling = False
        self._trial = False

    def failed(self, *, rate_limited: bool = False, retry_after: float | None = None) -> None:
        """Count a failure; a 429 cools down at once, for its Retry-After when given."""
        self._trial = False
        self._streak += 1
        if self._cooling or rate_limited or self._streak >= self.failures:
            wait = self.cooldown
            if retry_after is not None:
                wait = min(max(retry_after, 0.0), self.max_retry_after)
            self._cooling = True
            self._until = self.clock() + wait
            self._streak = 0

    def released(self) -> None:
        """A trial ended without an outcome (the caller went away): let another one try."""
        self._trial = False
