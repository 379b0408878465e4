"""Two schedulers (two replicas, each with its own Redis connections) against one real
redis-server: every due time of every schedule runs exactly once; the missed-run policies
hold across a replica outage; a failed run is kept with its error redacted and posted as a
Kubernetes Event to the real kube-apiserver. The clock is injected: no test waits for a
minute to pass."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig

from services.analytics.schedules import (
    Result,
    Schedule,
    Scheduler,
    ScheduleRun,
    ScheduleStore,
)
from services.analytics.schedules.events import REASON, KubeEvents

from .conftest import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T0 = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
DB = 12
"""A Redis database of this module's own: the schedulers see every tenant's schedules."""


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Runs:
    """The runner of both replicas: records who ran which schedule, yields to the other."""

    def __init__(self, fail_with: str = "") -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_with = fail_with

    def runner(self, replica: str) -> object:
        async def run(schedule: Schedule) -> Result:
            self.calls.append((replica, schedule.id))
            await asyncio.sleep(0)
            if self.fail_with:
                raise RuntimeError(self.fail_with)
            return Result(uuid.uuid4().hex[:16], "succeeded")

        return run


@contextlib.asynccontextmanager
async def replicas(
    redis_server: RedisServer, runs: Runs, clock: Clock, **kwargs: object
) -> AsyncIterator[tuple[Scheduler, Scheduler]]:
    url = f"redis://127.0.0.1:{redis_server.port}/{DB}"
    a, b = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    await a.flushdb()
    try:
        yield tuple(  # type: ignore[misc]
            Scheduler(ScheduleStore(r), runs.runner(name), clock=clock, replica=name, **kwargs)  # type: ignore[arg-type]
            for r, name in ((a, "replica-a"), (b, "replica-b"))
        )
    finally:
        await a.flushdb()
        await a.aclose()
        await b.aclose()


def schedule(tenant: str, cron: str = "* * * * *", policy: str = "skip") -> Schedule:
    return Schedule(
        id=uuid.uuid4().hex[:12],
        tenant=tenant,
        workflow="analytics_processing",
        cron=cron,
        timezone="UTC",
        missed_run_policy=policy,  # type: ignore[arg-type]
        enabled=True,
        goal="balanced",
        created=T0,
    )


async def tick_both(a: Scheduler, b: Scheduler, times: int = 3) -> list[ScheduleRun]:
    claimed: list[ScheduleRun] = []
    for _ in range(times):
        for part in await asyncio.gather(a.tick(), b.tick()):
            claimed += part
    await asyncio.gather(a.drain(), b.drain())
    return claimed


async def test_two_replicas_run_each_due_time_once(redis_server: RedisServer) -> None:
    runs, clock = Runs(), Clock(T0)
    async with replicas(redis_server, runs, clock) as (a, b):
        mine = [schedule(f"t{i}-{uuid.uuid4().hex[:6]}") for i in range(12)]
        for s in mine:
            await a.store.put(s)
        off = schedule("off-" + uuid.uuid4().hex[:6]).model_copy(update={"enabled": False})
        await a.store.put(off)
        assert await tick_both(a, b) == []  # nothing is due at creation
        minutes = 4
        for m in range(1, minutes + 1):
            clock.now = T0 + dt.timedelta(minutes=m, seconds=2)
            claimed = await tick_both(a, b)
            assert Counter(r.schedule_id for r in claimed) == {s.id: 1 for s in mine}
        assert Counter(sid for _, sid in runs.calls) == {s.id: minutes for s in mine}
        for s in mine:
            history = await b.store.runs(s.tenant, s.id)
            assert [r.due for r in history] == [
                T0 + dt.timedelta(minutes=m) for m in range(minutes, 0, -1)
            ]
            assert {r.outcome for r in history} == {"succeeded"}
            assert all(r.run_id and r.finished is not None for r in history)
            assert await a.store.last_due(s) == T0 + dt.timedelta(minutes=minutes)
        assert await a.store.runs(off.tenant, off.id) == []


async def test_missed_run_policies_after_an_outage(redis_server: RedisServer) -> None:
    runs, clock = Runs(), Clock(T0)
    async with replicas(redis_server, runs, clock) as (a, b):
        skip = schedule("skip-" + uuid.uuid4().hex[:6], "0 * * * *", "skip")
        catch = schedule("catch-" + uuid.uuid4().hex[:6], "0 * * * *", "catchUpOnce")
        for s in (skip, catch):
            await a.store.put(s)
        # both replicas down from 08:00 to 11:20: 09:00, 10:00, 11:00 passed
        clock.now = T0 + dt.timedelta(hours=3, minutes=20)
        await tick_both(a, b)
        assert [sid for _, sid in runs.calls] == [catch.id]
        (caught,) = await a.store.runs(catch.tenant, catch.id)
        assert (caught.due, caught.outcome, caught.missed) == (
            T0 + dt.timedelta(hours=3),
            "succeeded",
            2,
        )
        (missed,) = await a.store.runs(skip.tenant, skip.id)
        assert (missed.due, missed.outcome, missed.missed) == (
            T0 + dt.timedelta(hours=3),
            "missed",
            3,
        )
        assert missed.late_seconds == 20 * 60
        # back on time at 12:00:05: both run 12:00, once
        clock.now = T0 + dt.timedelta(hours=4, seconds=5)
        await tick_both(a, b)
        assert Counter(sid for _, sid in runs.calls) == {catch.id: 2, skip.id: 1}


async def test_a_failed_run_is_kept_redacted_and_posted_as_an_event(
    redis_server: RedisServer, cluster: Path, kube: Kube, namespace: str
) -> None:
    secret = "sk-live-" + uuid.uuid4().hex
    runs = Runs(fail_with=f"AI router answered 401: Authorization: Bearer {secret}")
    clock = Clock(T0)
    client = AsyncClient(config=KubeConfig.from_file(str(cluster)))
    events = KubeEvents(client, namespace=namespace, object_name="analytics")  # type: ignore[arg-type]
    async with replicas(redis_server, runs, clock, events=events) as (a, b):
        s = schedule("fail-" + uuid.uuid4().hex[:6])
        await a.store.put(s)
        clock.now = T0 + dt.timedelta(minutes=1)
        await tick_both(a, b)
        (run,) = await a.store.runs(s.tenant, s.id)
        assert run.outcome == "failed"
        assert run.error.startswith("RuntimeError: AI router answered 401")
        assert secret not in run.error
    await client.close()
    r = kube.get(f"/api/v1/namespaces/{namespace}/events")
    assert r.status_code == 200, r.text
    posted = [e for e in r.json()["items"] if e["reason"] == REASON]
    assert len(posted) == 1
    assert posted[0]["type"] == "Warning"
    assert posted[0]["involvedObject"]["name"] == "analytics"
    assert s.id in posted[0]["message"]
    assert s.tenant in posted[0]["message"]
    assert secret not in posted[0]["message"]


async def test_the_loop_ticks_and_a_stopped_replica_marks_its_run_interrupted(
    redis_server: RedisServer,
) -> None:
    started = asyncio.Event()

    async def hang(_: Schedule) -> Result:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    clock = Clock(T0)
    async with replicas(redis_server, Runs(), clock, tick_seconds=0.01) as (a, _):
        s = schedule("loop-" + uuid.uuid4().hex[:6])
        await a.store.put(s)
        a.runner = hang
        clock.now = T0 + dt.timedelta(minutes=1)
        loop = asyncio.create_task(a.run())
        await asyncio.wait_for(started.wait(), timeout=10)
        (running,) = await a.store.runs(s.tenant, s.id)
        assert running.outcome == "running"
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        (stopped,) = await a.store.runs(s.tenant, s.id)
        assert (stopped.outcome, stopped.error) == ("failed", "interrupted: the replica stopped")
