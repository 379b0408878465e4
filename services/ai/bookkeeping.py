"""The writes an answer does not wait for: the ledger, the cache entry and cache statistics.

The router answers first and writes after, from a task it tracks: a request's writes go to
Redis in one MULTI/EXEC pipeline (one round trip; a reader never sees the ledger without the
statistics). A write that fails for a lost connection or a timeout is tried again with backoff
for up to ``retry_seconds``; one that still fails is logged with what it held (tenant,
provider, model, tokens, cost; never a key or a prompt) so the ledger can be mended by hand.
Closing waits for every pending write, so a shutdown loses none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions
import tenacity

__all__ = ["Bookkeeping"]

log = logging.getLogger("xynergy.ai")
_TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class Bookkeeping:
    def __init__(self, *, retry_seconds: float = 30.0) -> None:
        self.retry_seconds = retry_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    def later(
        self, write: Callable[[], Awaitable[None]], *, what: dict[str, Any]
    ) -> asyncio.Task[None]:
        """Run ``write`` (retried while Redis is unreachable) in a tracked task; ``what``
        describes it in the log if it fails for good."""
        task = asyncio.create_task(self._run(write, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, write: Callable[[], Awaitable[None]], what: dict[str, Any]) -> None:
        try:
            try:
                await write()
                return
            except _TRANSIENT:  # retried below; the first try skips the policy's set-up
                pass
            retrying = tenacity.AsyncRetrying(
                retry=tenacity.retry_if_exception_type(_TRANSIENT),
                wait=tenacity.wait_exponential(multiplier=0.05, max=2),
                stop=tenacity.stop_after_delay(self.retry_seconds),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await write()
        except Exception as exc:
            fields = {**what, "error": type(exc).__name__}
            log.error("ledger and cache write failed", extra={"fields": fields})

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every write started so far has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
