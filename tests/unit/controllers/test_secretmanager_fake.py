"""The fake Secret Manager API itself: an exception its handler does not catch (outside a
method: routing, encoding the answer) is the API's 500, recorded in ``crashes``, not a dropped
connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from fakes.crashes import CRASH, raising_once
from fakes.secretmanager import FakeSecretManager, project_number
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager_v1

pytestmark = pytest.mark.unit

INTERNAL = "Internal error encountered."


@pytest.fixture
def fake() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        yield fake


def test_an_uncaught_exception_is_the_apis_500_and_the_fake_keeps_serving(
    fake: FakeSecretManager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake.put("p", "db-password", b"v1")
    handle = fake.handle
    monkeypatch.setattr(fake, "handle", raising_once(handle))
    name = f"/v1/projects/{project_number('p')}/secrets/db-password"
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=fake.endpoint, timeout=10) as http:
        answer = http.get(name)
        assert answer.status_code == 500
        assert answer.json() == {"error": {"code": 500, "message": INTERNAL, "status": "INTERNAL"}}
        after = http.get(name)  # the same connection
    assert after.status_code == 200, after.text
    assert after.json()["name"] == name.removeprefix("/v1/")
    assert len(fake.crashes) == 1
    assert CRASH in fake.crashes[0]
    assert [r.levelno for r in caplog.records if r.exc_info] == [logging.ERROR]
    # the real client raises what it raises for the API's 500
    monkeypatch.setattr(fake, "handle", raising_once(handle))  # one more failure
    client = secretmanager_v1.SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=fake.endpoint),
    )
    with pytest.raises(gexc.InternalServerError):
        client.get_secret(name=name.removeprefix("/v1/"), retry=None)
    assert len(fake.crashes) == 2
