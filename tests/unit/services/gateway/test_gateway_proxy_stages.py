"""The proxy's stages in order, without Redis or an upstream: each refusal comes from the
stage that owns it, in the one JSON error shape, before any later stage runs."""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from apis.v1alpha1.xynergyservice import Route as ApiRoute
from services.common.auth import AuthError
from services.common.identity import InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.gateway.breaker import BreakerBoard
from services.gateway.gate import GateResult
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Proxy, TableHolder
from services.gateway.ratelimit import Decision, Limit, Policies
from services.gateway.routing import Route, RouteTable, Upstream, chosen_revision
from services.gateway.settings import GatewaySettings


class Verifier:
    async def verify(self, token: str) -> Identity:
        if token != "good":
            raise AuthError("signature", "the token's signature does not verify")
        return Identity(user_id="u1", tenant_id="acme")


class Limiter:
    def __init__(self, allowed: bool) -> None:
        self.policies = Policies(window=60, per_user=100, per_ip=50, unauthenticated=5)
        self.allowed = allowed
        self.hits: list[list[Limit]] = []

    async def hit(self, limits: list[Limit]) -> Decision:
        self.hits.append(limits)
        lim = limits[0]
        return Decision(self.allowed, lim.limit, 0, 30, lim.window, name=lim.name)


class Gate:
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.calls: list[list[Limit]] = []

    async def check(self, identity: Identity, *, limits: list[Limit], lookup: Any) -> GateResult:
        self.calls.append(list(limits))
        lim = limits[0]
        return GateResult(Decision(self.limiter.allowed, lim.limit, 0, 7, lim.window, name="user"))


def proxy(*, allowed: bool = True) -> Proxy:
    routes = TableHolder(RouteTable.build([Route("/api/v2/crm", "http://crm.invalid")]), True)
    return Proxy(
        settings=GatewaySettings(max_body_bytes=10),
        routes=routes,
        verifier=Verifier(),
        signer=InternalIdentitySigner(InternalIdentitySettings(signing_key="k" * 32)),  # type: ignore[arg-type]
        gate=Gate(Limiter(allowed)),  # type: ignore[arg-type]
        cache=None,
        breakers=BreakerBoard(failure_threshold=1, reset_seconds=1),
        client=None,  # type: ignore[arg-type]  # no stage here reaches the upstream
        metrics=GatewayMetrics(),
    )


