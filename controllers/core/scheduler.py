"""One resync scheduler for every kind: each object's next full converge, run when due.

A converge reports when the object should be checked again (the resync period with jitter
when it is healthy, sooner while it is not, the retry policy's backoff after a failure); the
scheduler keeps one due time per object and a loop that starts the due checks. Checks run
concurrently, at most `concurrency` at once, each bounded by `deadline` seconds: one slow object
(a Cloud Run operation that takes a minute) never delays another's check. A check that fails or
overruns is retried with backoff. The schedule lives in memory: after a restart every object is
converged anyway. It is one loop, not a timer per object (a task each costs memory at thousands):
due times are kept in a heap (a replaced or forgotten time stays in it until it comes up, and is
skipped then), and the loop sleeps until the earliest one (at most `tick`), so a check starts
when it is due, not up to a tick later: a thousand ScalingPolicies on a 30 s interval are due
every 30 ms, each on its own slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controllers.core.peering import ActivityGate
from controllers.core.retry import RetryPolicy, Sleep

__all__ = ["ObjectKey", "ResyncScheduler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectKey:
    """Which object of a kind: namespace, name and uid (a recreated object is another one)."""

    kind: str
    namespace: str | None
    name: str
    uid: str


Check = Callable[[ObjectKey], Awaitable[object]]


class ResyncScheduler:
    """Due times per object and the loop that starts the due checks."""

    def __init__(
        self,
        check: Check,
        *,
        concurrency: int = 16,
        deadline: float = 180.0,
        tick: float = 1.0,
        backoff: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        gate: ActivityGate | None = None,
    ) -> None:
        if concurrency < 1 or deadline <= 0 or tick <= 0:
            raise ValueError("ResyncScheduler: concurrency >= 1, deadline > 0 and tick > 0")
        self._check = check
        self._limit = asyncio.Semaphore(concurrency)
        self._deadline = deadline
        self._tick = tick
        self._backoff = backoff or RetryPolicy(initial=2.0, maximum=300.0)
        self._clock = clock
        self._sleep = sleep
        self._due: dict[str, tuple[float, ObjectKey]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._failures: dict[str, int] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        self.gate = gate or ActivityGate()
        """While paused (another replica acts), no check starts; due checks wait for resume."""

    # ---- bookkeeping -------------------------------------------------------------------------

    def schedule(self, key: ObjectKey, delay: float) -> None:
        """Check `key` again in `delay` seconds (replacing any earlier due time)."""
        at = self._clock() + delay
        self._due[key.uid] = (at, key)
        heapq.heappush(self._heap, (at, next(self._seq), key.uid))
        if len(self._heap) > 2 * len(self._due) + 64:  # mostly replaced times: compact
            self._heap = [(a, next(self._seq), uid) for uid, (a, _) in self._due.items()]
            heapq.heapify(self._heap)

    def succeeded(self, key: ObjectKey, delay: float) -> None:
        """A converge went through: forget past failures, check again in `delay` seconds."""
        self._failures.pop(key.uid, None)
        self.schedule(key, delay)

    def failed(self, key: ObjectKey, *, at_most: float | None = None) -> float:
        """A converge failed: check again after the policy's backoff, or `at_most` seconds
        when that is sooner; returns the delay."""
        attempt = self._failures.get(key.uid, 0)
        self._failures[key.uid] = attempt + 1
        delay = self._backoff.delay(attempt)
        if at_most is not None:
            delay = max(0.0, min(delay, at_most))
        self.schedule(key, delay)
        return delay

    def forget(self, uid: str) -> None:
        """The object is gone: drop everything kept for it."""
        self._due.pop(uid, None)
        self._failures.pop(uid, None)

    def due_in(self, uid: str) -> float | None:
        """Seconds until the object's next check (None when none is scheduled)."""
        entry = self._due.get(uid)
        return None if entry is None else entry[0] - self._clock()

    def __len__(self) -> int:
        """Objects with a scheduled check."""
        return len(self._due)

    # ---- running checks ----------------------------------------------------------------------

    def start_due(self) -> list[ObjectKey]:
        """Start the checks that are due (skipping objects whose check still runs); none while
        the gate is paused."""
        if not self.gate.active:
            return []
        now = self._clock()
        started = []
        while self._heap and self._heap[0][0] <= now:
            at, _, uid = heapq.heappop(self._heap)
            due = self._due.get(uid)
            if due is None or due[0] != at:
                continue  # replaced or forgotten since
            if uid in self._running:
                continue  # still due: back in the heap when its running check finishes
            key = due[1]
            del self._due[uid]
            task = asyncio.create_task(self._run(key), name=f"resync {key.kind} {key.uid}")
            self._running[uid] = task
            started.append(key)
        return started

    def next_due(self) -> float | None:
        """Seconds until the earliest due time kept (None when none is): when to look again."""
        return self._heap[0][0] - self._clock() if self._heap else None

    async def _run(self, key: ObjectKey) -> None:
        try:
            async with self._limit:
                await asyncio.wait_for(self._check(key), self._deadline)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            delay = self.failed(key)
            log.warning(
                "resync of %s %s/%s took over %ss; retrying in %.1fs",
                key.kind, key.namespace, key.name, self._deadline, delay,
            )  # fmt: skip
        except Exception:
            delay = self.failed(key)
            log.exception(
                "resync of %s %s/%s failed; retrying in %.1fs",
                key.kind, key.namespace, key.name, delay,
            )  # fmt: skip
        finally:
            self._running.pop(key.uid, None)
            due = self._due.get(key.uid)
            if due is not None:  # it came due while it ran (start_due passed it over)
                heapq.heappush(self._heap, (due[0], next(self._seq), key.uid))
                if due[0] <= self._clock():
                    self.start_due()  # now, not at the loop's next tick

    async def idle(self) -> None:
        """Wait until every started check has finished (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def start(self) -> None:
        """Start the loop that starts due checks every `tick` seconds."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._forever(), name="resync-scheduler")

    async def _forever(self) -> None:
        while True:
            # start_due leaves nothing due behind (paused: nothing starts, look again at a tick)
            ahead = self.next_due() if self.gate.active else None
            await self._sleep(self._tick if ahead is None else min(self._tick, max(ahead, 0.001)))
            self.start_due()

    async def close(self) -> None:
        """Stop the loop and cancel running checks."""
        tasks = [t for t in (self._loop, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None
        self._running.clear()
