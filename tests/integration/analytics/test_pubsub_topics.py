"""The Pub/Sub ingest provisions what it reads, against the real gcloud Pub/Sub emulator: on
start, the seed's 7 consolidated topics, a subscription of the ingest on each and the
dead-letter topic are created when missing (in a fresh project), an event published to one of
them is stored, and a second start on the same project (everything exists) works the same."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from gateway.conftest import wait_for
from google.cloud import pubsub_v1

from analytics.pubsub_support import PubSubEmulator, pubsub_emulator  # noqa: F401 - the fixture
from services.analytics.pubsub import Outcome, PubSubIngest, from_settings
from services.analytics.settings import CONSOLIDATED_TOPICS, AnalyticsSettings
from services.analytics.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.integration
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _topology(project: str) -> tuple[set[str], dict[str, str]]:
    """The project's topic ids, and its subscriptions' ids -> their topic ids."""
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topics = {
        t.name.rsplit("/", 1)[1] for t in publisher.list_topics(project=f"projects/{project}")
    }
    subs = {
        s.name.rsplit("/", 1)[1]: s.topic.rsplit("/", 1)[1]
        for s in subscriber.list_subscriptions(project=f"projects/{project}")
    }
    subscriber.close()
    return topics, subs


async def _ingest_one(ingest: PubSubIngest, store: DuckDBStore, project: str, topic: str) -> None:
    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic)
    mid = publisher.publish(path, b'{"n": 1}', tenant="acme", event_topic="ai-usage").result(10)
    acked = ingest.counts[Outcome.ACK]

    async def stored() -> bool:
        rows = await store.events("acme", since=SINCE, limit=100)
        return f"pubsub:{mid}" in {r.event_id for r in rows}

    await wait_for(stored, within=20, what=f"the event published to {topic} stored")
    assert ingest.counts[Outcome.ACK] == acked + 1


async def test_the_consolidated_topics_and_subscriptions_are_created_when_missing(
    pubsub_emulator: PubSubEmulator,  # noqa: F811
) -> None:
    project = f"p-{uuid.uuid4().hex[:12]}"
    assert _topology(project) == (set(), {})
    settings = AnalyticsSettings(pubsub_project=project, pubsub_dead_letter_topic="dead-letters")
    assert len(settings.pubsub_topics) == 7
    store = DuckDBStore()
    await store.open()
    try:
        for attempt in (1, 2):
            ingest = from_settings(settings, store)
            assert ingest is not None
            await ingest.start()
            try:
                topics, subs = _topology(project)
                assert topics == {*CONSOLIDATED_TOPICS, "dead-letters"}, attempt
                assert subs == {f"analytics-ingest-{t}": t for t in CONSOLIDATED_TOPICS}, attempt
                if attempt == 1:
                    # only on the first: the emulator does not drop a stream the client closed
                    # (its gRPC fails on the reset), so after a restart it may hand a message
                    # to the closed stream and redeliver only after the ack deadline
                    await _ingest_one(ingest, store, project, "workflow-events")
            finally:
                await ingest.stop()
        assert len(await store.events("acme", since=SINCE, limit=100)) == 1
    finally:
        await store.close()
    # nothing asked for, nothing started
    assert from_settings(AnalyticsSettings(), store) is None
