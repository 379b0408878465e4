"""The Internal AI service fuzzed directly (the gateway routes nothing to it: the AI router
and its semantic cache call it, signing the caller's identity as the gateway does).

- schemathesis takes the service's own OpenAPI and sends its examples with a valid signed
  identity (an admin's, so the model's lifecycle operations run too); its checks hold for
  every response: no 5xx, a documented status, content type and headers, a body matching the
  documented schema (CI: a few examples per operation; soak: hundreds, as
  fuzz_support.EXAMPLES bounds every service's run);
- its negative examples (what the OpenAPI does not allow, bytes that are not JSON): a
  documented 4xx in the one error shape, every time;
- JSON nested 20,000 deep on every operation that takes a JSON body: a clear 400;
- no identity, a malformed one, one signed with another key, an expired one and one for
  another audience: 401 on every operation but health, whatever the body; a non-admin's
  lifecycle action: 403; never a 5xx, never the key in an answer;
- /readyz (not fuzzed: it takes no input) answers as documented, and an unload does not
  take the service out of rotation.

The service runs under uvicorn on an event loop of its own (a thread), with the real model,
because schemathesis calls it synchronously from the test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import schemathesis
from gateway.conftest import INTERNAL_KEY
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.internal_ai.app import create_app
from services.internal_ai.bodies import Readiness
from services.internal_ai.settings import InternalAiSettings

from .fuzz_support import (
    EXAMPLES,
    INTERNAL,
    LoopThread,
    body_operations,
    fill_path,
    fuzz,
    serve,
)

# The signer's tokens outlive a soak run: fuzz() sends one set of headers for all its examples.
LONG_LIVED = InternalIdentitySettings(signing_key=SecretStr(INTERNAL_KEY), ttl_seconds=3600)
ADMIN = Identity("fuzz", "fuzz-tenant", roles=("admin",))
MEMBER = Identity("fuzz", "fuzz-tenant", roles=("member",))


class Served(LoopThread):
    """The Internal AI app under uvicorn on a thread's event loop; ``url`` once started."""

    what = "the Internal AI service"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app
        self.url = ""

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        async with serve(self.app) as self.url:
            yield


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    settings = InternalAiSettings(
        log_level="WARNING", max_inputs=8, max_input_chars=2_000, max_chat_chars=2_000
    )
    s = Served(create_app(settings, internal_settings=INTERNAL)).start()
    yield s
    s.close()


def identity(who: Identity = ADMIN) -> dict[str, str]:
    return {IDENTITY_HEADER: InternalIdentitySigner(LONG_LIVED).sign(who)}


HEALTH = ("/healthz", "/readyz")


def callers_spec(served: Served) -> dict[str, Any]:
    """The OpenAPI without the kubelet's health routes, as other services are fuzzed: they
    take no input (/readyz is tested below instead)."""
    spec: dict[str, Any] = served.app.openapi()
    return {**spec, "paths": {p: i for p, i in spec["paths"].items() if p not in HEALTH}}


def operations(spec: dict[str, Any]) -> int:
    return sum(len(item) for item in spec["paths"].values())


@pytest.mark.parametrize("per_operation", EXAMPLES)
def test_internal_ai_keeps_its_contract(served: Served, per_operation: int) -> None:
    """schemathesis' checks on every response: not a server error, a documented status,
    content type and headers, a body matching the documented schema (the limits of this
    instance's settings are in its OpenAPI, so no check is left out)."""
    spec = callers_spec(served)
    examples = per_operation * operations(spec)
    seen = fuzz(served, spec, examples=examples, headers=identity())
    assert len(seen) >= examples // 2
    assert 200 in seen


@pytest.mark.parametrize("per_operation", EXAMPLES)
def test_internal_ai_refuses_what_its_schema_does_not_allow(
    served: Served, per_operation: int
) -> None:
    """schemathesis' negative examples (bodies and parameters its OpenAPI does not allow, and
    bytes that are not JSON): every one refused with a documented 4xx in the one error shape,
    the same checks on each response (the fuzz helper sends positive examples only)."""
    spec = callers_spec(served)
    schema = schemathesis.openapi.from_dict(spec)
    seen: list[int] = []

    @settings(max_examples=per_operation * operations(spec), deadline=None,
              database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=schema.as_strategy(GenerationMode.NEGATIVE))
    def check(case: Any) -> None:
        r = case.call_and_validate(base_url=served.url, headers=identity())
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
        assert r.json()["message"], r.text[:200]
        seen.append(r.status_code)

    try:
        check()
    finally:
        print(f"{len(seen)} fuzzed requests, statuses {sorted(set(seen))}")
    assert 422 in seen


