"""PubSubIngest.handle on a real in-memory DuckDB store: a valid message is one row (twice
delivered, still one), each malformed message is dead-lettered with a reason naming what is
wrong, and a store error asks for redelivery."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from services.analytics.pubsub import Outcome, PubSubIngest
from services.analytics.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.unit
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass
class Message:
    """What the subscriber hands the callback: id, data, attributes."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def store() -> AsyncIterator[DuckDBStore]:
    s = DuckDBStore()
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def ingest(store: DuckDBStore, monkeypatch: pytest.MonkeyPatch) -> PubSubIngest:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")  # clients built, never called
    return PubSubIngest(store, project="p", subscription="s", topics=["ai-usage"])


async def test_a_message_is_one_row_however_often_delivered(
    ingest: PubSubIngest, store: DuckDBStore
) -> None:
    msg = Message(
        "42", b'{"tokens": 3, "_meta": {"seq": 7}}', {"tenant": "acme", "event_topic": "ai-usage"}
    )
    assert await ingest.handle(msg) is Outcome.ACK
    assert await ingest.handle(msg) is Outcome.ACK
    [row] = await store.events("acme", since=SINCE)
    assert (row.event_id, row.topic, row.seq, row.payload) == (
        "pubsub:42",
        "ai-usage",
        7,
        '{"tokens":3}',
    )


@pytest.mark.parametrize(
    ("data", "attributes", "reason"),
    [
        (b"{not json", {"tenant": "acme", "event_topic": "ai-usage"}, "data: expected JSON"),
        (b"[1]", {"tenant": "acme", "event_topic": "ai-usage"}, "data: expected a JSON object"),
        (b'{"_meta": 5}', {"tenant": "acme", "event_topic": "ai-usage"}, "data._meta: expected"),
        (b"{}", {"event_topic": "ai-usage"}, "tenant: expected a tenant id"),
        (b"{}", {"tenant": "acme"}, "attributes.event_topic: expected one of ['ai-usage']"),
    ],
)
async def test_malformed_messages_are_dead_lettered_with_the_reason(
    ingest: PubSubIngest,
    store: DuckDBStore,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    attributes: dict[str, str],
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="xynergy.analytics")
    assert await ingest.handle(Message("1", data, attributes)) is Outcome.DEAD_LETTER
    assert await store.events("acme", since=SINCE) == []
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("pubsub message malformed, dropped: " + reason)


async def test_a_store_error_asks_for_redelivery(ingest: PubSubIngest, store: DuckDBStore) -> None:
    await store.close()  # every write now fails
    msg = Message("9", b"{}", {"tenant": "acme", "event_topic": "ai-usage"})
    assert await ingest.handle(msg) is Outcome.NACK
    await store.open()
    assert await ingest.handle(msg) is Outcome.ACK
    assert ingest.counts == {Outcome.ACK: 1, Outcome.NACK: 1, Outcome.DEAD_LETTER: 0}
