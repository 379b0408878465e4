"""What the router tells its caller when a provider refuses the request (a 4xx of the caller's
making): the provider's own words, in OpenAI's error shape or the platform's."""

from __future__ import annotations

import pytest

from services.ai.routers.chat import provider_refusal

pytestmark = pytest.mark.unit


def test_openai_shaped_refusals_keep_the_providers_message() -> None:
    body = provider_refusal(400, {"error": {"message": "max_tokens is too large", "type": "x"}})
    assert body["error"] == "provider_refused"
    assert body["status"] == 400
    assert body["message"] == "the provider refused the request: max_tokens is too large"
    assert "fields" not in body


def test_platform_shaped_refusals_keep_the_message_and_the_fields() -> None:
    internal = {
        "error": "validation_failed",
        "message": "messages.0.content.1: only text is supported by this model",
        "status": 422,
        "fields": [
            {"field": "messages.0.content.1", "message": "only text is supported by this model"},
            {"message": "no field"},
        ],
    }
    body = provider_refusal(422, internal)
    assert body["message"].endswith("messages.0.content.1: only text is supported by this model")
    assert body["fields"] == [
        {"field": "messages.0.content.1", "message": "only text is supported by this model"}
    ]


@pytest.mark.parametrize("raw", [None, "plain text", {"error": 3}, {"detail": "x"}, []])
def test_anything_else_says_only_the_status(raw: object) -> None:
    body = provider_refusal(409, raw)
    assert body["message"] == "the provider refused the request: 409"
    assert "fields" not in body