async def call(p: Proxy, path: str, headers: dict[str, str]) -> tuple[int, dict[bytes, bytes], Any]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.7", 5555),
    }
    await p(scope, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"])


async def test_each_stage_refuses_in_order_with_the_one_shape() -> None:
    p = proxy()
    good = {"authorization": "Bearer good"}
    cases = [
        ("/api/v2/crm/../../../../x", good, 400, "bad_path"),
        ("/api/v2/nowhere", good, 404, "not_found"),
        ("/api/v2/crm/x", {"authorization": "Bearer bad"}, 401, "unauthorized"),
        ("/api/v2/crm/x", {**good, "content-length": "11"}, 413, "too_large"),
        ("/api/v2/crm/x", {**good, "content-length": "-1"}, 400, "bad_request"),
    ]
    for path, headers, status, error in cases:
        got_status, got_headers, body = await call(p, path, headers)
        assert (got_status, body["error"], body["status"]) == (status, error, status), path
        assert got_headers[b"content-type"] == b"application/json"
    gate = p.gate
    assert isinstance(gate, Gate)
    assert gate.calls == []  # nothing so far reached the rate limit and cache stage
    # the refused token was counted against the address's unauthenticated limit
    assert [[lim.name for lim in limits] for limits in gate.limiter.hits] == [
        ["unauthenticated", "ip"]
    ]
    assert "203.0.113.7" in gate.limiter.hits[0][0].key


async def test_over_the_limits_a_bad_token_and_a_good_one_get_429() -> None:
    p = proxy(allowed=False)
    status, headers, body = await call(p, "/api/v2/crm/x", {"authorization": "Bearer bad"})
    assert (status, body["error"], body["limit"]) == (429, "rate_limited", "unauthenticated")
    assert headers[b"ratelimit-policy"] == b"5;w=900"
    status, headers, body = await call(p, "/api/v2/crm/x", {"authorization": "Bearer good"})
    assert (status, body["error"]) == (429, "rate_limited")
    gate = p.gate
    assert isinstance(gate, Gate)
    assert [lim.name for lim in gate.calls[0]] == ["user", "ip"]


def public_proxy(*, allowed: bool) -> Proxy:
    p = proxy(allowed=allowed)
    hook = Route(
        "/api/v2/slack/events", "http://slack.invalid", rate_limit_per_minute=7, public=True
    )
    slack = Route("/api/v2/slack", "http://slack.invalid")
    p.routes.table = RouteTable.build([slack, hook])
    return p


async def test_a_public_route_takes_no_token_and_is_limited_per_address() -> None:
    p = public_proxy(allowed=False)
    # no token, and a token that would be refused: neither is a 401 on a public route
    for headers in ({}, {"authorization": "Bearer bad"}):
        status, out, body = await call(p, "/api/v2/slack/events", headers)
        assert (status, body["error"], body["limit"]) == (429, "rate_limited", "public")
        assert out[b"ratelimit-policy"] == b"7;w=60"
    gate = p.gate
    assert isinstance(gate, Gate)
    assert gate.calls == []  # no per-user limit and no cache lookup
    names = [[lim.name for lim in limits] for limits in gate.limiter.hits]
    assert names == [["public", "ip"], ["public", "ip"]]
    assert "/api/v2/slack/events" in gate.limiter.hits[0][0].key
    # the routes beside it still ask for a token (counted as unauthenticated, here refused)
    status, _, body = await call(p, "/api/v2/slack/other", {})
    assert (status, body["limit"]) == (429, "unauthenticated")


async def test_a_sticky_route_keeps_the_authenticated_user_on_one_revision() -> None:
    p = proxy(allowed=False)  # refused at the rate limit, after the upstream is chosen
    upstreams = (
        Upstream("http://stable.invalid", 50, "crm-00001"),
        Upstream("http://canary.invalid", 50, "crm-ro-1"),
    )
    sticky = Route("/api/v2/crm", "http://stable.invalid", upstreams=upstreams, sticky=True)
    p.routes.table = RouteTable.build([sticky])
    match = p.routes.table.match("/api/v2/crm/contacts")
    assert match is not None
    want = p.routes.table.stick(match, "u1").route.revision
    seen = set()
    for _ in range(20):  # picked per request instead, 20 draws agree only with p = 2**-19
        status, _, _ = await call(p, "/api/v2/crm/contacts", {"authorization": "Bearer good"})
        assert status == 429
        seen.add(chosen_revision())
    assert seen == {want}


async def test_two_authorization_headers_are_refused_before_auth() -> None:
    p = proxy(allowed=True)
    scope_headers = {"authorization": "Bearer good", "Authorization": "Bearer good"}
    status, _, body = await call(p, "/api/v2/crm/contacts", scope_headers)
    assert (status, body["error"]) == (400, "bad_request")
    assert "Authorization" in body["message"]


async def test_a_public_route_keeps_the_body_limit() -> None:
    p = public_proxy(allowed=True)
    status, _, body = await call(p, "/api/v2/slack/events", {"content-length": "11"})
    assert (status, body["error"]) == (413, "too_large")


async def test_a_local_endpoint_is_served_only_past_auth_and_limits() -> None:
    p = proxy(allowed=True)
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    oauth = Route("/api/v2/oauth", "http://gateway.local", "gateway")

    async def local(headers: dict[str, str]) -> tuple[int, dict[bytes, bytes]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/v2/oauth/slack/callback",
            "query_string": b"code=c&state=s",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("203.0.113.7", 5555),
        }
        await p.serve_local(scope, receive, send, [(b"x-cors", b"1")], route=oauth, app=app)
        return sent[0]["status"], dict(sent[0]["headers"])

    status, _ = await local({})
    assert status == 401
    assert seen == []
    status, headers = await local({"authorization": "Bearer good"})
    assert status == 200
    assert seen == ["/api/v2/oauth/slack/callback"]
    assert headers[b"ratelimit-limit"] == b"100"
    assert headers[b"x-cors"] == b"1"
    gate = p.gate
    assert isinstance(gate, Gate)
    assert [lim.name for lim in gate.calls[0]] == ["user", "ip"]
    assert gate.calls[0][0].key.endswith(":/api/v2/oauth")
    p.gate = Gate(Limiter(allowed=False))
    status, _ = await local({"authorization": "Bearer good"})
    assert status == 429
    assert len(seen) == 1


def test_the_route_model_reads_public() -> None:
    assert ApiRoute.model_validate({"prefix": "/api/v2/slack/events", "public": True}).public
    assert not ApiRoute.model_validate({"prefix": "/api/v2/slack"}).public


async def test_each_request_writes_one_access_line_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = proxy()
    with caplog.at_level(logging.INFO, logger="xynergy.gateway.access"):
        await call(p, "/api/v2/crm/x", {"authorization": "Bearer bad", "x-request-id": "rid-1"})
    (record,) = [r for r in caplog.records if r.name == "xynergy.gateway.access"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["request_id"] == "rid-1"
    assert (fields["path"], fields["status"], fields["route"]) == (
        "/api/v2/crm/x",
        401,
        "/api/v2/crm",
    )
    assert "bad" not in record.getMessage() + str(fields)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["no-store", "private, max-age=60"], (0, False)),
        (["private, max-age=60", "no-store"], (0, False)),
        (["public", "max-age=60"], (60, True)),
        (["max-age=5", "max-age=60"], (5, False)),  # two ages: the shorter
    ],
)
def test_repeated_cache_control_headers_are_read_together(
    values: list[str], expected: tuple[int, bool]
) -> None:
    """An upstream (or a middleware in front of it) may send Cache-Control twice: no-store in
    either wins, and directives split over two headers still count (the last header alone
    used to decide, so a later max-age undid an earlier no-store)."""
    headers = CIMultiDict([("Content-Length", "5")])
    for value in values:
        headers.add("Cache-Control", value)
    response = SimpleNamespace(status=200, headers=CIMultiDictProxy(headers), content_length=5)
    assert proxy()._storable(response) == expected  # type: ignore[arg-type]


