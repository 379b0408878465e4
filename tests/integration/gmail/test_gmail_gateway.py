"""The Gmail service behind a real gateway, on the real token reader: 409 naming the
OAuthConnection and its authorization URL until it is Connected (through /api/v2/email too),
then calls with the connection's token; a sent message is parsed back at the fake."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes.google import FakeGmail
from gateway.conftest import GatewayFactory, RedisServer, make_jwt, serve
from lightkube import AsyncClient

from services.common.oauth_tokens import TokenReader
from services.common.settings import InternalIdentitySettings
from services.gmail.app import create_app
from services.gmail.settings import GmailSettings

from .conftest import INTERNAL_KEY, Connections, unique


@pytest.fixture
async def gmail_url(
    redis_server: RedisServer, lightkube_client: AsyncClient, fake_gmail: FakeGmail
) -> AsyncIterator[str]:
    settings = GmailSettings(
        api_url=fake_gmail.endpoint + "/", redis_url=redis_server.url, poll_interval_seconds=0
    )
    app = create_app(
        settings,
        internal_settings=InternalIdentitySettings(signing_key=INTERNAL_KEY),  # type: ignore[arg-type]
        tokens=TokenReader(lightkube_client),  # type: ignore[arg-type]
        connections=_Nobody(),
    )
    async with serve(app) as url:
        yield url


class _Nobody:
    async def tenants(self) -> list[str]:
        return []


def _routes(url: str) -> dict[str, Any]:
    route = {"prefix": "/api/v2/gmail", "aliases": ["/api/v2/email"]}
    return {"services": [{"name": "gmail", "url": url, "routes": [route]}]}


async def test_409_until_connected_then_the_connections_token_is_used(
    gmail_url: str,
    gateway_factory: GatewayFactory,
    connections: Connections,
    fake_gmail: FakeGmail,
) -> None:
    tenant, token = unique("acme"), unique("ya29")
    auth = {"Authorization": f"Bearer {make_jwt(tenant_id=tenant, roles=['editor'])}"}
    authorize = "https://accounts.google.com/o/oauth2/v2/auth?client_id=x&state=s"
    connections.create("gmail", tenant=tenant, provider="gmail")
    connections.status("gmail", phase="PendingAuthorization", authorizationURL=authorize)
    async with gateway_factory(_routes(gmail_url)) as gw:
        for prefix in ("/api/v2/gmail", "/api/v2/email"):
            r = await gw.http.get(f"{prefix}/labels", headers=auth)
            assert r.status_code == 409, r.text
            body = r.json()
            assert body["connection"] == f"{connections.namespace}/gmail"
            assert body["authorizationURL"] == authorize
            assert body["phase"] == "PendingAuthorization"
        assert not [p for p in fake_gmail.requests if p[1].endswith("/labels")]

        box = fake_gmail.grant(token, f"{tenant}@example.com")
        connections.tokens("gmail", token)
        connections.status("gmail", phase="Connected")
        r = await gw.http.get("/api/v2/email/labels", headers=auth)
        assert r.status_code == 200, r.text
        assert "INBOX" in [lab["name"] for lab in r.json()["labels"]]

        r = await gw.http.post(
            "/api/v2/gmail/messages/send",
            json={
                "to": ["carol@example.com"],
                "subject": "Report",
                "text": "attached",
                "attachments": [
                    {
                        "filename": "r.csv",
                        "content_type": "text/csv",
                        "data": base64.b64encode(b"a,b\n1,2\n").decode(),
                    }
                ],
            },
            headers=auth,
        )
        assert r.status_code == 201, r.text
        [sent] = box.sent
        assert sent["To"] == "carol@example.com"
        [attachment] = list(sent.iter_attachments())
        assert attachment.get_filename() == "r.csv"
        assert attachment.get_content() == "a,b\n1,2\n"
        assert token not in r.text
