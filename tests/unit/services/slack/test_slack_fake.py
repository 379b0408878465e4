"""The fake Web API itself: a bug in one of its methods is Slack's own answer to an internal
error, not a dropped connection."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from fakes.crashes import assert_crash_logged, crash
from fakes.slack import FakeSlack
from fakes.slack import state as slack_state
from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]
TOKEN = "xoxb-fake-" + "f" * 24


def test_an_exception_in_a_method_is_slacks_internal_error_and_the_fake_keeps_serving(
    fake: FakeSlack,
    client: TestClient,
    as_user: Headers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slack answers a failure of its own in the usual envelope (HTTP 200, ``ok: false``,
    ``internal_error``); the fake's base handler dropped the connection instead (clients saw
    RemoteDisconnected). The traceback is logged at error level for whoever debugs the test."""

    monkeypatch.setitem(slack_state._METHODS, "users.list", crash)
    fake.grant(TOKEN)
    fake.state.add_channel("general")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=fake.endpoint, timeout=10) as http:
        answer = http.get("/api/users.list", headers=auth)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == {"ok": False, "error": "internal_error"}
        after = http.get("/api/conversations.list", headers=auth)  # the same connection
    assert after.status_code == 200
    assert after.json()["ok"] is True
    assert [c["name"] for c in after.json()["channels"]] == ["general"]
    assert_crash_logged(caplog, secrets=[TOKEN])
    # what the service makes of it: Slack's code, as an upstream error
    r = client.get("/api/v2/slack/users", headers=as_user())
    assert r.status_code == 502, r.text
    assert r.json()["message"] == "Slack answered internal_error"


@pytest.mark.parametrize("length", [b"-1", b"abc", b"1.5", b"", b"+3", b"1_0", b"\xb2"])
def test_a_post_whose_content_length_is_not_a_length_is_a_400_and_the_connection_closes(
    fake: FakeSlack, length: bytes
) -> None:
    """A Content-Length that is not a non-negative integer (``int()`` takes ``+3``, ``1_0`` and
    ``²``; ``-1`` read to the end of the stream) is an HTTP server's 400 Bad Request, and
    the connection is closed: where the body ends is unknown. The fakes' base handler dropped
    the connection, waited for a body that never came, or (an empty value) read no body."""
    url = urlsplit(fake.endpoint)
    request = b"POST /api/users.list HTTP/1.1\r\nHost: slack\r\nContent-Length: %s\r\n\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(request % length)
        answer = b""
        while chunk := sock.recv(65536):  # to the end: the fake closes the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert b"Content-Length is not a non-negative integer" in body
    # the fake serves the next connection
    fake.grant(TOKEN)
    after = httpx.get(
        f"{fake.endpoint}/api/conversations.list", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert after.json()["ok"] is True
