"""``/pubsub/consolidation-metrics`` reports the buses that run, through the app (served by
uvicorn, its lifespan starting the ingests) against the real gcloud Pub/Sub emulator and a real
redis-server: with Pub/Sub on, both buses, the 7 consolidated topics with the ingest's
subscription on each (pulling), the dead-letter topic, and the caller's tenant's ack and
dead-letter counts as messages are handled; another tenant sees none of them. Without
``PUBSUB_PROJECT`` it reports the Redis bus alone."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from ai_router.conftest import INTERNAL, SIGNER
from gateway.conftest import RedisServer, serve, wait_for
from google.cloud import pubsub_v1

from analytics.pubsub_support import PubSubEmulator, pubsub_emulator  # noqa: F401 - the fixture
from services.analytics.app import create_app
from services.analytics.settings import CONSOLIDATED_TOPICS, AnalyticsSettings
from services.common.identity import IDENTITY_HEADER
from services.common.tenancy import Identity

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
PATH = "/pubsub/consolidation-metrics"
ID = uuid.uuid4().hex[:6]
ACME, OTHER = f"acme-{ID}", f"other-{ID}"


def _as(tenant: str) -> dict[str, str]:
    return {IDENTITY_HEADER: SIGNER.sign(Identity("u1", tenant, roles=("viewer",)))}


def _settings(redis: RedisServer, **kw: Any) -> AnalyticsSettings:
    return AnalyticsSettings(redis_url=redis.url, kubernetes=False, log_level="WARNING", **kw)


async def _metrics(url: str, tenant: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(url + PATH, headers=_as(tenant))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_metrics_report_both_buses_topics_and_outcome_counts(
    pubsub_emulator: PubSubEmulator,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    project = f"p-{uuid.uuid4().hex[:12]}"
    settings = _settings(
        redis_server, pubsub_project=project, pubsub_dead_letter_topic="dead-letters"
    )
    async with serve(create_app(settings, internal_settings=INTERNAL)) as url:
        body = await _metrics(url, ACME)
        assert body["bus"] == "redis+pubsub"
        assert body["buses"] == ["redis", "pubsub"]
        ps = body["pubsub"]
        assert ps["project"] == project
        assert ps["dead_letter_topic"] == f"projects/{project}/topics/dead-letters"
        assert [t["topic"] for t in ps["topics"]] == list(CONSOLIDATED_TOPICS)
        for t in ps["topics"]:
            assert t["subscription"] == (
                f"projects/{project}/subscriptions/analytics-ingest-{t['topic']}"
            )
            assert t["pulling"] is True, t
        assert ps["counts"] == {"ack": 0, "nack": 0, "dead-letter": 0}

        publisher = pubsub_v1.PublisherClient()
        path = publisher.topic_path(project, "analytics-events")
        publisher.publish(path, b'{"n": 1}', tenant=ACME, event_topic="ai-usage").result(10)
        publisher.publish(path, b'{"n": 2}', tenant=ACME, event_topic="ai-usage").result(10)
        publisher.publish(path, b"[1]", tenant=ACME, event_topic="ai-usage").result(10)

        async def handled() -> bool:
            counts = (await _metrics(url, ACME))["pubsub"]["counts"]
            return bool(counts["ack"] == 2 and counts["dead-letter"] == 1)

        await wait_for(handled, within=30, what="two acks and a dead letter counted")
        body = await _metrics(url, ACME)
        assert body["pubsub"]["counts"] == {"ack": 2, "nack": 0, "dead-letter": 1}
        assert body["events_24h"] == {"ai-usage": 2}
        other = await _metrics(url, OTHER)
        assert other["pubsub"]["counts"] == {"ack": 0, "nack": 0, "dead-letter": 0}
        assert other["events_24h"] == {}


async def test_without_pubsub_the_metrics_report_the_redis_bus_alone(
    redis_server: RedisServer,
) -> None:
    async with serve(create_app(_settings(redis_server), internal_settings=INTERNAL)) as url:
        body = await _metrics(url, ACME)
    assert (body["bus"], body["buses"], body["pubsub"]) == ("redis", ["redis"], None)
    assert body["redis"]["topics"] == body["topics"]
