"""The Slack app against the fake Slack Web API (a thread of the test process), with a token
source standing in for the OAuthConnection reader: tenant ``acme`` is connected, every other
tenant is not (PendingAuthorization with an authorization URL)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest
from fakes.slack import FakeSlack
from fakes.slack.tokens import StaticTokens, identity_headers
from fastapi.testclient import TestClient

from services.common.settings import InternalIdentitySettings
from services.slack.app import create_app
from services.slack.settings import SlackSettings

INTERNAL = InternalIdentitySettings(signing_key="k" * 40)  # type: ignore[arg-type]
BOT_TOKEN = "xoxb-unit-" + "b" * 24


class NoTeams:
    async def tenants(self, team_id: str) -> list[str]:
        return []


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.grant(BOT_TOKEN)
        yield fake


@pytest.fixture
def tokens() -> StaticTokens:
    return StaticTokens({"acme": BOT_TOKEN})


@pytest.fixture
def client(fake: FakeSlack, tokens: StaticTokens) -> Iterator[TestClient]:
    settings = SlackSettings(api_url=fake.base_url, redis_url="redis://127.0.0.1:9/0")
    app = create_app(settings, internal_settings=INTERNAL, tokens=tokens, teams=NoTeams())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def as_user() -> Callable[..., dict[str, str]]:
    return functools.partial(identity_headers, INTERNAL)
