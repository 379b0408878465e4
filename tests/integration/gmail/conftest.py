"""Real parts for the Gmail service's integration tests: the Slack package's (redis-server,
the session's kube-apiserver with OAuthConnections written by the test, gateways) and the fake
Gmail API in a thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.google import FakeGmail
from slack.conftest import (  # noqa: F401 - fixtures re-exported for this package
    INTERNAL_KEY,
    Connections,
    connections,
    gateway,
    gateway_factory,
    lightkube_client,
    redis_client,
    redis_server,
    unique,
    upstream,
)


@pytest.fixture(scope="module")
def fake_gmail() -> Iterator[FakeGmail]:
    with FakeGmail() as fake:
        yield fake
