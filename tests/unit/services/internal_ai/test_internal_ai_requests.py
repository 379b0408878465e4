"""What the Internal AI service answers a request it cannot serve (what its fuzz test,
tests/integration/security/test_internal_ai_fuzz.py, found): the caller is verified before
the body is read, an unreadable body is a 400 saying why, text that is not valid Unicode and
values of another JSON type are 422s naming the field, and the OpenAPI documents every answer
and this instance's limits."""

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
    settings = InternalAiSettings(log_level="WARNING", max_inputs=4, max_input_chars=500)
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


def test_the_openapi_documents_every_answer_and_this_instances_limits() -> None:
    settings = InternalAiSettings(log_level="WARNING", max_inputs=4, max_input_chars=500)
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
