"""The scheduler built from the service's parts: Redis for schedules and the claim, the
orchestrator to run workflows (as the schedule's tenant, with a signed internal identity),
and the cluster client, when the service has one, for failure Events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.analytics.deps import Analytics
from services.analytics.schedules.events import KubeEvents
from services.analytics.schedules.models import Schedule
from services.analytics.schedules.scheduler import Result, Runner, Scheduler
from services.analytics.schedules.settings import ScheduleSettings
from services.analytics.schedules.store import ScheduleStore
from services.analytics.workflows import Orchestrator
from services.common.identity import InternalIdentitySigner
from services.common.tenancy import Identity

__all__ = ["build_scheduler", "orchestrator_runner"]

SCHEDULER_USER = "analytics-scheduler"


def orchestrator_runner(orchestrator: Orchestrator, signer: InternalIdentitySigner) -> Runner:
    async def run(schedule: Schedule) -> Result:
        who = Identity(
            user_id=SCHEDULER_USER,
            tenant_id=schedule.tenant,
            roles=("editor",),
            source="internal",
        )
        row = await orchestrator.execute(
            tenant=schedule.tenant,
            identity=signer.sign(who),
            name=schedule.workflow,
            goal=schedule.goal,
            inputs=schedule.inputs,
        )
        return Result(row.run_id, row.status, row.error)

    return run


def build_scheduler(
    parts: Analytics,
    redis: Any,
    signer: InternalIdentitySigner,
    settings: ScheduleSettings | None = None,
) -> Scheduler:
    settings = settings or ScheduleSettings()
    events = None
    if parts.cluster is not None:
        events = KubeEvents(
            parts.cluster.client,
            namespace=settings.events_namespace,
            object_name=settings.events_object,
        )
    return Scheduler(
        ScheduleStore(redis, history=settings.history),
        orchestrator_runner(parts.orchestrator, signer),
        grace=dt.timedelta(seconds=settings.grace_seconds),
        tick_seconds=settings.tick_seconds,
        events=events,
        active=settings.enabled,
    )
