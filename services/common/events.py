"""How services publish events to the gateway's socket.io stream.

A service publishes JSON to the Redis channel ``xynergy:events:<tenant>:<topic>``; the
gateway fans each message out to the sockets of that tenant that subscribed to that topic.
The tenant is part of the channel name, so one tenant's events cannot reach another's room.

Events are not lost silently when Redis stalls or is down. :class:`EventPublisher` tries
each event once (bounded by a timeout) and otherwise keeps it, in order, in a bounded local
buffer that a background task retries with backoff. When the buffer is full the oldest event
is dropped and counted, and once Redis is back the topic gets a ``resync`` marker saying how
many were dropped (ahead of the events that were kept). Each published message gets the next
number of its (tenant, topic) sequence (``INCR`` in the same Lua call as the ``PUBLISH``),
carried in the message's ``_meta`` member with the event's id; a retry of an event Redis
already ran is a no-op (the id is remembered for an hour), so a retry after a timeout cannot
publish twice. The gateway strips ``_meta`` and gives subscribers the sequence number, so a
gap is visible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from services.common.tenancy import tenant_key

__all__ = [
    "CHANNEL_PATTERN",
    "CHANNEL_PREFIX",
    "META",
    "EventPublisher",
    "channel_for",
    "parse_channel",
    "publish_event",
    "sequence_key",
    "valid_topic",
]

log = logging.getLogger("xynergy.events")

CHANNEL_PREFIX = "xynergy:events:"
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"
META = "_meta"
"""The message member that carries ``seq`` and ``id`` (or ``resync`` and ``dropped``)."""
_TOPIC_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ID_TTL_SECONDS = 3600

# KEYS[1]: the (tenant, topic) sequence, KEYS[2]: the event id. ARGV[1]: the channel,
# ARGV[2]: the payload's JSON without its closing brace (and with a comma if it has members),
# ARGV[3]: more members of _meta, ARGV[4]: how long the id is remembered.
_PUBLISH_LUA = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[4])) then return 0 end
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. '"_meta":{"seq":' .. seq .. ARGV[3] .. '}}')
return seq
"""


def valid_topic(topic: object) -> bool:
    return isinstance(topic, str) and _TOPIC_RE.match(topic) is not None


def channel_for(tenant_id: str, topic: str) -> str:
    if not valid_topic(topic):
        raise ValueError(f"invalid topic {topic!r}")
    return CHANNEL_PREFIX + tenant_key(tenant_id) + ":" + topic


def sequence_key(tenant_id: str, topic: str) -> str:
    """The Redis key of a (tenant, topic)'s sequence counter."""
    if not valid_topic(topic):
        raise ValueError(f"invalid topic {topic!r}")
    return "xynergy:eventseq:" + tenant_key(tenant_id) + ":" + topic


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


@dataclass(frozen=True, slots=True)
class _Event:
    tenant: str
    topic: str
    head: str  # the payload's JSON without its closing brace
    meta: str  # members of _meta after seq
    id: str


def _event(tenant_id: str, topic: str, payload: dict[str, Any], meta: str = "") -> _Event:
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a JSON object (dict), not {type(payload).__name__}")
    if META in payload:
        raise ValueError(f"payload: the member {META!r} is reserved for the stream")
    channel_for(tenant_id, topic)  # validates both
    text = json.dumps(payload)
    head = text[:-1] + ("," if payload else "")
    event_id = uuid.uuid4().hex
    return _Event(tenant_id, topic, head, meta or f',"id":"{event_id}"', event_id)


class EventPublisher:
    """Publishes events in order, buffering (bounded) and retrying while Redis is away."""

    def __init__(
        self,
        redis: Any,
        *,
        buffer_size: int = 1000,
        attempt_timeout: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, not {buffer_size}")
        self._redis = redis
        self._script = redis.register_script(_PUBLISH_LUA)
        self._buffer: deque[_Event] = deque()
        self._size = buffer_size
        self._timeout = attempt_timeout
        self._max_backoff = max_backoff
        self._dropped: dict[tuple[str, str], int] = {}
        self._flusher: asyncio.Task[None] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def publish(self, *, tenant_id: str, topic: str, payload: dict[str, Any]) -> bool:
        """True when Redis took the event now; False when it waits in the buffer."""
        event = _event(tenant_id, topic, payload)
        if not self._buffer and await self._send(event):
            return True
        self._keep(event)
        return False

    def _keep(self, event: _Event) -> None:
        if len(self._buffer) >= self._size:
            lost = self._buffer.popleft()
            key = (lost.tenant, lost.topic)
            self._dropped[key] = self._dropped.get(key, 0) + 1
            log.warning(
                "event buffer full; oldest event dropped",
                extra={"fields": {"topic": lost.topic, "buffer": self._size}},
            )
        self._buffer.append(event)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _send(self, event: _Event) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._script(
                    keys=[sequence_key(event.tenant, event.topic), f"xynergy:eventid:{event.id}"],
                    args=[
                        channel_for(event.tenant, event.topic),
                        event.head,
                        event.meta,
                        _ID_TTL_SECONDS,
                    ],
                )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "event not published yet; kept for a retry",
                extra={"fields": {"topic": event.topic, "error": type(exc).__name__}},
            )
            return False
        return True

    async def _flush(self) -> None:
        """Send the resync markers of topics that lost events, then the buffer in order."""
        failures = 0
        while self._buffer or self._dropped:
            marker = self._marker() if self._dropped else None
            event = self._buffer[0] if marker is None else marker[0]
            if not await self._send(event):
                failures += 1
                delay = min(self._max_backoff, 0.05 * 2**failures)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            failures = 0
            if marker is None:
                if self._buffer and self._buffer[0] is event:  # (an overflow may have taken it)
                    self._buffer.popleft()
                continue
            key, told = (event.tenant, event.topic), marker[1]
            left = self._dropped.get(key, 0) - told
            if left > 0:
                self._dropped[key] = left
            else:
                self._dropped.pop(key, None)

    def _marker(self) -> tuple[_Event, int]:
        """A resync marker for one topic that lost events, and how many it reports."""
        (tenant, topic), dropped = next(iter(self._dropped.items()))
        event_id = uuid.uuid4().hex
        meta = f',"id":"{event_id}","resync":true,"dropped":{dropped}'
        return _Event(tenant, topic, "{", meta, event_id), dropped

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)


_publishers: weakref.WeakKeyDictionary[Any, EventPublisher] = weakref.WeakKeyDictionary()


async def publish_event(redis: Any, *, tenant_id: str, topic: str, payload: dict[str, Any]) -> bool:
    """Publish ``payload`` to ``topic`` for ``tenant_id`` through the redis client's own
    :class:`EventPublisher` (buffered and retried); True when Redis took it at once."""
    publisher = _publishers.get(redis)
    if publisher is None:
        publisher = _publishers[redis] = EventPublisher(redis)
    return await publisher.publish(tenant_id=tenant_id, topic=topic, payload=payload)
