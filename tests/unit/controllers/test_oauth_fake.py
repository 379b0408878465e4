"""The fake OAuth providers themselves: an exception in their handler is the provider's own
answer to a failure of its own, not a dropped connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fakes.crashes import assert_crash_logged, raising_once
from fakes.oauth import FakeOAuth
from pydantic import SecretStr

from controllers.providers.oauth import ClientCredentials, Endpoints, ProviderUnreachableError
from controllers.providers.oauth.google import GoogleOAuth
from controllers.providers.oauth.slack import SlackOAuth

SECRET = "fake-client-secret"
CLIENT = {"client_id": "fake-client-id", "client_secret": SECRET}
REDIRECT = "http://127.0.0.1:9/callback"

INTERNAL = {
    # oauth.v2.access is a Slack Web API method: its failures are said in the envelope
    "slack": (200, {"ok": False, "error": "internal_error"}, "internal_error"),
    # oauth2.googleapis.com/token: HTTP 500 and RFC 6749's error member, no description
    "google": (500, {"error": "internal_failure"}, "internal_failure"),
}


@pytest.fixture
def fake() -> Iterator[FakeOAuth]:
    with FakeOAuth() as fake:
        yield fake


@pytest.mark.parametrize("name", ["slack", "google"])
async def test_an_exception_in_the_fake_is_the_providers_internal_error_and_it_keeps_serving(
    fake: FakeOAuth, name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The token endpoint answers a failure of its own as the provider does (Slack: HTTP 200,
    ``ok: false``, ``internal_error``; Google: HTTP 500 ``internal_failure``), the authorize
    page with a 500 page; the fake's handler dropped the connection instead (clients saw
    RemoteDisconnected). The traceback is logged at error level, without codes or secrets."""
    state = fake.state(name)
    monkeypatch.setattr(state, "authorize", raising_once(state.authorize))
    monkeypatch.setattr(state, "token", raising_once(state.token))
    ends = fake.endpoints(name)
    query = {"client_id": CLIENT["client_id"], "redirect_uri": REDIRECT, "response_type": "code"}
    status, body, code = INTERNAL[name]
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(timeout=10) as http:
            page = await http.get(ends["authorize"], params=query)
            assert page.status_code == 500
            assert page.headers["content-type"].startswith("text/plain")
            assert page.text == "Internal Server Error"
            redirect = await http.get(ends["authorize"], params=query)  # the same connection
            assert redirect.status_code == 302, redirect.text
            grant = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
            form = {**CLIENT, "code": grant, "redirect_uri": REDIRECT}
            form["grant_type"] = "authorization_code"
            answer = await http.post(ends["token"], data=form)
            assert answer.status_code == status
            assert answer.headers["content-type"].startswith("application/json")
            assert answer.json() == body
            after = await http.post(ends["token"], data=form)  # the same connection
    assert after.status_code == 200, after.text
    assert after.json()["access_token"] in fake.issued()
    assert_crash_logged(caplog, times=2, secrets=[SECRET, *fake.issued()])
    # what the provider makes of it: the provider's code, as a failure to retry
    monkeypatch.setattr(state, "token", raising_once(state.token))
    oauth = (SlackOAuth if name == "slack" else GoogleOAuth)(Endpoints(**ends))
    creds = ClientCredentials(CLIENT["client_id"], SecretStr(SECRET))
    with pytest.raises(ProviderUnreachableError) as err:
        await oauth.refresh(creds, refresh_token=after.json()["refresh_token"])
    assert err.value.code == code
