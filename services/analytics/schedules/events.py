"""Failed scheduled runs as Kubernetes Events, through the analytics service's own cluster
client (``ClusterReader.client``).

Schedules are not Kubernetes objects, so the Event is about the analytics service's
XynergyService (``events_object`` in ``events_namespace``): ``kubectl describe xynergyservice
analytics`` and ``kubectl get events`` show it. The message carries the tenant, schedule,
workflow, due time and the (already redacted) error.
"""

from __future__ import annotations

import datetime as dt
import uuid

from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from apis.v1alpha1.common import GROUP, VERSION
from services.analytics.cluster import KubeClient
from services.analytics.schedules.models import Schedule, ScheduleRun

__all__ = ["COMPONENT", "REASON", "KubeEvents"]

COMPONENT = "xynergy-analytics-scheduler"
REASON = "ScheduledRunFailed"


class KubeEvents:
    def __init__(self, client: KubeClient, *, namespace: str, object_name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.object_name = object_name

    def event(self, schedule: Schedule, run: ScheduleRun) -> Event:
        now = dt.datetime.now(dt.UTC)
        message = (
            f"tenant {schedule.tenant}: schedule {schedule.id} ({schedule.workflow}) due "
            f"{run.due.isoformat()} failed: {run.error or 'no error given'}"
        )
        return Event(
            metadata=ObjectMeta(
                name=f"{self.object_name}.{uuid.uuid4().hex[:16]}", namespace=self.namespace
            ),
            involvedObject=ObjectReference(
                apiVersion=f"{GROUP}/{VERSION}",
                kind="XynergyService",
                name=self.object_name,
                namespace=self.namespace,
            ),
            reason=REASON,
            message=message[:1024],
            type="Warning",
            source=EventSource(component=COMPONENT, host=run.replica),
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
        )

    async def run_failed(self, schedule: Schedule, run: ScheduleRun) -> None:
        await self.client.create(self.event(schedule, run), namespace=self.namespace)
