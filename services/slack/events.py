"""New Slack messages from the Events API, published to the ``slack-messages`` topic of every
tenant connected to the event's workspace.

Slack retries an event it thinks was not delivered (same ``event_id``); an id is published once
(remembered in Redis for ``event_dedup_seconds``). Only new messages are published (no
subtype, or a thread broadcast, a file share, a bot's message); edits, deletions and joins are
acknowledged and dropped. Publishing goes through :func:`services.common.events.publish_event`
(buffered and retried while Redis stalls).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter

from services.common.events import publish_event
from services.slack.teams import TeamDirectory

__all__ = ["MessageRelay", "message_payload"]

log = logging.getLogger("xynergy.slack.events")

_NEW_MESSAGE_SUBTYPES = {None, "thread_broadcast", "file_share", "bot_message"}


def message_payload(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """What subscribers get for an ``event_callback``; None when it is not a new message."""
    event = envelope.get("event")
    if not isinstance(event, dict) or event.get("type") != "message":
        return None
    if event.get("subtype") not in _NEW_MESSAGE_SUBTYPES:
        return None
    keys = ("channel", "channel_type", "user", "bot_id", "text", "ts", "thread_ts", "subtype")
    payload = {k: event[k] for k in keys if event.get(k) is not None}
    payload.update(team_id=envelope.get("team_id"), event_id=envelope.get("event_id"))
    payload["event_time"] = envelope.get("event_time")
    return payload


class MessageRelay:
    def __init__(
        self, redis: Any, teams: TeamDirectory, *, topic: str, dedup_seconds: int, counter: Counter
    ) -> None:
        self._redis = redis
        self._teams = teams
        self._topic = topic
        self._dedup = dedup_seconds
        self._counter = counter

    async def relay(self, envelope: dict[str, Any]) -> list[str]:
        """Publish a new message to its tenants; the tenants it went to."""
        payload = message_payload(envelope)
        if payload is None:
            self._counter.labels("ignored").inc()
            return []
        team, event_id = str(envelope.get("team_id") or ""), str(envelope.get("event_id") or "")
        if event_id and not await self._redis.set(
            f"xynergy:slack:event:{event_id}", "1", nx=True, ex=self._dedup
        ):
            self._counter.labels("duplicate").inc()
            return []
        try:
            tenants = await self._teams.tenants(team)
        except Exception:
            # not delivered: forget the id so that Slack's retry is taken
            await self._redis.delete(f"xynergy:slack:event:{event_id}")
            raise
        if not tenants:
            self._counter.labels("no_tenant").inc()
            log.warning(
                "event from a team no tenant is connected to", extra={"fields": {"team": team}}
            )
        for tenant in tenants:
            await publish_event(self._redis, tenant_id=tenant, topic=self._topic, payload=payload)
            self._counter.labels("published").inc()
        return tenants
