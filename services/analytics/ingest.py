"""Platform events into the store: the event bus's Redis channels (``xynergy:events:<tenant>:
<topic>``, see :mod:`services.common.events`) for the configured topics.

One pattern subscription; each message is parsed (its tenant and topic from the channel, its
``seq`` and ``id`` from ``_meta``) and buffered; the buffer goes to the store in one insert
every ``batch_seconds`` (or at 500 rows), once per (tenant, event id): an event delivered
twice (a publisher's retry on another replica, a bridge republishing) is one row. A message
that is not JSON is counted and skipped.
Other transports (Google Pub/Sub, :mod:`services.analytics.pubsub`) parse with
:func:`payload_row` and write with :func:`ingest_once`, idempotent on the event id.
A lost Redis connection is retried with backoff; the bus's sequence numbers show any gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

from services.analytics.records import EventRow, utc
from services.analytics.stores import AnalyticsStore
from services.common.events import CHANNEL_PATTERN, META, parse_channel
from services.common.tenancy import valid_tenant_id

__all__ = ["EventIngest", "event_row", "ingest_once", "payload_row"]

log = logging.getLogger("xynergy.analytics")
_BATCH = 500


def payload_row(
    tenant: str, topic: str, data: bytes | str, *, now: float, event_id: str | None
) -> EventRow:
    """The row of one event's JSON body (any transport); ``ValueError`` says what is wrong
    with it (never quoting the body). ``event_id`` None takes the body's ``_meta.id``."""
    if not valid_tenant_id(tenant):
        raise ValueError("tenant: expected a tenant id")
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("data: expected JSON") from None
    if not isinstance(payload, dict):
        raise ValueError(f"data: expected a JSON object, got {type(payload).__name__}")
    meta = payload.pop(META, None) or {}
    if not isinstance(meta, dict):
        raise ValueError(f"data.{META}: expected an object")
    if meta.get("resync"):
        payload = {"resync": True, "dropped": meta.get("dropped", 0)}
    seq = meta.get("seq")
    return EventRow(
        tenant=tenant,
        topic=topic,
        ts=utc(now),
        event_id=event_id or str(meta.get("id") or uuid.uuid4().hex),
        seq=int(seq) if isinstance(seq, int) else None,
        payload=json.dumps(payload, separators=(",", ":")),
    )


def event_row(
    channel: str, data: bytes | str, *, now: float, topics: frozenset[str]
) -> EventRow | None:
    """The row of one bus message, or None when it is not ours, not wanted or not valid."""
    parsed = parse_channel(channel)
    if parsed is None or parsed[1] not in topics:
        return None
    tenant, topic = parsed
    try:
        return payload_row(tenant, topic, data, now=now, event_id=None)
    except ValueError as exc:
        log.warning("event skipped: %s", exc, extra={"fields": {"topic": topic}})
        return None


async def ingest_once(store: AnalyticsStore, rows: Sequence[EventRow]) -> int:
    """Store the rows whose (tenant, event_id) is not stored yet (a redelivered message is
    counted once); how many were new. A store error propagates: nothing was written."""
    return await store.add_events_once(rows)


class EventIngest:
    def __init__(
        self, redis: Any, store: AnalyticsStore, *, topics: list[str], batch_seconds: float
    ) -> None:
        self.redis = redis
        self.store = store
        self.topics = frozenset(topics)
        self.batch_seconds = batch_seconds
        self.buffer: list[EventRow] = []
        self.ingested = 0
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        rows, self.buffer = self.buffer, []
        if rows:
            self.ingested += await ingest_once(self.store, rows)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.subscribed.clear()
                log.warning("event bus: %s; retrying", type(exc).__name__)
                await asyncio.sleep(min(30.0, 0.2 * 2**failures) * random.uniform(0.5, 1.0))

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.psubscribe(CHANNEL_PATTERN)
        self.subscribed.set()
        due = time.monotonic() + self.batch_seconds
        try:
            while True:
                wait = max(0.0, due - time.monotonic())
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                if msg is not None and msg.get("type") == "pmessage":
                    channel = msg["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    row = event_row(channel, msg["data"], now=time.time(), topics=self.topics)
                    if row is not None:
                        self.buffer.append(row)
                if time.monotonic() >= due or len(self.buffer) >= _BATCH:
                    await self.flush()
                    due = time.monotonic() + self.batch_seconds
        finally:
            await pubsub.aclose()
