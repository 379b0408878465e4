"""The gcloud Pub/Sub emulator for the analytics Pub/Sub ingest tests: started once per session
on a free port (readiness: its HTTP root answers ``Ok``), ``PUBSUB_EMULATOR_HOST`` set for the
client library, the process group stopped after the session. Import the fixture into the test
module that uses it (``from pubsub_support import pubsub_emulator``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from emulators import gcloud_emulator
from google.cloud import pubsub_v1

__all__ = ["PubSubEmulator", "pubsub_emulator"]


@dataclass
class PubSubEmulator:
    host: str
    project: str

    def topic_and_subscription(self, *, ack_deadline: int = 10) -> tuple[str, str]:
        """A fresh topic and a subscription on it (ids, in this emulator's project)."""
        topic, sub = f"t-{uuid.uuid4().hex[:10]}", f"s-{uuid.uuid4().hex[:10]}"
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic_path = publisher.topic_path(self.project, topic)
        publisher.create_topic(name=topic_path)
        subscriber.create_subscription(
            name=subscriber.subscription_path(self.project, sub),
            topic=topic_path,
            ack_deadline_seconds=ack_deadline,
        )
        subscriber.close()
        return topic, sub


@pytest.fixture(scope="session")
async def pubsub_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PubSubEmulator]:
    workdir = tmp_path_factory.mktemp("pubsub")
    (workdir / "data").mkdir()
    args = ("beta", "emulators", "pubsub", "start", f"--data-dir={workdir / 'data'}")
    async with gcloud_emulator(args, workdir, "PUBSUB_EMULATOR_HOST", "Pub/Sub") as host:
        yield PubSubEmulator(host=host, project="xynergy-test")
