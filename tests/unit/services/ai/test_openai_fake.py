"""The fake OpenAI API itself: an exception in its handler is the API's 500, not a dropped
connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fakes.crashes import CRASH, assert_crash_logged
from fakes.openai import FakeOpenAI

KEY = "sk-fake-" + "k" * 24
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
ERROR = {
    "message": "The server had an error while processing your request. Sorry about that!",
    "type": "server_error",
    "param": None,
    "code": None,
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="openai", api_key=KEY) as fake:
        yield fake


def break_answer_once(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = fake.state.answer

    def broken(body: dict[str, Any]) -> tuple[str, dict[str, int]]:
        monkeypatch.setattr(fake.state, "answer", answer)  # the next call is answered
        raise RuntimeError(CRASH)

    monkeypatch.setattr(fake.state, "answer", broken)


async def test_an_exception_in_the_fake_is_openais_500_and_it_keeps_serving(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenAI answers a failure of its own with HTTP 500 and a ``server_error`` body; the
    fake's handler dropped the connection instead (clients saw RemoteDisconnected). The
    traceback is logged at error level, without the key."""
    break_answer_once(fake, monkeypatch)
    auth = {"Authorization": f"Bearer {KEY}"}
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(base_url=fake.base_url, headers=auth, timeout=10) as http:
            answer = await http.post("/chat/completions", json=BODY)
            assert answer.status_code == 500
            assert answer.headers["content-type"] == "application/json"
            assert answer.json() == {"error": ERROR}
            after = await http.post("/chat/completions", json=BODY)  # the same connection
    assert after.status_code == 200, after.text
    assert after.json()["choices"][0]["message"]["content"] == "openai says: hello"
    assert_crash_logged(caplog, secrets=[KEY])
    # the real client raises what it raises for the API's 500
    break_answer_once(fake, monkeypatch)
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as err:
            await sdk.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert err.value.status_code == 500
    assert err.value.body == ERROR
