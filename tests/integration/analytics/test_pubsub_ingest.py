"""Platform events from Google Pub/Sub into the store, against the real gcloud Pub/Sub
emulator and a real DuckDB store: published messages become rows; a store failure nacks, the
emulator redelivers and exactly one row is kept (also when the failure came after the write);
malformed messages go to the dead-letter topic with their reason, logged without their data."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from gateway.conftest import wait_for
from google.cloud import pubsub_v1

from analytics.pubsub_support import PubSubEmulator, pubsub_emulator  # noqa: F401 - the fixture
from services.analytics.pubsub import Outcome, PubSubIngest
from services.analytics.records import EventRow
from services.analytics.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.integration
TOPICS = ["crm-changes", "ai-usage"]
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class FlakyStore(DuckDBStore):
    """Fails the first ``failures`` ingest writes, before or after the rows are written."""

    def __init__(self, failures: int = 0, *, after_write: bool = False) -> None:
        super().__init__()
        self.failures = failures
        self.after_write = after_write
        self.calls = 0

    async def add_events_once(self, rows: Sequence[EventRow]) -> int:
        self.calls += 1
        if self.failures and not self.after_write:
            self.failures -= 1
            raise ConnectionError("store down")
        n = await super().add_events_once(rows)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store lost the reply")
        return n


@contextlib.asynccontextmanager
async def _running(
    emulator: PubSubEmulator, store: DuckDBStore, **kw: Any
) -> AsyncIterator[tuple[PubSubIngest, pubsub_v1.PublisherClient, str]]:
    topic, sub = emulator.topic_and_subscription()
    await store.open()
    ingest = PubSubIngest(store, project=emulator.project, subscription=sub, topics=TOPICS, **kw)
    await ingest.start()
    publisher = pubsub_v1.PublisherClient()
    try:
        yield ingest, publisher, publisher.topic_path(emulator.project, topic)
    finally:
        await ingest.stop()
        await store.close()


def _publish(publisher: pubsub_v1.PublisherClient, path: str, data: bytes, **attrs: str) -> str:
    return str(publisher.publish(path, data, **attrs).result(timeout=10))


async def _rows(store: DuckDBStore, tenant: str) -> list[EventRow]:
    return await store.events(tenant, since=SINCE, limit=1000)


async def test_published_messages_become_rows_of_their_tenant(
    pubsub_emulator: PubSubEmulator,  # noqa: F811
) -> None:
    store = DuckDBStore()
    async with _running(pubsub_emulator, store) as (ingest, publisher, path):
        sent = {
            _publish(
                publisher, path, json.dumps({"deal": i}).encode(), tenant="acme", event_topic=t
            )
            for i, t in enumerate(TOPICS)
        }
        other = _publish(publisher, path, b'{"tokens": 7}', tenant="globex", event_topic="ai-usage")

        async def stored() -> bool:
            return ingest.counts[Outcome.ACK] == 3

        await wait_for(stored, within=20, what="three messages acked")
        acme = await _rows(store, "acme")
        assert {r.event_id for r in acme} == {f"pubsub:{m}" for m in sent}
        assert sorted((r.topic, json.loads(r.payload)["deal"]) for r in acme) == [
            ("ai-usage", 1),
            ("crm-changes", 0),
        ]
        [row] = await _rows(store, "globex")
        assert (row.event_id, row.topic, row.payload) == (
            f"pubsub:{other}",
            "ai-usage",
            '{"tokens":7}',
        )


@pytest.mark.parametrize("after_write", [False, True], ids=["before-write", "after-write"])
async def test_a_store_failure_is_redelivered_and_kept_once(
    pubsub_emulator: PubSubEmulator,  # noqa: F811
    after_write: bool,
) -> None:
    store = FlakyStore(failures=1, after_write=after_write)
    async with _running(pubsub_emulator, store) as (ingest, publisher, path):
        sent = _publish(publisher, path, b'{"deal": 1}', tenant="acme", event_topic="crm-changes")

        async def acked() -> bool:
            return ingest.counts[Outcome.ACK] == 1

        await wait_for(acked, within=20, what="the redelivered message acked")
        assert ingest.counts[Outcome.NACK] == 1
        assert store.calls == 2
        rows = await _rows(store, "acme")
        assert [r.event_id for r in rows] == [f"pubsub:{sent}"]


async def test_malformed_messages_are_dead_lettered_without_their_data(
    pubsub_emulator: PubSubEmulator,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead_topic, dead_sub = pubsub_emulator.topic_and_subscription()
    store = DuckDBStore()
    secret = "sk-live-SECRET-in-the-payload"
    bad = {
        "data: expected JSON": (
            f"not json {secret}".encode(),
            {"tenant": "acme", "event_topic": "ai-usage"},
        ),
        "tenant: expected a tenant id": (
            b'{"k": 1}',
            {"tenant": "Not A Tenant!", "event_topic": "ai-usage"},
        ),
        "attributes.event_topic: expected one of": (
            b'{"k": 1}',
            {"tenant": "acme", "event_topic": "nope"},
        ),
        "data: expected a JSON object": (
            json.dumps([secret]).encode(),
            {"tenant": "acme", "event_topic": "ai-usage"},
        ),
    }
    caplog.set_level(logging.WARNING, logger="xynergy.analytics")
    async with _running(pubsub_emulator, store, dead_letter_topic=dead_topic) as (
        ingest,
        publisher,
        path,
    ):
        ids = {_publish(publisher, path, data, **attrs): why for why, (data, attrs) in bad.items()}
        good = _publish(publisher, path, b'{"ok": true}', tenant="acme", event_topic="ai-usage")

        async def handled() -> bool:
            return (
                ingest.counts[Outcome.DEAD_LETTER] == len(bad) and ingest.counts[Outcome.ACK] == 1
            )

        await wait_for(handled, within=20, what="malformed messages dead-lettered")
        assert [r.event_id for r in await _rows(store, "acme")] == [f"pubsub:{good}"]

    subscriber = pubsub_v1.SubscriberClient()
    got = subscriber.pull(
        subscription=subscriber.subscription_path(pubsub_emulator.project, dead_sub),
        max_messages=10,
        timeout=10,
    ).received_messages
    subscriber.close()
    dead = {m.message.attributes["source_message_id"]: m.message for m in got}
    assert set(dead) == set(ids)
    for mid, why in ids.items():
        assert dead[mid].attributes["dead_letter_reason"].startswith(why)
        assert dead[mid].data == bad[why][0]
    logged = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(logged) == len(bad)
    assert all(secret not in r.getMessage() and secret not in str(r.__dict__) for r in logged)
