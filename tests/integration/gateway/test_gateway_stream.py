"""The stream contract, with the real JavaScript socket.io client run by node."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.common.events import publish_event

from .conftest import NODE_DIR, GatewayFactory, RunningGateway, make_jwt, wait_for

STREAM_PATH = "/api/xynergyos/v2/stream"
TOPICS = "slack-messages,email-updates,crm-changes"


class JsClient:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, url: str, token: str) -> JsClient:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is missing: run `make deps` (hack/deps/node-tools.sh)")
        proc = await asyncio.create_subprocess_exec(
            node,
            str(NODE_DIR / "stream-client.mjs"),
            url,
            STREAM_PATH,
            token,
            TOPICS,
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def command(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def next_of(self, kind: str) -> dict[str, Any]:
        """Read lines until one of type ``kind`` (bounded by the test timeout)."""
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout=30)
            if not raw:
                raise AssertionError(f"client exited before {kind}; saw {self.lines}")
            line = json.loads(raw)
            self.lines.append(line)
            if line["type"] == kind:
                return line

    async def events_until_final(self) -> list[dict[str, Any]]:
        events = []
        while True:
            line = await self.next_of("event")
            events.append(line)
            if line["data"].get("final"):
                return events

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        await self.proc.wait()


async def _connected(url: str, token: str) -> JsClient:
    client = await JsClient.start(url, token)
    await client.next_of("connect")
    await client.next_of("subscribed")
    return client


async def test_js_client_receives_only_its_tenants_events(
    gateway: RunningGateway, redis_client: aioredis.Redis
) -> None:
    a = await JsClient.start(gateway.url, make_jwt(user_id="sa", tenant_id="tenant-a"))
    b = await JsClient.start(gateway.url, make_jwt(user_id="sb", tenant_id="tenant-b"))
    try:
        for client in (a, b):
            await client.next_of("connect")
            ack = await client.next_of("subscribed")
            assert ack["ack"] == {"subscribed": TOPICS.split(",")}
        await publish_event(
            redis_client, tenant_id="tenant-a", topic="crm-changes", payload={"n": "a1"}
        )
        await publish_event(
            redis_client, tenant_id="tenant-b", topic="slack-messages", payload={"n": "b1"}
        )
        await publish_event(
            redis_client, tenant_id="tenant-c", topic="crm-changes", payload={"n": "c1"}
        )
        await redis_client.publish("xynergy:events:tenant-a:not-a-topic", json.dumps({"n": "x"}))
        await publish_event(
            redis_client,
            tenant_id="tenant-a",
            topic="email-updates",
            payload={"n": "a2", "final": True},
        )
        await publish_event(
            redis_client,
            tenant_id="tenant-b",
            topic="email-updates",
            payload={"n": "b2", "final": True},
        )
        got_a = await a.events_until_final()
        got_b = await b.events_until_final()
        assert [(e["event"], e["data"]["n"]) for e in got_a] == [
            ("crm-changes", "a1"),
            ("email-updates", "a2"),
        ]
        assert [(e["event"], e["data"]["n"]) for e in got_b] == [
            ("slack-messages", "b1"),
            ("email-updates", "b2"),
        ]
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    ("token", "check"),
    [
        pytest.param("-", "missing", id="no-token"),
        pytest.param(make_jwt(ttl=-3600), "expired", id="expired"),
        pytest.param(make_jwt(secret="wrong" * 10), "signature", id="bad-signature"),
    ],
)
async def test_js_client_is_refused_without_a_valid_token(
    gateway: RunningGateway, token: str, check: str
) -> None:
    client = await JsClient.start(gateway.url, token)
    try:
        error = await client.next_of("connect_error")
        assert error["message"] == "unauthorized", client.lines
        assert error["data"] == {"check": check}
        assert not [line for line in client.lines if line["type"] == "connect"]
    finally:
        await client.close()


# -- connections do not outlive their token (issue 20 item 6) ---------------------------------


async def test_a_connection_is_closed_when_its_token_expires(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    async with gateway_factory(auth_leeway=0, stream_expiry_check_seconds=0.2) as gw:
        client = await _connected(gw.url, make_jwt(user_id="short", tenant_id="exp-co", ttl=3))
        try:
            await publish_event(
                redis_client, tenant_id="exp-co", topic="crm-changes", payload={"n": 1}
            )
            assert (await client.next_of("event"))["data"]["n"] == 1  # it works meanwhile
            expired = await client.next_of("event")  # the timer fires, no request needed
            assert expired["event"] == "token_expired"
            assert expired["data"]["reason"] == "token_expired"
            assert "fresh token" in expired["data"]["message"]
            assert (await client.next_of("disconnect"))["reason"] == "io server disconnect"
        finally:
            await client.close()
        fresh = await _connected(gw.url, make_jwt(user_id="short", tenant_id="exp-co"))
        try:
            await publish_event(
                redis_client, tenant_id="exp-co", topic="crm-changes", payload={"final": True}
            )
            assert (await fresh.next_of("event"))["data"] == {"final": True}
        finally:
            await fresh.close()


async def test_a_subscribe_after_expiry_is_refused(gateway_factory: GatewayFactory) -> None:
    # the timer is far away: only the check on subscribe can notice
    async with gateway_factory(auth_leeway=0, stream_expiry_check_seconds=3600) as gw:
        exp = int(time.time()) + 2
        client = await _connected(gw.url, make_jwt(user_id="late", exp=exp))
        try:

            async def past_expiry() -> bool:
                return time.time() > exp

            await wait_for(past_expiry, within=10, what="the token to expire")
            await client.command(cmd="subscribe", topics=["crm-changes"])
            expired = await client.next_of("event")
            assert expired["event"] == "token_expired"
            assert (await client.next_of("disconnect"))["reason"] == "io server disconnect"
            acks = [line for line in client.lines if line["type"] == "subscribed"]
            assert len(acks) == 1  # only the first, from before the expiry
        finally:
            await client.close()