class CapturingClient:
    """Records what the proxy sends upstream, then fails the connection (the gateway's 502)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    async def request(self, method: str, url: str, *, headers: Any, **_: Any) -> Any:
        import aiohttp

        self.sent.append((url, {k.lower(): v for k, v in headers}))
        raise aiohttp.ClientConnectionError("refused")


class Tokens:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def header(self, url: str) -> tuple[str, str] | None:
        self.asked.append(url)
        return ("x-serverless-authorization", "Bearer id-token") if "run.app" in url else None


async def test_cloud_run_upstreams_get_the_gateways_id_token_and_never_a_clients() -> None:
    table = RouteTable.build(
        [
            Route("/api/v2/crm", "https://crm-abc123-uc.a.run.app"),
            Route("/api/v2/slack", "http://slack.prod.svc.cluster.local"),
        ]
    )
    client, tokens = CapturingClient(), Tokens()
    p = Proxy(
        settings=GatewaySettings(retries=0),
        routes=TableHolder(table, True),
        verifier=Verifier(),
        signer=InternalIdentitySigner(InternalIdentitySettings(signing_key="k" * 32)),  # type: ignore[arg-type]
        gate=Gate(Limiter(True)),  # type: ignore[arg-type]
        cache=None,
        breakers=BreakerBoard(failure_threshold=5, reset_seconds=1),
        client=client,  # type: ignore[arg-type]
        metrics=GatewayMetrics(),
        id_tokens=tokens,  # type: ignore[arg-type]
    )
    forged = {"authorization": "Bearer good", "X-Serverless-Authorization": "Bearer forged"}
    for path in ("/api/v2/crm/contacts", "/api/v2/slack/channels"):
        status, _, body = await call(p, path, forged)
        assert (status, body["error"]) == (502, "bad_gateway"), path
    (crm_url, crm), (_, slack) = client.sent
    assert crm_url.startswith("https://crm-abc123-uc.a.run.app/api/v2/crm/contacts")
    assert crm["x-serverless-authorization"] == "Bearer id-token"
    assert "authorization" not in crm, "the user's token is the gateway's to check, not passed on"
    assert "x-serverless-authorization" not in slack
    assert tokens.asked == [
        "https://crm-abc123-uc.a.run.app",
        "http://slack.prod.svc.cluster.local",
    ]
