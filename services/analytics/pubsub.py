"""Platform events from Google Pub/Sub (the production bus; the gcloud emulator in tests).

Streaming pulls on the ingest's subscriptions: ``<prefix>-<topic>`` on each bus topic (by
default the seed's 7 consolidated topics, :data:`~services.analytics.settings.CONSOLIDATED_TOPICS`),
plus one subscription provisioned outside when configured. On start, each bus topic, its
subscription and the dead-letter topic are created when missing (``AlreadyExists`` is what a
second replica or a restart gets, and is fine; ``PermissionDenied`` is logged: they are then
expected to be provisioned outside). (``google-cloud-pubsub``; ``PUBSUB_EMULATOR_HOST`` points
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
from functools import partial
from typing import Any

from google.api_core.exceptions import AlreadyExists, PermissionDenied
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from services.analytics.ingest import ingest_once, payload_row
from services.analytics.settings import AnalyticsSettings
from services.analytics.stores import AnalyticsStore
from services.common.tenancy import valid_tenant_id

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
        subscription: str = "",
        topics: Iterable[str],
        bus_topics: Iterable[str] = (),
        subscription_prefix: str = "analytics-ingest",
        dead_letter_topic: str = "",
        max_messages: int = 100,
        subscriber: Any = None,
        publisher: Any = None,
    ) -> None:
        if not project:
            raise ValueError("XYNERGY_ANALYTICS_PUBSUB_PROJECT: expected a project id")
        self.store = store
        self.topics = frozenset(topics)
        self._own_subscriber = subscriber is None
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.publisher = publisher or pubsub_v1.PublisherClient()
        sub_path, topic_path = self.subscriber.subscription_path, self.publisher.topic_path
        self.owned = {
            sub_path(project, f"{subscription_prefix}-{t}"): topic_path(project, t)
            for t in bus_topics
        }
        """The subscriptions this ingest creates when missing -> their topics."""
        self.subscriptions = [
            *([sub_path(project, subscription)] if subscription else []),
            *self.owned,
        ]
        self.dead_letter = topic_path(project, dead_letter_topic) if dead_letter_topic else ""
        self.max_messages = max_messages
        self.project = project
        self.counts = {o: 0 for o in Outcome}
        """Outcomes of every message this process handled (all tenants)."""
        self.tenant_counts: dict[str, dict[Outcome, int]] = {}
        """The same per tenant (the message's ``tenant`` attribute, when a tenant id)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._futures: dict[str, Any] = {}

    async def start(self) -> None:
        """Create what is missing, then open the streaming pulls (on the service's loop)."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._provision)
        flow = pubsub_v1.types.FlowControl(max_messages=self.max_messages)
        self._futures = {
            sub: self.subscriber.subscribe(
                sub, callback=partial(self._callback, sub), flow_control=flow
            )
            for sub in self.subscriptions
        }

    async def stop(self) -> None:
        futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            future.cancel()
        for future in futures:
            await asyncio.to_thread(future.result, 10)
        if self._own_subscriber:  # its channel closed, so Pub/Sub sees the streams end now
            await asyncio.to_thread(self.subscriber.close)

    def _provision(self) -> None:
        """Each bus topic, its subscription and the dead-letter topic, created when missing."""
        topics = sorted({*self.owned.values(), *([self.dead_letter] if self.dead_letter else [])})
        for topic in topics:
            _create(self.publisher.create_topic, topic, name=topic)
        for sub, topic in self.owned.items():
            _create(
                self.subscriber.create_subscription,
                sub,
                name=sub,
                topic=topic,
                ack_deadline_seconds=60,
            )

    def _callback(self, subscription: str, message: Any) -> None:
        assert self._loop is not None
        outcome = Outcome.NACK
        try:
            done = asyncio.run_coroutine_threadsafe(self.handle(message, subscription), self._loop)
            outcome = done.result(timeout=60)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.warning("pubsub message not handled: %s", type(exc).__name__)
        if outcome is Outcome.NACK:
            message.nack()
        else:
            message.ack()

    async def handle(self, message: Any, subscription: str = "") -> Outcome:
        """What to do with one message of ``subscription`` (the row written when valid)."""
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
            outcome = await self._dead_letter(message, attributes, str(exc), subscription)
        else:
            outcome = await self._write(message, row)
        self.counts[outcome] += 1
        tenant = attributes.get("tenant", "")
        if valid_tenant_id(tenant):
            per = self.tenant_counts.setdefault(tenant, {o: 0 for o in Outcome})
            per[outcome] += 1
        return outcome

    def pulling(self, subscription: str) -> bool:
        """Whether this ingest's streaming pull on ``subscription`` is open."""
        future = self._futures.get(subscription)
        return future is not None and not future.done()

    def view(self, tenant: str) -> dict[str, Any]:
        """What ``/pubsub/consolidation-metrics`` shows ``tenant``: the topics read, each
        with the ingest's subscription and whether it is pulling, and the tenant's counts."""
        by_topic = {topic: sub for sub, topic in self.owned.items()}
        counts = self.tenant_counts.get(tenant, {})
        return {
            "project": self.project,
            "topics": [
                {"topic": t.rsplit("/", 1)[1], "subscription": s, "pulling": self.pulling(s)}
                for t, s in by_topic.items()
            ],
            "other_subscriptions": [
                {"subscription": s, "pulling": self.pulling(s)}
                for s in self.subscriptions
                if s not in self.owned
            ],
            "dead_letter_topic": self.dead_letter or None,
            "counts": {o.value: counts.get(o, 0) for o in Outcome},
        }

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

    async def _dead_letter(
        self, message: Any, attributes: dict[str, str], reason: str, subscription: str
    ) -> Outcome:
        fields = {"message_id": message.message_id, "reason": reason}
        if not self.dead_letter:
            log.warning("pubsub message malformed, dropped: %s", reason, extra={"fields": fields})
            return Outcome.DEAD_LETTER
        extra = {
            **attributes,
            "dead_letter_reason": reason,
            "source_message_id": message.message_id,
            "source_subscription": subscription,
        }
        try:
            published = self.publisher.publish(self.dead_letter, message.data, **extra)
            await asyncio.wrap_future(published)
        except Exception as exc:
            log.warning("pubsub dead-letter publish failed: %s", type(exc).__name__)
            return Outcome.NACK
        log.warning("pubsub message dead-lettered: %s", reason, extra={"fields": fields})
        return Outcome.DEAD_LETTER


def _create(call: Any, what: str, **request: Any) -> None:
    try:
        call(**request)
    except AlreadyExists:
        return
    except PermissionDenied:
        log.warning("pubsub: not allowed to create %s; expected to exist", what)
        return
    log.info("pubsub: created %s", what)


def from_settings(settings: AnalyticsSettings, store: AnalyticsStore) -> PubSubIngest | None:
    """The Pub/Sub ingest the settings ask for (``PUBSUB_PROJECT`` with ``PUBSUB_TOPICS`` or
    ``PUBSUB_SUBSCRIPTION``), or None."""
    if not settings.pubsub_project or not (settings.pubsub_topics or settings.pubsub_subscription):
        return None
    return PubSubIngest(
        store,
        project=settings.pubsub_project,
        subscription=settings.pubsub_subscription,
        topics=settings.ingest_topics,
        bus_topics=settings.pubsub_topics,
        subscription_prefix=settings.pubsub_subscription_prefix,
        dead_letter_topic=settings.pubsub_dead_letter_topic,
        max_messages=settings.pubsub_max_messages,
    )
