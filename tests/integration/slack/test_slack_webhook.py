"""The Events API webhook with a real Redis and a real gateway: bad signatures, stale
timestamps and replays are refused and publish nothing; a good message event reaches the
socket.io client of the connected tenant only (the real JavaScript client)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from gateway.conftest import RedisServer, RunningGateway, make_jwt, serve
from gateway.test_gateway_stream import _connected
from lightkube import AsyncClient
from slack_sdk.signature import SignatureVerifier

from services.common.events import publish_event, sequence_key
from services.common.oauth_tokens import TokenReader
from services.common.settings import InternalIdentitySettings
from services.slack.app import create_app
from services.slack.settings import SlackSettings
from services.slack.teams import KubeTeamDirectory

from .conftest import INTERNAL_KEY, SIGNING_SECRET, Connections, unique

TOPIC = "slack-messages"


@pytest.fixture
async def slack_url(
    redis_server: RedisServer, lightkube_client: AsyncClient, fake_slack: Any
) -> AsyncIterator[str]:
    settings = SlackSettings(
        api_url=fake_slack.base_url,
        redis_url=redis_server.url,
        signing_secret=SIGNING_SECRET,  # type: ignore[arg-type]
        teams_cache_seconds=0,
        log_level="WARNING",
    )
    app = create_app(
        settings,
        internal_settings=InternalIdentitySettings(signing_key=INTERNAL_KEY),  # type: ignore[arg-type]
        tokens=TokenReader(lightkube_client),  # type: ignore[arg-type]
        teams=KubeTeamDirectory(lightkube_client, cache_seconds=0),
    )
    async with serve(app) as url:
        yield url


def envelope(team: str, text: str, *, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": team,
            "api_app_id": "A0FAKEAPP",
            "type": "event_callback",
            "event_id": event_id or unique("Ev"),
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": "C00000001",
                "channel_type": "channel",
                "user": "U00000001",
                "text": text,
                "ts": f"{time.time():.6f}",
            },
        }
    ).encode()


def signed(body: bytes, *, at: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    stamp = str(at if at is not None else int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": str(signature),
        "Content-Type": "application/json",
    }


async def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.post("/api/v2/slack/events", content=body, headers=headers)


async def test_url_verification_answers_the_challenge(slack_url: str) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV"}).encode()
    r = await _post(slack_url, body, signed(body))
    assert r.status_code == 200
    assert r.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}
    unsigned = await _post(slack_url, body, {"Content-Type": "application/json"})
    assert unsigned.status_code == 401


async def test_bad_signature_stale_timestamp_and_replay_are_refused(
    slack_url: str, connections: Connections, redis_client: aioredis.Redis
) -> None:
    tenant, team = unique("acme"), unique("T").upper()
    connections.connect("slack", tenant=tenant, provider="slack", token="xoxb-1", teamId=team)
    body = envelope(team, "hello")

    forged = await _post(slack_url, body, signed(body, secret="not-the-secret-" + "x" * 20))
    assert (forged.status_code, forged.json()["error"]) == (401, "invalid_signature")
    tampered = await _post(slack_url, envelope(team, "HELLO"), signed(body))
    assert (tampered.status_code, tampered.json()["error"]) == (401, "invalid_signature")
    stale = await _post(slack_url, body, signed(body, at=int(time.time()) - 600))
    assert (stale.status_code, stale.json()["error"]) == (401, "stale_request")
    future = await _post(slack_url, body, signed(body, at=int(time.time()) + 600))
    assert (future.status_code, future.json()["error"]) == (401, "stale_request")
    assert await redis_client.get(sequence_key(tenant, TOPIC)) is None

    headers = signed(body)
    first = await _post(slack_url, body, headers)
    assert first.status_code == 200, first.text
    again = await _post(slack_url, body, headers)
    assert (again.status_code, again.json()["error"]) == (401, "replayed_request")
    assert await redis_client.get(sequence_key(tenant, TOPIC)) == b"1"


async def test_slacks_own_retry_of_an_event_is_published_once(
    slack_url: str, connections: Connections, redis_client: aioredis.Redis
) -> None:
    tenant, team = unique("acme"), unique("T").upper()
    connections.connect("slack", tenant=tenant, provider="slack", token="xoxb-1", teamId=team)
    body = envelope(team, "hello", event_id="Ev0RETRY1")
    assert (await _post(slack_url, body, signed(body))).status_code == 200
    retry = await _post(slack_url, body, signed(body, at=int(time.time()) + 1))  # a new signature
    assert retry.status_code == 200
    assert await redis_client.get(sequence_key(tenant, TOPIC)) == b"1"


async def test_a_message_reaches_the_connected_tenants_socket_only(
    slack_url: str,
    gateway: RunningGateway,
    connections: Connections,
    redis_client: aioredis.Redis,
) -> None:
    tenant, other, team = unique("acme"), unique("globex"), unique("T").upper()
    connections.connect("slack", tenant=tenant, provider="slack", token="xoxb-1", teamId=team)
    connections.connect(
        "slack-other", tenant=other, provider="slack", token="xoxb-2", teamId=team + "X"
    )
    mine = await _connected(gateway.url, make_jwt(user_id="u-a", tenant_id=tenant))
    theirs = await _connected(gateway.url, make_jwt(user_id="u-b", tenant_id=other))
    try:
        body = envelope(team, "deal closed")
        r = await _post(slack_url, body, signed(body))
        assert r.status_code == 200, r.text
        got = await mine.next_of("event")
        assert got["event"] == TOPIC
        assert got["data"]["text"] == "deal closed"
        assert got["data"]["team_id"] == team
        await publish_event(redis_client, tenant_id=other, topic=TOPIC, payload={"final": True})
        seen = await theirs.events_until_final()
        assert [e["data"] for e in seen] == [{"final": True}]
    finally:
        await mine.close()
        await theirs.close()


async def test_an_edit_is_acknowledged_and_not_published(
    slack_url: str, connections: Connections, redis_client: aioredis.Redis
) -> None:
    tenant, team = unique("acme"), unique("T").upper()
    connections.connect("slack", tenant=tenant, provider="slack", token="xoxb-1", teamId=team)
    edit = json.loads(envelope(team, "x"))
    edit["event"]["subtype"] = "message_changed"
    body = json.dumps(edit).encode()
    assert (await _post(slack_url, body, signed(body))).status_code == 200
    assert await redis_client.get(sequence_key(tenant, TOPIC)) is None


async def test_signed_json_nested_past_the_parsers_limit_is_a_400(slack_url: str) -> None:
    """Found by fuzzing: a signed body of 20,000 nested arrays raised RecursionError in the
    JSON parser, which only ValueError was caught for: a 500. Now the 400 of unreadable JSON."""
    body = b"[" * 20_000 + b"]" * 20_000
    r = await _post(slack_url, body, signed(body))
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("body: "), r.text
