"""The Redis bus ingest against a real redis-server and a real DuckDB store: an event delivered
twice (same ``_meta.id``, e.g. republished by a bridge or a retrying publisher on another
replica) is one row, in the same batch and in a later one."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import redis.asyncio as aioredis
from gateway.conftest import RedisServer, wait_for

from services.analytics.ingest import EventIngest
from services.analytics.stores.duckdb import DuckDBStore
from services.common.events import channel_for

pytestmark = pytest.mark.integration
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _message(event_id: str, seq: int, **payload: object) -> str:
    return json.dumps({**payload, "_meta": {"seq": seq, "id": event_id}})


async def test_an_event_delivered_twice_is_one_row(redis_server: RedisServer) -> None:
    store = DuckDBStore()
    await store.open()
    bus = aioredis.Redis.from_url(redis_server.url)
    ingest = EventIngest(bus, store, topics=["crm-changes"], batch_seconds=0.2)
    ingest.start()
    channel = channel_for("acme", "crm-changes")
    try:
        await wait_for(ingest.subscribed.wait, within=10, what="the ingest subscribed")

        async def stored(event_id: str) -> bool:
            rows = await store.events("acme", since=SINCE, limit=100)
            return event_id in {r.event_id for r in rows}

        # the same event twice in one batch, then a marker: once it is stored, both were seen
        await bus.publish(channel, _message("ev-1", 1, deal=1))
        await bus.publish(channel, _message("ev-1", 1, deal=1))
        await bus.publish(channel, _message("marker-1", 2))
        await wait_for(lambda: stored("marker-1"), within=10, what="the first marker stored")
        # and once more, in a later batch
        await bus.publish(channel, _message("ev-1", 1, deal=1))
        await bus.publish(channel, _message("marker-2", 3))
        await wait_for(lambda: stored("marker-2"), within=10, what="the second marker stored")

        rows = await store.events("acme", since=SINCE, limit=100)
        assert sorted(r.event_id for r in rows) == ["ev-1", "marker-1", "marker-2"]
        assert await store.event_counts("acme", since=SINCE) == {"crm-changes": 3}
        assert ingest.ingested == 3
    finally:
        await ingest.stop()
        await bus.aclose()
        await store.close()
