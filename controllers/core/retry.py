"""The one retry policy of the controllers: exponential backoff with equal jitter, bounded by
attempts and by total time.

Built on tenacity. The same policy gives

- `delay(attempt)`: how long to wait before retry number `attempt` (the resync scheduler's
  backoff after a failed converge),
- `retrying(...)`: a tenacity `AsyncRetrying` for a provider's own calls, waiting with the
  injected `sleep` (tests pass a recording sleep; nothing waits behind its back),
- `google_retry(...)`: google-api-core's `AsyncRetry` with the same bounds, for the Cloud Run
  client (the client library's own retry, not turned off).

Equal jitter: attempt n (from 0) waits between base/2 and base, base = min(maximum,
initial * multiplier**n), so waits grow while callers still spread apart.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity

if TYPE_CHECKING:
    from google.api_core.retry import AsyncRetry

__all__ = ["RetryPolicy", "Sleep"]

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff bounds; see the module docstring for the formula."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    deadline: float = 120.0
    """Seconds after the first attempt past which no retry is started."""
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                f"RetryPolicy: initial ({self.initial}) must be > 0 and <= maximum ({self.maximum})"
            )
        if self.multiplier < 1 or self.max_attempts < 1 or self.deadline <= 0:
            raise ValueError(
                "RetryPolicy: multiplier must be >= 1, max_attempts >= 1 and deadline > 0"
            )

    def base(self, attempt: int) -> float:
        """The upper bound of the wait after failed attempt `attempt` (0-based). The exponent
        stops growing once the wait is at `maximum` (a float power overflows past ~1,000
        doublings: hours into a deletion that waits)."""
        if self.initial >= self.maximum or self.multiplier == 1 or attempt <= 0:
            return float(min(self.maximum, self.initial))
        at_maximum = math.ceil(math.log(self.maximum / self.initial, self.multiplier))
        return float(min(self.maximum, self.initial * self.multiplier ** min(attempt, at_maximum)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based): [base/2, base]."""
        base = self.base(attempt)
        return base / 2 + (rng or random).uniform(0, base / 2)

    def wait(self) -> tenacity.wait.wait_base:
        """The tenacity wait strategy of this policy (attempt_number 1 is the first retry)."""
        half = self.initial / 2
        return tenacity.wait_exponential(
            multiplier=half, max=self.maximum / 2, exp_base=self.multiplier
        ) + tenacity.wait_random_exponential(
            multiplier=half, max=self.maximum / 2, exp_base=self.multiplier
        )

    def retrying(
        self,
        *,
        retry_if: Callable[[BaseException], bool],
        sleep: Sleep,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> tenacity.AsyncRetrying:
        """tenacity's AsyncRetrying with these bounds, retrying errors for which `retry_if` is
        true and waiting with `sleep`; the last error is re-raised."""
        return tenacity.AsyncRetrying(
            sleep=sleep,
            stop=tenacity.stop_after_attempt(self.max_attempts)
            | tenacity.stop_before_delay(self.deadline),
            wait=self.wait(),
            retry=tenacity.retry_if_exception(retry_if),
            before_sleep=before_sleep,
            reraise=True,
        )

    def google_retry(
        self, *, predicate: Callable[[Exception], bool], on_error: Callable[[Exception], Any]
    ) -> AsyncRetry:
        """google-api-core's AsyncRetry with these bounds (its own full-jitter waits).

        api-core has no attempt limit: `on_error` is called with every retryable error and
        may raise to stop early (the Cloud Run provider counts attempts there). Imported here:
        only an operator with Cloud Run objects loads the Google client libraries."""
        from google.api_core.retry import AsyncRetry

        return AsyncRetry(
            predicate=predicate,
            initial=self.initial,
            maximum=self.maximum,
            multiplier=self.multiplier,
            timeout=self.deadline,
            on_error=on_error,
        )
