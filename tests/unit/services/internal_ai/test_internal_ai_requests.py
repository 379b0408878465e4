"""What the Internal AI service answers a request it cannot serve (what its fuzz test,
tests/integration/security/test_internal_ai_fuzz.py, found): the caller is verified before
the body is read, an unreadable body is a 400 saying why, text that is not valid Unicode and
values of another JSON type are 422s naming the field, chat content given as OpenAI's text
parts is read as their text (a part of another type is a 422 naming it), the chat's text has a
limit, and the OpenAPI documents every answer and this instance's limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.internal_ai.app import create_app
from services.internal_ai.settings import InternalAiSettings

KEY = InternalIdentitySettings(signing_key=SecretStr("k" * 40))
JSON = {"Content-Type": "application/json"}
HI = [{"role": "user", "content": "hi"}]


def identity() -> dict[str, str]:
    return {IDENTITY_HEADER: InternalIdentitySigner(KEY).sign(Identity("u", "acme"))}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = InternalAiSettings(
        log_level="WARNING", max_inputs=4, max_input_chars=500, max_chat_chars=500
    )
    app = create_app(settings, internal_settings=KEY)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ai") as c,
    ):
        yield c


def refused(r: httpx.Response, status: int, field: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["message"].startswith(f"{field}: "), body
    if status == 422:
        assert [f["field"] for f in body["fields"]] == [field], body
    return str(body["message"])


@pytest.mark.parametrize(
    "body",
    [b"{", b"[" * 20_000 + b"]" * 20_000, b'{"input": "\xff"}', b'{"input": 5}'],
    ids=["not JSON", "deep", "not UTF-8", "invalid"],
)
async def test_without_an_identity_the_body_is_not_read(
    client: httpx.AsyncClient, body: bytes
) -> None:
    r = await client.post("/v1/embeddings", content=body, headers=JSON)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"


async def test_json_nested_past_the_parser_is_a_400_naming_the_body(
    client: httpx.AsyncClient,
) -> None:
    deep = b"[" * 20_000 + b"]" * 20_000
    for path in ("/v1/embeddings", "/v1/chat/completions"):
        r = await client.post(path, content=deep, headers={**identity(), **JSON})
        assert refused(r, 400, "body") == "body: JSON nested too deeply to read"


async def test_bytes_that_are_not_utf8_are_a_400_naming_the_body(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/v1/embeddings", content=b'{"input": "\xff"}', headers={**identity(), **JSON}
    )
    assert refused(r, 400, "body") == "body: not UTF-8 (an invalid byte at position 11)"
    malformed = await client.post("/v1/embeddings", content=b"{", headers={**identity(), **JSON})
    refused(malformed, 422, "body")  # FastAPI's own answer, which says where


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/embeddings", '{"input": "a\\ud800b"}', "input"),
        ("/v1/embeddings", '{"input": ["fine", "a\\udfffb"]}', "input.1"),
        (
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": "x\\ud800"}]}',
            "messages.0.content",
        ),
    ],
)
async def test_a_lone_surrogate_is_a_422_naming_the_text_not_a_500(
    client: httpx.AsyncClient, path: str, body: str, field: str
) -> None:
    """JSON's \\uXXXX escapes can carry half a surrogate pair, which no tokenizer reads."""
    r = await client.post(path, content=body.encode(), headers={**identity(), **JSON})
    assert "lone surrogate" in refused(r, 422, field)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "3"}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"messages": [{"role": 1, "content": "hi"}]}, "messages.0.role"),
    ],
)
async def test_a_value_of_another_json_type_is_a_422_not_coerced(
    client: httpx.AsyncClient, extra: dict[str, Any], field: str
) -> None:
    r = await client.post(
        "/v1/chat/completions", json={"messages": HI, **extra}, headers=identity()
    )
    refused(r, 422, field)


async def test_an_integer_written_with_a_zero_fraction_is_an_integer(
    client: httpx.AsyncClient,
) -> None:
    """JSON Schema's integer includes 2.0: what the OpenAPI allows is served."""
    r = await client.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 2.0},
                          headers=identity())  # fmt: skip
    assert r.status_code == 200, r.text


async def test_each_text_over_the_limit_is_named(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"input": ["ok", "x" * 501]}, headers=identity())
    assert refused(r, 422, "input.1") == "input.1: a text of at most 500 characters"
    r = await client.post("/v1/embeddings", json={"input": []}, headers=identity())
    assert refused(r, 422, "input") == "input: at least one text"


async def chat(client: httpx.AsyncClient, *messages: dict[str, Any]) -> httpx.Response:
    body = {"messages": list(messages)}
    return await client.post("/v1/chat/completions", json=body, headers=identity())


SUMMARY = "Revenue grew in March. The weather was mild. Costs fell as revenue grew."


