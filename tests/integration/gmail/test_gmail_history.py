"""History polling with a real Redis and the real token reader: each change is published once,
whatever the number of polls or pollers; the first poll starts from now; a mailbox whose
history is gone resets once."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from typing import Any

import redis.asyncio as aioredis
from fakes.google import FakeGmail
from gateway.conftest import RedisServer, wait_for
from lightkube import AsyncClient

from services.common.oauth_tokens import OAuthTokens, TokenReader
from services.gmail.gmailapi import GmailApi
from services.gmail.history import HistoryPoller, KubeConnections

from .conftest import Connections, unique

TOPIC = "email-updates"


def _mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "bob@example.com", "ada@example.com", subject
    msg.set_content("body")
    return msg.as_bytes()


def poller(redis: Any, client: AsyncClient, fake: FakeGmail) -> HistoryPoller:
    def api(tokens: OAuthTokens) -> GmailApi:
        return GmailApi(
            tokens.access_token.get_secret_value(),
            api_url=fake.endpoint + "/",
            timeout=10,
            connection=tokens.connection,
        )

    return HistoryPoller(
        redis,
        TokenReader(client),  # type: ignore[arg-type]
        KubeConnections(client),
        api=api,
        topic=TOPIC,
        lock_seconds=30,
    )


class Subscriber:
    """Every message on the tenant's email-updates channel, in order."""

    def __init__(self, redis: aioredis.Redis, tenant: str) -> None:
        self.pubsub = redis.pubsub()
        self.channel = f"xynergy:events:{tenant}:{TOPIC}"
        self.got: list[dict[str, Any]] = []

    async def __aenter__(self) -> Subscriber:
        await self.pubsub.subscribe(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()

    async def drain(self) -> list[dict[str, Any]]:
        while msg := await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2):
            payload = json.loads(msg["data"])
            payload.pop("_meta")
            self.got.append(payload)
        return self.got


async def test_each_change_is_published_once(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    connections: Connections,
    lightkube_client: AsyncClient,
    fake_gmail: FakeGmail,
) -> None:
    tenant, token = unique("acme"), unique("ya29")
    address = f"{tenant}@example.com"
    box = fake_gmail.grant(token, address)
    box.deliver(_mail("before the connection"))
    connections.connect("gmail", tenant=tenant, provider="gmail", token=token, email=address)
    one = poller(redis_client, lightkube_client, fake_gmail)
    two = poller(aioredis.Redis.from_url(redis_server.url), lightkube_client, fake_gmail)
    async with Subscriber(redis_client, tenant) as sub:
        assert await one.poll(tenant) == 0  # starts from now: no backlog
        first = box.deliver(_mail("first"))
        second = box.deliver(_mail("second"))
        box.relabel(first, ["STARRED"], ["UNREAD"])
        box.delete(second.id)
        counts = await asyncio.gather(one.poll(tenant), two.poll(tenant), one.poll(tenant))
        assert await one.poll(tenant) == 0
        assert await two.poll(tenant) == 0
        third = box.deliver(_mail("third"))
        assert await two.poll(tenant) == 1

        async def all_arrived() -> bool:
            return len(await sub.drain()) >= 6

        await wait_for(all_arrived, within=10, what="six email-updates")
        changes = [(e["change"], e["messageId"]) for e in await sub.drain()]
    assert sum(counts) == 5
    assert changes == [
        ("messageAdded", first.id),
        ("messageAdded", second.id),
        ("labelsAdded", first.id),
        ("labelsRemoved", first.id),
        ("messageDeleted", second.id),
        ("messageAdded", third.id),
    ]
    labels = [e.get("changedLabelIds") for e in sub.got[2:4]]
    assert labels == [["STARRED"], ["UNREAD"]]


async def test_history_pages_are_followed_and_each_change_published_once(
    redis_client: aioredis.Redis,
    connections: Connections,
    lightkube_client: AsyncClient,
    fake_gmail: FakeGmail,
) -> None:
    tenant, token = unique("acme"), unique("ya29")
    box = fake_gmail.grant(token, f"{tenant}@example.com")
    connections.connect("gmail", tenant=tenant, provider="gmail", token=token)
    p = poller(redis_client, lightkube_client, fake_gmail)
    await p.poll(tenant)
    for n in range(650):  # more than one page of 500
        box.deliver(_mail(f"m{n}"))
    async with Subscriber(redis_client, tenant) as sub:
        assert await p.poll(tenant) == 650
        assert await p.poll(tenant) == 0

        async def all_arrived() -> bool:
            return len(await sub.drain()) >= 650

        await wait_for(all_arrived, within=20, what="650 email-updates")
    assert len({e["messageId"] for e in sub.got}) == 650


async def test_expired_history_resets_once_and_goes_on_from_now(
    redis_client: aioredis.Redis,
    connections: Connections,
    lightkube_client: AsyncClient,
    fake_gmail: FakeGmail,
) -> None:
    tenant, token = unique("acme"), unique("ya29")
    box = fake_gmail.grant(token, f"{tenant}@example.com")
    connections.connect("gmail", tenant=tenant, provider="gmail", token=token)
    p = poller(redis_client, lightkube_client, fake_gmail)
    await p.poll(tenant)
    box.deliver(_mail("lost"))
    box.forget_history()
    async with Subscriber(redis_client, tenant) as sub:
        assert await p.poll(tenant) == 1
        assert await p.poll(tenant) == 0
        newer = box.deliver(_mail("newer"))
        assert await p.poll(tenant) == 1

        async def both() -> bool:
            return len(await sub.drain()) >= 2

        await wait_for(both, within=10, what="reset and the newer message")
    assert [e["change"] for e in sub.got] == ["history_reset", "messageAdded"]
    assert sub.got[1]["messageId"] == newer.id


async def test_poll_all_polls_connected_tenants_only(
    redis_client: aioredis.Redis,
    connections: Connections,
    lightkube_client: AsyncClient,
    fake_gmail: FakeGmail,
) -> None:
    pending, ready, token = unique("pending"), unique("ready"), unique("ya29")
    connections.create("gmail-pending", tenant=pending, provider="gmail")
    connections.status("gmail-pending", phase="PendingAuthorization", authorizationURL="https://x")
    fake_gmail.grant(token, f"{ready}@example.com")
    connections.connect("gmail-ready", tenant=ready, provider="gmail", token=token)
    await poller(redis_client, lightkube_client, fake_gmail).poll_all()
    ns = connections.namespace
    assert await redis_client.get(f"xynergy:gmail:history:{ns}/gmail-ready") is not None
    assert await redis_client.get(f"xynergy:gmail:history:{ns}/gmail-pending") is None
