"""The model's one worker thread, its bounded queue and its load/unload lifecycle.

Every use of the model (load, embed, unload) runs on one thread, in arrival order, so an
unload waits for the inferences queued before it and never frees a session in use. At most
``max_pending`` requests are queued or running; one more is refused at once with
:class:`BusyError` (a 429 with ``Retry-After``) instead of waiting without bound. With
``idle_unload_seconds`` the model is unloaded after that long unused and loaded again by the
next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from services.internal_ai.model import MiniLM

__all__ = ["BusyError", "ModelRunner"]

T = TypeVar("T")


class BusyError(Exception):
    def __init__(self, pending: int) -> None:
        super().__init__(f"{pending} requests already queued")
        self.pending = pending


class ModelRunner:
    def __init__(self, model: MiniLM, *, max_pending: int, idle_unload_seconds: float = 0) -> None:
        self.model = model
        self.max_pending = max_pending
        self.idle_unload_seconds = idle_unload_seconds
        self.pending = 0
        self.served = 0
        self.refused = 0
        self._last_used = time.monotonic()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")
        self._idle_task: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[MiniLM], T]) -> T:
        """Run ``work(model)`` on the model's thread (loading it first if needed)."""
        if self.pending >= self.max_pending:
            self.refused += 1
            raise BusyError(self.pending)
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._call, work)
        finally:
            self.pending -= 1
            self.served += 1
            self._last_used = time.monotonic()

    def _call(self, work: Callable[[MiniLM], T]) -> T:
        self.model.load()
        return work(self.model)

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.model.load)

    async def unload(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.model.unload)

    def state(self) -> dict[str, object]:
        return {
            "model": "all-minilm-l6-v2",
            "loaded": self.model.loaded,
            "loads": self.model.loads,
            "pending": self.pending,
            "max_pending": self.max_pending,
            "served": self.served,
            "refused": self.refused,
            "idle_unload_seconds": self.idle_unload_seconds,
        }

    def start(self) -> None:
        if self.idle_unload_seconds > 0:
            self._idle_task = asyncio.create_task(self._unload_when_idle())

    async def _unload_when_idle(self) -> None:
        while True:
            await asyncio.sleep(self.idle_unload_seconds / 4)
            idle = time.monotonic() - self._last_used
            if self.model.loaded and self.pending == 0 and idle >= self.idle_unload_seconds:
                await self.unload()

    async def aclose(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        await self.unload()
        self._executor.shutdown(wait=True)
