"""The Gmail app against the fake Gmail API (a thread of the test process), with a token
source standing in for the OAuthConnection reader: tenant ``acme`` is connected to
ada@example.com, every other tenant is not. History polling is off here (its own tests)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest
from fakes.google import FakeGmail, Mailbox
from fakes.slack.tokens import StaticTokens, identity_headers
from fastapi.testclient import TestClient

from services.common.settings import InternalIdentitySettings
from services.gmail.app import create_app
from services.gmail.settings import GmailSettings

INTERNAL = InternalIdentitySettings(signing_key="k" * 40)  # type: ignore[arg-type]
TOKEN = "ya29.unit-" + "g" * 24
ADDRESS = "ada@example.com"


class NoConnections:
    async def tenants(self) -> list[str]:
        return []


@pytest.fixture
def fake() -> Iterator[FakeGmail]:
    with FakeGmail() as fake:
        fake.grant(TOKEN, ADDRESS)
        yield fake


@pytest.fixture
def box(fake: FakeGmail) -> Mailbox:
    return fake.mailbox(ADDRESS)


@pytest.fixture
def tokens() -> StaticTokens:
    return StaticTokens({"acme": TOKEN})


@pytest.fixture
def client(fake: FakeGmail, tokens: StaticTokens) -> Iterator[TestClient]:
    settings = GmailSettings(
        api_url=fake.endpoint + "/", redis_url="redis://127.0.0.1:9/0", poll_interval_seconds=0
    )
    app = create_app(
        settings, internal_settings=INTERNAL, tokens=tokens, connections=NoConnections()
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture
def as_user() -> Callable[..., dict[str, str]]:
    return functools.partial(identity_headers, INTERNAL)