def test_deeply_nested_json_is_a_clear_4xx_on_every_body_route(served: Served) -> None:
    """JSON nested past any parser's recursion limit (20,000 arrays, 40 KB) on every operation
    that takes a JSON body: a 400 that says what is wrong, never a 5xx."""
    deep = "[" * 20_000 + "]" * 20_000
    body_routes = body_operations(served.app.openapi())
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for method, path in body_routes:
            r = http.request(method, fill_path(path), content=deep,
                             headers={**identity(), "Content-Type": "application/json"})  # fmt: skip
            assert r.status_code == 400, (method, path, r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith("application/json"), (method, path)
            assert r.json()["message"] == "body: JSON nested too deeply to read", (method, path)
    assert len(body_routes) == 2


def forged(**claims: Any) -> str:
    """A token as the AI router signs one, with ``claims`` changed (a key of another service,
    an expired one, another audience)."""
    key = claims.pop("key", INTERNAL_KEY)
    now = int(time.time())
    payload = {"iss": "xynergy-gateway", "aud": "xynergy-services", "sub": "fuzz",
               "tid": "fuzz-tenant", "roles": ["admin"], "iat": now, "exp": now + 60, **claims}  # fmt: skip
    return jwt.encode(payload, key, algorithm="HS256")


# Headers without a valid identity, made when used (so a token fails for its one flaw only).
WRONG: dict[str, Callable[[], dict[str, str]]] = {
    "none": lambda: {},
    "empty": lambda: {IDENTITY_HEADER: ""},
    "garbage": lambda: {IDENTITY_HEADER: "not-a-token"},
    "bearer instead": lambda: {"Authorization": "Bearer " + forged()},
    "another key": lambda: {IDENTITY_HEADER: forged(key="another-internal-key-" + "z" * 32)},
    "expired": lambda: {IDENTITY_HEADER: forged(iat=1, exp=2)},
    "another audience": lambda: {IDENTITY_HEADER: forged(aud="xynergy-elsewhere")},
    "unsigned": lambda: {IDENTITY_HEADER: jwt.encode({"sub": "x", "tid": "t"}, None,
                                                     algorithm="none")},
}  # fmt: skip
BODIES = {
    "valid": {"json": {"input": "hello", "messages": [{"role": "user", "content": "hi"}]}},
    "not JSON": {"content": b"{", "headers": {"Content-Type": "application/json"}},
    "deep": {"content": b"[" * 20_000 + b"]" * 20_000,
             "headers": {"Content-Type": "application/json"}},
    "not UTF-8": {"content": b'{"input": "\xff"}', "headers": {"Content-Type": "application/json"}},
}  # fmt: skip


def guarded(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation but health's."""
    return [(method.upper(), fill_path(path, "load")) for path, item in spec["paths"].items()
            for method in item if path not in HEALTH]  # fmt: skip


@pytest.mark.parametrize("credential", list(WRONG))
def test_no_valid_identity_is_401_on_every_operation_whatever_the_body(
    served: Served, credential: str
) -> None:
    """A caller without a valid signed identity learns nothing but that: 401 in the one error
    shape before its body is read (a malformed or deeply nested one too), the key in no
    answer."""
    operations = guarded(served.app.openapi())
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for method, path in operations:
            for body, request in BODIES.items():
                headers = {**WRONG[credential](), **request.get("headers", {})}
                r = http.request(method, path, headers=headers,
                                 **{k: v for k, v in request.items() if k != "headers"})  # fmt: skip
                what = (method, path, body, r.status_code, r.text[:200])
                assert r.status_code == 401, what
                assert r.headers["content-type"].startswith("application/json"), what
                assert r.json()["error"] == "unauthorized", what
                assert r.json()["message"], what
                assert INTERNAL_KEY not in r.text, what
    assert len(operations) == 5


def test_a_member_reads_but_only_an_admin_loads_or_unloads_the_model(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        before = http.get("/admin/model", headers=identity(MEMBER))
        assert before.status_code == 200, before.text
        for action in ("load", "unload"):
            r = http.post(f"/admin/model/{action}", headers=identity(MEMBER))
            assert r.status_code == 403, r.text
            assert r.json()["error"] == "forbidden"
        after = http.get("/admin/model", headers=identity(MEMBER)).json()
    assert (after["loaded"], after["loads"]) == (before.json()["loaded"], before.json()["loads"])


def test_readiness_follows_the_lifecycle_as_documented(served: Served) -> None:
    """Loaded at start, the service is ready, and stays ready when an admin unloads the
    model (the next request loads it again); the body is the documented Readiness. (503 is
    for a model that never loaded: tests/unit/services/internal_ai.)"""
    documented = served.app.openapi()["paths"]["/readyz"]["get"]["responses"]
    assert set(documented) == {"200", "503"}
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for action, loaded in (("unload", False), ("load", True), ("unload", False)):
            assert http.post(f"/admin/model/{action}", headers=identity()).status_code == 200
            r = http.get("/readyz")
            assert r.status_code == 200, (action, r.text)
            assert Readiness.model_validate(r.json()).model.loaded is loaded
        again = http.post("/v1/embeddings", json={"input": "hello"}, headers=identity())
        assert again.status_code == 200, again.text
        assert Readiness.model_validate(http.get("/readyz").json()).model.loaded is True
