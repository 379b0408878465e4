"""The Slack app against the fake Slack Web API (a thread of the test process), with a token
source standing in for the OAuthConnection reader: tenant ``acme`` is connected, every other
tenant is not (PendingAuthorization with an authorization URL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from fakes.slack import FakeSlack
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.oauth_tokens import NotConnectedError, OAuthTokens
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.slack.app import create_app
from services.slack.settings import SlackSettings

INTERNAL = InternalIdentitySettings(signing_key="k" * 40)  # type: ignore[arg-type]
BOT_TOKEN = "xoxb-unit-" + "b" * 24
AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize?client_id=1&state=s"


@dataclass
class Tokens:
    """Per-tenant access tokens; a tenant without one is not connected."""

    access: dict[str, str] = field(default_factory=lambda: {"acme": BOT_TOKEN})
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def tokens(self, tenant: str, provider: str) -> OAuthTokens:
        self.asked.append((tenant, provider))
        if tenant not in self.access:
            raise NotConnectedError(
                tenant=tenant,
                provider=provider,
                connection=f"team/{provider}-{tenant}",
                phase="PendingAuthorization",
                authorization_url=AUTHORIZE_URL,
            )
        return OAuthTokens(
            connection=f"team/{provider}-{tenant}",
            tenant=tenant,
            provider=provider,
            access_token=SecretStr(self.access[tenant]),
            refresh_token=SecretStr(""),
            token_type="bot",
            scopes=(),
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )


class NoTeams:
    async def tenants(self, team_id: str) -> list[str]:
        return []


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.grant(BOT_TOKEN)
        yield fake


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def client(fake: FakeSlack, tokens: Tokens) -> Iterator[TestClient]:
    settings = SlackSettings(api_url=fake.base_url, redis_url="redis://127.0.0.1:9/0")
    app = create_app(settings, internal_settings=INTERNAL, tokens=tokens, teams=NoTeams())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def as_user() -> Callable[..., dict[str, str]]:
    def headers(*roles: str, tenant: str = "acme") -> dict[str, str]:
        identity = Identity(user_id="u-1", tenant_id=tenant, roles=roles or ("viewer",))
        return {IDENTITY_HEADER: InternalIdentitySigner(INTERNAL).sign(identity)}

    return headers
