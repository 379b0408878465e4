"""The scheduler loop every analytics replica runs: each tick plans every enabled schedule
(:func:`~services.analytics.schedules.timing.plan`), claims the due time through the store's
compare-and-set, and the one replica that won runs the workflow and records how it ended.

The clock is injected (``clock``), so ticks are driven by tests without waiting. A failed run
(the workflow failed, or the runner raised) is recorded with its error redacted and posted as
a Kubernetes Event when an :class:`EventSink` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from services.analytics.schedules.models import Schedule, ScheduleRun, redact
from services.analytics.schedules.store import ScheduleStore
from services.analytics.schedules.timing import check_timezone, plan

__all__ = ["Clock", "EventSink", "Result", "Runner", "Scheduler", "utcnow"]

log = logging.getLogger("xynergy.analytics.schedules")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class Result:
    """How a workflow run ended: its run id, ``succeeded`` or ``failed``, and the error."""

    run_id: str
    status: str
    error: str = ""


Runner = Callable[[Schedule], Awaitable[Result]]


class EventSink(Protocol):
    async def run_failed(self, schedule: Schedule, run: ScheduleRun) -> None: ...


class Scheduler:
    def __init__(
        self,
        store: ScheduleStore,
        runner: Runner,
        *,
        clock: Clock = utcnow,
        grace: dt.timedelta = dt.timedelta(seconds=60),
        tick_seconds: float = 5.0,
        replica: str = "",
        events: EventSink | None = None,
        active: bool = True,
    ) -> None:
        self.store = store
        self.runner = runner
        self.clock = clock
        self.grace = grace
        self.tick_seconds = tick_seconds
        self.replica = replica or uuid.uuid4().hex[:12]
        self.events = events
        self.active = active
        self.inflight: set[asyncio.Task[ScheduleRun]] = set()

    async def tick(self) -> list[ScheduleRun]:
        """Plan and claim every enabled schedule now; the runs this replica won start in the
        background (:meth:`drain` waits for them). Returns the runs claimed."""
        now = self.clock()
        claimed = []
        for schedule in await self.store.everyone():
            if not schedule.enabled:
                continue
            try:
                run = await self._claim(schedule, now)
            except Exception:
                log.exception("schedule %s/%s not planned", schedule.tenant, schedule.id)
                continue
            if run is not None:
                claimed.append(run)
        return claimed

    async def _claim(self, schedule: Schedule, now: dt.datetime) -> ScheduleRun | None:
        last = await self.store.last_due(schedule) or schedule.created
        zone = check_timezone(schedule.timezone)
        p = plan(
            cron=schedule.cron,
            zone=zone,
            policy=schedule.missed_run_policy,
            last=last,
            now=now,
            grace=self.grace,
        )
        if p is None:
            return None
        run = ScheduleRun(
            schedule_id=schedule.id,
            due=p.due,
            outcome="running" if p.run else "missed",
            replica=self.replica,
            started=now if p.run else None,
            finished=None if p.run else now,
            missed=p.missed,
            late_seconds=p.late_seconds,
        )
        if not await self.store.claim(schedule, run):
            return None
        if p.run:
            task = asyncio.create_task(self._run(schedule, run))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)
        return run

    async def _run(self, schedule: Schedule, run: ScheduleRun) -> ScheduleRun:
        try:
            result = await self.runner(schedule)
        except asyncio.CancelledError:
            result = Result("", "failed", "interrupted: the replica stopped")
            await asyncio.shield(self._finish(schedule, run, result))
            raise
        except Exception as exc:
            result = Result("", "failed", f"{type(exc).__name__}: {exc}")
        return await self._finish(schedule, run, result)

    async def _finish(self, schedule: Schedule, run: ScheduleRun, result: Result) -> ScheduleRun:
        done = run.model_copy(
            update={
                "outcome": "succeeded" if result.status == "succeeded" else "failed",
                "finished": self.clock(),
                "run_id": result.run_id,
                "error": redact(result.error),
            }
        )
        await self.store.finish(schedule, done)
        if done.outcome == "failed":
            log.warning("schedule %s/%s run failed", schedule.tenant, schedule.id)
            if self.events is not None:
                try:
                    await self.events.run_failed(schedule, done)
                except Exception as exc:
                    log.warning("failure Event not posted: %s", type(exc).__name__)
        return done

    async def drain(self) -> list[ScheduleRun]:
        """Wait for the runs in flight; their finished records."""
        return list(await asyncio.gather(*list(self.inflight)))

    async def run(self) -> None:
        """Tick every ``tick_seconds`` until cancelled; runs in flight are then interrupted.
        An inactive scheduler (``XYNERGY_ANALYTICS_SCHEDULES_ENABLED=false``) returns at once."""
        if not self.active:
            return
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("scheduler tick failed")
                await asyncio.sleep(self.tick_seconds)
        finally:
            for task in list(self.inflight):
                task.cancel()
            for task in list(self.inflight):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
