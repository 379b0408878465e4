"""Release verification checks (controllers/rollout/verification.py) against a tiny real HTTP
server (aiohttp's TestServer on a local port): smoke checks pass, or fail on the status code
or a body field with the evidence (and no secret) in the result; the load test's latency and
error budgets; the load test stays bounded; the spec's bounds are field errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from apis.v1alpha1.rollout import (
    RolloutSpec,
    SmokeCheck,
    VerificationRun,
    VerificationSpec,
    VerificationStage,
)
from controllers.core.status import spec_error
from controllers.rollout.verification import LOAD_TEST, evidence, judge_smoke, verify

pytestmark = pytest.mark.unit

HEALTH = {"status": "ok", "version": "2", "ready": True, "data": {"items": [{"id": 7}]},
          "token": "s3cr3t-token-value"}  # fmt: skip
SECRET = "hunter2-password"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


class Site:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.url = ""

    def count(self, request: web.Request) -> int:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        return self.hits[request.path]

    def app(self) -> web.Application:
        async def health(request: web.Request) -> web.Response:
            self.count(request)
            return web.json_response(HEALTH)

        async def broken(request: web.Request) -> web.Response:
            self.count(request)
            return web.json_response({"error": "down", "password": SECRET}, status=503)

        async def slow(request: web.Request) -> web.Response:
            self.count(request)
            await asyncio.sleep(0.3)
            return web.json_response({"ok": True})

        async def flaky(request: web.Request) -> web.Response:
            failed = self.count(request) % 2 == 0
            return web.json_response({"ok": not failed}, status=500 if failed else 200)

        async def hang(request: web.Request) -> web.Response:
            self.count(request)
            await asyncio.sleep(30)
            return web.json_response({})

        app = web.Application()
        for path, handler in (("/health", health), ("/broken", broken), ("/slow", slow),
                              ("/flaky", flaky), ("/hang", hang)):  # fmt: skip
            app.router.add_route("*", path, handler)
        return app


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    server = TestServer(s.app(), host="127.0.0.1")
    await server.start_server()
    s.url = str(server.make_url("/")).rstrip("/")
    try:
        yield s
    finally:
        await server.close()


def spec(**fields: Any) -> VerificationSpec:
    return VerificationSpec.model_validate(fields)


async def run(site: Site, **fields: Any) -> Any:
    return await verify(site.url, spec(**fields), VerificationStage.PRE_TRAFFIC, "ai-ro-1")


async def test_smoke_and_load_pass(site: Site) -> None:
    expected = [{"path": "status", "equals": "ok"}, {"path": "data.items.0.id", "equals": "7"},
                {"path": "ready", "equals": "true"}, {"path": "token"}]  # fmt: skip
    result = await run(
        site,
        smoke=[{"name": "health", "path": "/health", "expectedBody": expected}],
        loadTest={
            "path": "/health",
            "requestsPerSecond": 20,
            "durationSeconds": 1,
            "maxP99Milliseconds": 5000,
            "maxErrorRatio": 0,
        },
    )
    assert result.passed, result
    smoke, load = result.checks
    assert (smoke.check, smoke.passed, smoke.status_code) == ("health", True, 200)
    assert (load.check, load.passed, load.requests, load.error_ratio) == (LOAD_TEST, True, 20, 0)
    assert load.p99_milliseconds is not None
    assert site.hits["/health"] == 1 + 20


async def test_status_mismatch_fails_with_the_code_and_no_secret(site: Site) -> None:
    result = await run(site, smoke=[{"name": "broken", "path": "/broken"}],
                       loadTest={"maxP99Milliseconds": 100})  # fmt: skip
    assert not result.passed
    (check,) = result.checks  # the load test is skipped once a smoke check failed
    assert (check.check, check.passed, check.status_code) == ("broken", False, 503)
    assert check.expected == "status 200"
    assert "down" in (check.actual or "")
    assert "<redacted>" in (check.actual or "")
    assert SECRET not in json.dumps(result.model_dump(mode="json"))
    assert "/hang" not in site.hits
    assert site.hits["/broken"] == 1
    (line,) = evidence(result)
    assert line.startswith("preTraffic broken failed: expected status 200, got status 503")


@pytest.mark.parametrize(
    ("field", "equals", "actual"),
    [("version", "3", "2"), ("data.items.0.id", "8", "7"), ("ready", "false", "true"),
     ("data.missing", None, "missing"), ("data.items.5.id", "7", "missing")],
)  # fmt: skip
async def test_body_field_mismatch_names_the_field(
    site: Site, field: str, equals: str | None, actual: str
) -> None:
    expected = [{"path": "status", "equals": "ok"}, {"path": field, "equals": equals}]
    result = await run(site, smoke=[{"name": "health", "path": "/health",
                                     "expectedBody": expected}])  # fmt: skip
    (check,) = result.checks
    assert not result.passed
    assert (check.field, check.actual, check.status_code) == (field, actual, 200)
    assert check.expected == (equals if equals is not None else "present")
    assert f"field {field} expected" in evidence(result)[0]


async def test_secret_looking_field_is_never_shown(site: Site) -> None:
    result = await run(site, smoke=[{"name": "health", "path": "/health",
                                     "expectedBody": [{"path": "token", "equals": "x"}]}])  # fmt: skip
    (check,) = result.checks
    assert not check.passed
    assert check.field == "token"
    assert check.actual == "<redacted>"
    assert "s3cr3t" not in json.dumps(result.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("body", "secret", "kept"),
    [
        (b"upstream said 401; request had Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig",
         "c2VjcmV0", "upstream said 401"),
        (b"proxy: Basic YXBwOmh1bnRlcjI= refused", "YXBwOmh1bnRlcjI", "refused"),
        (b'{"error":"db down","dsn":"postgres://app:hunter2@db:5432/crm"}', "hunter2",
         "@db:5432/crm"),
        (b"DATABASE_URL=postgres://app:hunter2@db/crm", "hunter2", "postgres://"),
        (b'{"env":[{"name":"DB_PASSWORD","value":"hunter2"},{"name":"MODE","value":"on"}]}',
         "hunter2", '"value":"on"'),
        (b'{"headers":{"Authorization":"Bearer abc"}}', "abc", "headers"),
    ],
)  # fmt: skip
def test_credentials_in_a_failed_answer_are_redacted(body: bytes, secret: str, kept: str) -> None:
    check = judge_smoke(SmokeCheck(name="ready", path="/readyz"), status=500, body=body)
    run = VerificationRun(
        stage=VerificationStage.PRE_TRAFFIC, revision="r", time=NOW, passed=False, checks=[check]
    )
    shown = json.dumps(run.model_dump(mode="json")) + " ".join(evidence(run))
    assert secret not in shown
    assert "<redacted>" in (check.actual or "")
    assert kept in (check.actual or ""), "only the credential goes, the context stays"


async def test_latency_budget(site: Site) -> None:
    load = {"path": "/slow", "requestsPerSecond": 10, "durationSeconds": 1,
            "maxP99Milliseconds": 100, "maxErrorRatio": 0}  # fmt: skip
    result = await run(site, loadTest=load)
    (check,) = result.checks
    assert not check.passed
    assert check.p99_milliseconds is not None
    assert check.p99_milliseconds > 100
    assert check.error_ratio == 0
    assert check.requests == 10
    assert (check.actual or "").startswith("p99 ")


async def test_error_budget(site: Site) -> None:
    load = {"path": "/flaky", "requestsPerSecond": 20, "durationSeconds": 1,
            "maxP99Milliseconds": 5000, "maxErrorRatio": 0.1}  # fmt: skip
    result = await run(site, loadTest=load)
    (check,) = result.checks
    assert not check.passed
    assert check.error_ratio == 0.5
    assert check.requests == 20
    assert "error ratio 0.5 (10/20)" in (check.actual or "")


async def test_load_test_is_bounded_when_nothing_answers(site: Site) -> None:
    load = {"path": "/hang", "requestsPerSecond": 5, "durationSeconds": 1,
            "maxP99Milliseconds": 1000, "timeoutSeconds": 0.2}  # fmt: skip
    result = await run(site, loadTest=load)
    (check,) = result.checks
    assert not check.passed
    assert check.error_ratio == 1
    assert check.p99_milliseconds is None
    assert site.hits["/hang"] == 5, "exactly requestsPerSecond x durationSeconds requests"


async def test_unreachable_revision_fails_smoke() -> None:
    result = await verify("http://127.0.0.1:9", spec(smoke=[{"name": "up"}]),
                          VerificationStage.PRE_PROMOTION, "ai-ro-1")  # fmt: skip
    (check,) = result.checks
    assert not check.passed
    assert check.status_code is None
    assert (check.actual or "").startswith("ConnectError")
    assert evidence(result)[0].startswith("prePromotion up failed")


@pytest.mark.parametrize(
    ("verification", "where", "says"),
    [
        ({"loadTest": {"requestsPerSecond": 200, "durationSeconds": 60, "maxP99Milliseconds": 5}},
         "spec.verification.loadTest", "12000 requests: must be at most 6000"),
        ({"loadTest": {"durationSeconds": 61, "maxP99Milliseconds": 5}},
         "spec.verification.loadTest.durationSeconds", "less than or equal to 60"),
        ({"loadTest": {"requestsPerSecond": 10}},
         "spec.verification.loadTest.maxP99Milliseconds", "required"),
        ({"smoke": [{"name": "a", "timeoutSeconds": 90}]},
         "spec.verification.smoke[0].timeoutSeconds", "less than or equal to 30"),
        ({"smoke": [{"name": "a", "path": "health"}]},
         "spec.verification.smoke[0].path", "should match pattern"),
        ({"smoke": [{"name": "a", "expectedBody": [{"path": "a..b"}]}]},
         "spec.verification.smoke[0].expectedBody[0].path", "should match pattern"),
        ({}, "spec.verification", "set smoke and/or loadTest"),
    ],
)  # fmt: skip
def test_spec_bounds_are_field_errors(verification: dict[str, Any], where: str, says: str) -> None:
    body = {"spec": {"targetRef": {"name": "ai"}, "image": "reg.example/ai:2",
                     "strategy": {"immediate": {}}, "verification": verification}}  # fmt: skip
    with pytest.raises(ValidationError) as err:
        RolloutSpec.model_validate(body["spec"])
    message = spec_error(err.value)
    assert message.startswith(where.removeprefix("spec.") + ":"), message
    assert says in message, message


def test_replica_routed_revision_joins_the_target_service_only_with_a_weight() -> None:
    """Replica-ratio routing: before its pre-traffic checks (weight 0) the new revision's Pods
    do not carry the target's Pod selector, so the target's Service sends them nothing."""
    from test_rollout_kubernetes_backend import rollout, target

    from apis.v1alpha1.rollout import TrafficRouting
    from controllers.rollout.resources import canary_deployment, with_overrides
    from controllers.xynergyservice.resources import SERVICE_LABEL

    ro = rollout()
    new = with_overrides(target(), ro.spec)

    def labels(*, serving: bool) -> dict[str, str]:
        dep = canary_deployment(ro, new, name="ai-ro-1", replicas=1,
                                routing=TrafficRouting.REPLICAS, serving=serving)  # fmt: skip
        return dict(dep["spec"]["template"]["metadata"]["labels"])

    assert SERVICE_LABEL not in labels(serving=False)
    assert labels(serving=True)[SERVICE_LABEL] == "ai"


class OneToken:
    async def header(self, url: str) -> tuple[str, str] | None:
        return ("x-serverless-authorization", "Bearer id-token") if ".run.app" in url else None


@pytest.mark.parametrize(
    ("base", "carried"),
    [
        ("https://canary---crm-abc123-uc.a.run.app", "Bearer id-token"),
        ("http://crm-ro-1a2b3c4d.prod.svc.cluster.local", None),
    ],
)
async def test_a_cloud_run_revision_is_verified_with_the_operators_id_token(
    base: str, carried: str | None
) -> None:
    """Cloud Run answers 403 to callers without an ID token unless the service is public:
    the checks on a tag URL carry the operator's; in-cluster URLs carry none."""
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-serverless-authorization"))
        return httpx.Response(200 if seen[-1] else 403, json={"ok": True})

    result = await verify(
        base,
        spec(smoke=[{"name": "up", "path": "/readyz"}]),
        VerificationStage.PRE_TRAFFIC,
        "crm-ro-1",
        transport=httpx.MockTransport(answer),
        id_tokens=OneToken(),  # type: ignore[arg-type]
    )
    assert seen == [carried]
    assert result.passed is (carried is not None)
    assert "id-token" not in json.dumps(result.model_dump(mode="json"))
