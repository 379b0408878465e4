"""The CRM through the real gateway, fuzzed and probed across tenants.

- schemathesis generates requests from the CRM's own OpenAPI for every operation and sends
  them through the gateway with a valid token; its checks hold for each: no 5xx, a status
  the operation documents, a body matching the documented schema, the documented content type
  (CI: a few examples per operation; soak: many);
- tenant isolation: one tenant's contact and its children, addressed by another tenant
  through every id route of the CRM, answer 404 and change nothing.

The CRM, the gateway and their redis-server run on an event loop of their own (a thread),
because schemathesis calls them synchronously from the test (fuzz_support.Stack).
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from crm.test_crm_contract import FAKE_ID, OPERATIONS, PREFIX, VALID
from emulators import FirestoreEmulator
from gateway.conftest import RedisServer, make_jwt
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.crm.app import create_app as create_crm
from services.crm.settings import CrmSettings

from .fuzz_support import INTERNAL, Stack, Upstream, fuzz, gateway_spec, serve


@contextlib.asynccontextmanager
async def crm(project: str, redis: RedisServer) -> AsyncIterator[list[Upstream]]:
    settings = CrmSettings(project_id=project, redis_url=redis.url, log_level="WARNING",
                           access_log=False)  # fmt: skip
    app = create_crm(settings, internal_settings=INTERNAL)
    async with serve(app) as url:
        yield [Upstream("crm", url, [{"prefix": PREFIX}], app.openapi())]


@pytest.fixture(scope="module")
def stack(
    firestore_emulator: FirestoreEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    project = firestore_emulator.project
    s = Stack(tmp_path_factory.mktemp("crm-fuzz"), lambda redis, _: crm(project, redis)).start()
    yield s
    s.close()


def auth(tenant: str, user: str = "fuzz") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_jwt(user_id=user, tenant_id=tenant, roles=['admin'])}"}


# Not checked: a schema-valid value the CRM still refuses (a made-up `cursor` is a string, yet
# not one it issued: 422 is right).
LENIENT = [positive_data_acceptance]
# Examples over all operations together (schemathesis spreads them across operations).
EXAMPLES = [pytest.param(80, id="ci"), pytest.param(5000, id="soak", marks=pytest.mark.soak)]


@pytest.mark.parametrize("examples", EXAMPLES)
def test_crm_through_the_gateway_keeps_its_contract(stack: Stack, examples: int) -> None:
    """schemathesis' checks on every response: not a server error, a documented status, content
    type and headers, a body matching the documented schema."""
    # the CRM's own /metrics and health routes are the gateway's own at the gateway
    tenant = "fuzz-" + uuid.uuid4().hex[:8]
    spec = gateway_spec(stack.upstreams[0])
    seen = fuzz(stack, spec, examples=examples, headers=auth(tenant), excluded=LENIENT)
    assert len(seen) >= examples // 2


def fill(template: str, ids: dict[str, str]) -> str:
    for key, value in ids.items():
        template = template.replace("{" + key + "}", value)
    return PREFIX + template


def test_another_tenants_ids_are_404_on_every_route(stack: Stack) -> None:
    owner, intruder = "own-" + uuid.uuid4().hex[:8], "int-" + uuid.uuid4().hex[:8]
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        ids = {"contact_id": create(http, owner, "/contacts", VALID[("POST", "/contacts")])}
        for child in ("interactions", "notes", "tasks"):
            body = VALID[("POST", f"/contacts/{{contact_id}}/{child}")]
            ids[child[:-1] + "_id"] = create(
                http, owner, f"/contacts/{ids['contact_id']}/{child}", body
            )
        before = http.get(fill("/contacts/{contact_id}", ids), headers=auth(owner)).json()
        routes = [(m, t) for m, t in OPERATIONS if "{contact_id}" in t]
        for method, template in routes:
            r = http.request(
                method, fill(template, ids), headers=auth(intruder), json=VALID[(method, template)]
            )
            assert r.status_code == 404, (method, template, r.status_code, r.text[:200])
        after = http.get(fill("/contacts/{contact_id}", ids), headers=auth(owner)).json()
    assert after == before
    assert len(routes) >= 15


def create(http: httpx.Client, tenant: str, path: str, body: dict[str, Any] | None) -> str:
    r = http.post(PREFIX + path, json=body, headers=auth(tenant))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_deeply_nested_json_is_a_clear_4xx_on_every_body_route(stack: Stack) -> None:
    """JSON nested past any parser's recursion limit (20,000 arrays, 40 KB: under the body
    limit, so it reaches the CRM) on every operation that takes a body: a 4xx that says what
    is wrong, never a 5xx; and a page cursor that decodes to such JSON is refused the same
    way (the cursor is client input)."""
    tenant = "deep-" + uuid.uuid4().hex[:8]
    ids = {"contact_id": FAKE_ID, "interaction_id": FAKE_ID, "note_id": FAKE_ID,
           "task_id": FAKE_ID}  # fmt: skip
    deep = "[" * 20_000 + "]" * 20_000
    body_routes = [op for op in OPERATIONS if VALID[op] is not None]
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        for method, template in body_routes:
            r = http.request(method, fill(template, ids), content=deep,
                             headers={**auth(tenant), "Content-Type": "application/json"})  # fmt: skip
            assert 400 <= r.status_code < 500, (method, template, r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith("application/")
            assert r.json(), (method, template)
        cursor = base64.urlsafe_b64encode(b"[" * 768 + b"]" * 768).decode().rstrip("=")
        r = http.get(PREFIX + "/contacts", params={"cursor": cursor}, headers=auth(tenant))
        assert r.status_code in (400, 422), r.text[:200]
        assert "cursor" in r.text
    assert len(body_routes) >= 6
