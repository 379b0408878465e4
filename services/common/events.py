"""How services publish events to the gateway's socket.io stream.

A service publishes JSON to the Redis channel ``xynergy:events:<tenant>:<topic>``; the
gateway fans each message out to the sockets of that tenant that subscribed to that topic.
The tenant is part of the channel name, so one tenant's events cannot reach another's room.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from services.common.tenancy import tenant_key

__all__ = [
    "CHANNEL_PATTERN",
    "CHANNEL_PREFIX",
    "channel_for",
    "parse_channel",
    "publish_event",
    "valid_topic",
]

CHANNEL_PREFIX = "xynergy:events:"
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"
_TOPIC_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class _Publisher(Protocol):
    async def publish(self, channel: str, message: str) -> Any: ...


def valid_topic(topic: object) -> bool:
    return isinstance(topic, str) and _TOPIC_RE.match(topic) is not None


def channel_for(tenant_id: str, topic: str) -> str:
    if not valid_topic(topic):
        raise ValueError(f"invalid topic {topic!r}")
    return CHANNEL_PREFIX + tenant_key(tenant_id) + ":" + topic


def parse_channel(channel: str) -> tuple[str, str] | None:
    """(tenant, topic) of a channel name, or None when it is not one of ours."""
    if not channel.startswith(CHANNEL_PREFIX):
        return None
    tenant, sep, topic = channel[len(CHANNEL_PREFIX) :].partition(":")
    if not sep or not valid_topic(topic):
        return None
    try:
        tenant_key(tenant)
    except ValueError:
        return None
    return tenant, topic


async def publish_event(
    redis: _Publisher, *, tenant_id: str, topic: str, payload: dict[str, Any]
) -> None:
    """Publish ``payload`` to ``topic`` for ``tenant_id``."""
    await redis.publish(channel_for(tenant_id, topic), json.dumps(payload))