async def test_text_parts_are_read_as_their_text_in_order(client: httpx.AsyncClient) -> None:
    """OpenAI's content parts (as the AI router passes them on): the answer is the one the
    joined text gets, classification's ``Labels:`` line included."""
    parts = [{"type": "text", "text": "Revenue grew in March. The weather "},
             {"type": "text", "text": "was mild. Costs fell as revenue grew."}]  # fmt: skip
    as_parts = await chat(client, {"role": "user", "content": parts})
    as_text = await chat(client, {"role": "user", "content": SUMMARY})
    assert as_parts.status_code == 200, as_parts.text
    assert as_parts.json()["choices"] == as_text.json()["choices"]
    assert as_parts.json()["usage"] == as_text.json()["usage"]
    labels = [{"type": "text", "text": "Labels: cooking, "}, {"type": "text", "text": "sport"}]
    whisk = [{"type": "text", "text": "Whisk the eggs and fold in the flour.", "extra": 1}]
    r = await chat(client, {"role": "system", "content": labels},
                   {"role": "user", "content": whisk})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["xynergy"]["task"] == "classification"
    assert set(r.json()["xynergy"]["scores"]) == {"cooking", "sport"}
    assert r.json()["choices"][0]["message"]["content"] == "cooking"


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ([{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "x"}}],
         "messages.1.content.1",
         "only text is supported by this model (this part is of type 'image_url')"),
        ([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
         "messages.1.content.0",
         "only text is supported by this model (this part is of type 'input_audio')"),
        ([{"type": "text"}], "messages.1.content.0.text", "Field required"),
        ([{"type": "text", "text": 5}], "messages.1.content.0.text",
         "Input should be a valid string"),
        (["hi"], "messages.1.content.0",
         "Input should be a valid dictionary or instance of TextPart"),
        (5, "messages.1.content", "a text or a list of text parts"),
    ],
    ids=["image", "audio", "no text", "text not a string", "bare string part", "a number"],
)  # fmt: skip
async def test_content_that_is_not_text_is_a_422_naming_where(
    client: httpx.AsyncClient, content: Any, field: str, message: str
) -> None:
    r = await chat(client, HI[0], {"role": "user", "content": content})
    assert refused(r, 422, field) == f"{field}: {message}"


async def test_a_lone_surrogate_in_a_text_part_is_named_by_the_part(
    client: httpx.AsyncClient,
) -> None:
    body = '{"messages": [{"role": "user", "content": [{"type": "text", "text": "ok"}, '
    body += '{"type": "text", "text": "x\\ud800"}]}]}'
    r = await client.post("/v1/chat/completions", content=body.encode(),
                          headers={**identity(), **JSON})  # fmt: skip
    assert "lone surrogate" in refused(r, 422, "messages.0.content.1.text")


async def model_runs(client: httpx.AsyncClient) -> int:
    served = (await client.get("/admin/model", headers=identity())).json()["served"]
    assert isinstance(served, int)
    return served


async def test_the_chats_text_over_the_limit_is_a_422_before_any_model_run(
    client: httpx.AsyncClient,
) -> None:
    """MAX_CHAT_CHARS (500 here) counts every message's text, parts included: 500 is served,
    501 refused naming the messages, without a run on the model's thread (a summary is a run
    per sentence, so an unbounded text held the one thread for as long as it was long)."""
    half = "x" * 250
    ok = await chat(client, {"role": "system", "content": half},
                    {"role": "user", "content": [{"type": "text", "text": half}]})  # fmt: skip
    assert ok.status_code == 200, ok.text
    before = await model_runs(client)
    for over in (
        [{"role": "system", "content": half}, {"role": "user", "content": half + "x"}],
        [{"role": "user", "content": [{"type": "text", "text": half}] * 2 + [
            {"type": "text", "text": "x"}]}],
        [{"role": "user", "content": "x. " * 167}],
    ):  # fmt: skip
        r = await chat(client, *over)
        message = refused(r, 422, "messages")
        assert message == "messages: at most 500 characters of text in all messages together"
    assert await model_runs(client) == before


def test_the_openapi_documents_every_answer_and_this_instances_limits() -> None:
    settings = InternalAiSettings(
        log_level="WARNING", max_inputs=4, max_input_chars=500, max_chat_chars=700
    )
    spec = create_app(settings, internal_settings=KEY).openapi()
    paths = spec["paths"]
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["200"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletion")
    for path, method, statuses in [
        ("/v1/embeddings", "post", {"200", "400", "401", "422", "429"}),
        ("/v1/chat/completions", "post", {"200", "400", "401", "422", "429"}),
        ("/v1/models", "get", {"200", "401"}),
        ("/admin/model", "get", {"200", "401"}),
        ("/admin/model/{action}", "post", {"200", "401", "403", "422"}),
        ("/readyz", "get", {"200", "503"}),
    ]:
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses, (path, set(responses))
        for status in statuses & {"400", "401", "403", "422", "429"}:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorBody"), (path, status)
    assert "Retry-After" in paths["/v1/embeddings"]["post"]["responses"]["429"]["headers"]
    texts = spec["components"]["schemas"]["EmbeddingsRequest"]["properties"]["input"]["anyOf"]
    assert texts[0] == {"type": "string", "maxLength": 500}
    assert texts[1] == {"type": "array", "items": {"type": "string", "maxLength": 500},
                        "minItems": 1, "maxItems": 4}  # fmt: skip
    schemas = spec["components"]["schemas"]
    content = schemas["ChatMessage"]["properties"]["content"]["anyOf"]
    assert content[0] == {"type": "string", "maxLength": 700}
    assert content[1] == {"type": "array", "items": {"$ref": "#/components/schemas/TextPart"}}
    part = schemas["TextPart"]
    assert part["required"] == ["type", "text"]
    assert part["properties"]["type"]["const"] == "text"
    assert part["properties"]["text"]["maxLength"] == 700
    messages = schemas["ChatRequest"]["properties"]["messages"]["description"]
    assert "at most 700 characters of text in all messages together" in messages
