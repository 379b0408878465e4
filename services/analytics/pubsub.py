"""Platform events from Google Pub/Sub (the production bus; the gcloud emulator in tests).

A streaming pull on one subscription (``google-cloud-pubsub``; ``PUBSUB_EMULATOR_HOST`` points
the client at the emulator). A message is an event: its data the event's JSON object (as the
Redis bus publishes it, ``_meta`` optional), its attributes ``tenant`` and ``event_topic`` (one of
the ingested topics). Each message goes through the Redis ingest's parser and writer
(:func:`services.analytics.ingest.payload_row`, :func:`~services.analytics.ingest.ingest_once`)
with the Pub/Sub message id as the event id, so a redelivered message is stored once.

- **ack** only after the row is written (or was written by an earlier delivery);
- **nack** when the store fails: Pub/Sub redelivers it;
- **dead-letter** a malformed message: republished with its attributes and
  ``dead_letter_reason`` to the dead-letter topic, then acked; logged with the message id and
  the reason, never the data. Without a dead-letter topic it is logged and dropped.

The client calls back on its own threads; each message is handled on the service's event loop
(the store's lock and connection live there) and the thread waits for the outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import time
from collections.abc import Iterable
from typing import Any

from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from services.analytics.ingest import ingest_once, payload_row
from services.analytics.settings import AnalyticsSettings
from services.analytics.stores import AnalyticsStore

__all__ = ["Outcome", "PubSubIngest", "from_settings"]

log = logging.getLogger("xynergy.analytics")


class Outcome(enum.Enum):
    ACK = "ack"
    NACK = "nack"
    DEAD_LETTER = "dead-letter"


class PubSubIngest:
    def __init__(
        self,
        store: AnalyticsStore,
        *,
        project: str,
        subscription: str,
        topics: Iterable[str],
        dead_letter_topic: str = "",
        max_messages: int = 100,
        subscriber: Any = None,
        publisher: Any = None,
    ) -> None:
        if not project:
            raise ValueError("XYNERGY_ANALYTICS_PUBSUB_PROJECT: expected a project id")
        self.store = store
        self.topics = frozenset(topics)
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.publisher = publisher or pubsub_v1.PublisherClient()
        self.subscription = self.subscriber.subscription_path(project, subscription)
        self.dead_letter = (
            self.publisher.topic_path(project, dead_letter_topic) if dead_letter_topic else ""
        )
        self.max_messages = max_messages
        self.counts = {o: 0 for o in Outcome}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future: Any = None

    def start(self) -> None:
        """Open the streaming pull (call on the service's event loop)."""
        self._loop = asyncio.get_running_loop()
        flow = pubsub_v1.types.FlowControl(max_messages=self.max_messages)
        self._future = self.subscriber.subscribe(
            self.subscription, callback=self._callback, flow_control=flow
        )

    async def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            await asyncio.to_thread(self._future.result, 10)
            self._future = None

    def _callback(self, message: Any) -> None:
        assert self._loop is not None
        outcome = Outcome.NACK
        try:
            done = asyncio.run_coroutine_threadsafe(self.handle(message), self._loop)
            outcome = done.result(timeout=60)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.warning("pubsub message not handled: %s", type(exc).__name__)
        if outcome is Outcome.NACK:
            message.nack()
        else:
            message.ack()

    async def handle(self, message: Any) -> Outcome:
        """What to do with one message (the row written when it is valid)."""
        attributes = dict(message.attributes or {})
        try:
            topic = attributes.get("event_topic", "")
            if topic not in self.topics:
                raise ValueError(f"attributes.event_topic: expected one of {sorted(self.topics)}")
            row = payload_row(
                attributes.get("tenant", ""),
                topic,
                message.data,
                now=time.time(),
                event_id=f"pubsub:{message.message_id}",
            )
        except ValueError as exc:
            outcome = await self._dead_letter(message, attributes, str(exc))
        else:
            outcome = await self._write(message, row)
        self.counts[outcome] += 1
        return outcome

    async def _write(self, message: Any, row: Any) -> Outcome:
        try:
            await ingest_once(self.store, [row])
        except Exception as exc:
            log.warning(
                "pubsub message not stored, redelivery asked: %s",
                type(exc).__name__,
                extra={"fields": {"message_id": message.message_id, "topic": row.topic}},
            )
            return Outcome.NACK
        return Outcome.ACK

    async def _dead_letter(self, message: Any, attributes: dict[str, str], reason: str) -> Outcome:
        fields = {"message_id": message.message_id, "reason": reason}
        if not self.dead_letter:
            log.warning("pubsub message malformed, dropped: %s", reason, extra={"fields": fields})
            return Outcome.DEAD_LETTER
        extra = {
            **attributes,
            "dead_letter_reason": reason,
            "source_message_id": message.message_id,
            "source_subscription": self.subscription,
        }
        try:
            published = self.publisher.publish(self.dead_letter, message.data, **extra)
            await asyncio.wrap_future(published)
        except Exception as exc:
            log.warning("pubsub dead-letter publish failed: %s", type(exc).__name__)
            return Outcome.NACK
        log.warning("pubsub message dead-lettered: %s", reason, extra={"fields": fields})
        return Outcome.DEAD_LETTER


def from_settings(settings: AnalyticsSettings, store: AnalyticsStore) -> PubSubIngest | None:
    """The Pub/Sub ingest the settings ask for (``PUBSUB_SUBSCRIPTION``), or None."""
    if not settings.pubsub_subscription:
        return None
    return PubSubIngest(
        store,
        project=settings.pubsub_project,
        subscription=settings.pubsub_subscription,
        topics=settings.ingest_topics,
        dead_letter_topic=settings.pubsub_dead_letter_topic,
        max_messages=settings.pubsub_max_messages,
    )
