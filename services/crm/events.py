"""Publishing ``crm-changes`` events for the gateway's stream.

Each committed change publishes ``{tenant, kind, id, action, contact_id, at}`` to the tenant's
channel through :func:`services.common.events.publish_event`. Publishing happens after the
write commits and never fails the request: a lost event is logged and counted, and clients
re-read on reconnect anyway. A replayed idempotent request publishes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from prometheus_client import Counter

from services.common.events import publish_event
from services.crm.models import utcnow

__all__ = ["Action", "ChangePublisher", "Kind"]

log = logging.getLogger("xynergy.crm.events")

Kind = Literal["contact", "interaction", "note", "task"]
Action = Literal["created", "updated", "deleted", "restored", "purged"]


class ChangePublisher:
    def __init__(self, redis: Any | None, *, topic: str, counter: Counter) -> None:
        self._redis = redis
        self._topic = topic
        self._counter = counter

    async def publish(
        self,
        tenant: str,
        *,
        kind: Kind,
        id: str,
        action: Action,
        contact_id: str | None = None,
    ) -> None:
        if self._redis is None:
            return
        payload = {
            "tenant": tenant,
            "kind": kind,
            "id": id,
            "action": action,
            "contact_id": contact_id
            if contact_id is not None
            else (id if kind == "contact" else None),
            "at": utcnow().isoformat(),
        }
        try:
            async with asyncio.timeout(2.0):
                await publish_event(
                    self._redis, tenant_id=tenant, topic=self._topic, payload=payload
                )
        except Exception as exc:
            self._counter.labels("failed").inc()
            log.warning(
                "crm-changes event not published",
                extra={"fields": {"tenant": tenant, "kind": kind, "error": type(exc).__name__}},
            )
        else:
            self._counter.labels("published").inc()
