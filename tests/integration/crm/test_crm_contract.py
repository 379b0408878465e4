"""The CRM's OpenAPI against its real responses.

For every operation, every error status it documents is provoked (at the CRM itself, or
through the gateway for the gateway's own 400 and 429), and the body is validated with
jsonschema against the schema the OpenAPI documents for that operation and status. Every
response seen on the way, and under a sweep of hostile inputs, must have a status the
operation documents and a body that matches it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import pytest
from emulators import FirestoreEmulator
from gateway.conftest import GatewayFactory, free_port, make_jwt, serve
from gateway.test_gateway_proxy import _raw as raw_request

from services.crm.app import create_app
from services.crm.settings import CrmSettings

from .conftest import INTERNAL, identity_headers

PREFIX = "/api/v2/crm"
MAX_BODY = 64 << 10
FAKE_ID = "AAAAAAAAAAAAAAAAAAAA"

# Every operation, with a request it accepts. A new operation must be added here (checked).
VALID: dict[tuple[str, str], dict[str, Any] | None] = {
    ("POST", "/contacts"): {"name": "Ada Lovelace", "email": "ada@example.com"},
    ("GET", "/contacts"): None,
    ("GET", "/contacts/{contact_id}"): None,
    ("PATCH", "/contacts/{contact_id}"): {"title": "CTO"},
    ("DELETE", "/contacts/{contact_id}"): None,
    ("POST", "/contacts/{contact_id}/restore"): None,
    ("POST", "/contacts/{contact_id}/interactions"): {"type": "call", "summary": "s"},
    ("GET", "/contacts/{contact_id}/interactions"): None,
    ("GET", "/contacts/{contact_id}/interactions/{interaction_id}"): None,
    ("DELETE", "/contacts/{contact_id}/interactions/{interaction_id}"): None,
    ("POST", "/contacts/{contact_id}/notes"): {"body": "n"},
    ("GET", "/contacts/{contact_id}/notes"): None,
    ("GET", "/contacts/{contact_id}/notes/{note_id}"): None,
    ("DELETE", "/contacts/{contact_id}/notes/{note_id}"): None,
    ("POST", "/contacts/{contact_id}/tasks"): {"title": "t", "due_date": "2025-02-07"},
    ("GET", "/contacts/{contact_id}/tasks"): None,
    ("GET", "/contacts/{contact_id}/tasks/{task_id}"): None,
    ("PATCH", "/contacts/{contact_id}/tasks/{task_id}"): {"status": "done"},
    ("DELETE", "/contacts/{contact_id}/tasks/{task_id}"): None,
    ("GET", "/tasks/due"): None,
    ("GET", "/statistics"): None,
}
OPERATIONS = sorted(VALID)
AT_THE_GATEWAY = {400, 429}
HEADERS_BY_STATUS = {412: "etag", 429: "retry-after", 503: "retry-after"}


@dataclass
class Contract:
    spec: dict[str, Any]

    def op(self, method: str, template: str) -> dict[str, Any]:
        op: dict[str, Any] = self.spec["paths"][PREFIX + template][method.lower()]
        return op

    def documented(self, method: str, template: str) -> set[int]:
        return {int(s) for s in self.op(method, template)["responses"]}

    def check(self, method: str, template: str, r: httpx.Response) -> None:
        """The status is documented for the operation and the body matches its schema."""
        where = (method, template, r.status_code, r.text[:300])
        responses = self.op(method, template)["responses"]
        assert str(r.status_code) in responses, where
        content = responses[str(r.status_code)].get("content")
        if content is None:
            assert not r.content, where
            return
        schema = content["application/json"]["schema"]
        if r.status_code >= 400:  # every error documents the one error model
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, where
        validator = jsonschema.Draft202012Validator(
            {**schema, "components": self.spec["components"]}
        )
        errors = [e.message for e in validator.iter_errors(r.json())]
        assert not errors, (*where, errors)
        header = HEADERS_BY_STATUS.get(r.status_code)
        assert header is None or r.headers.get(header), (*where, header)


@dataclass
class Crm:
    url: str
    contract: Contract


@pytest.fixture(scope="module")
async def contract_crm(firestore_emulator: FirestoreEmulator) -> AsyncIterator[Crm]:
    """A CRM with a small body limit, so a 413 needs only 64 KiB."""
    app = create_app(
        CrmSettings(
            project_id=firestore_emulator.project,
            redis_url=None,
            max_body_bytes=MAX_BODY,
            log_level="WARNING",
            access_log=False,
        ),
        internal_settings=INTERNAL,
    )
    async with serve(app) as url:
        yield Crm(url=url, contract=Contract(spec=app.openapi()))


@pytest.fixture(scope="module")
async def dead_store_crm() -> AsyncIterator[str]:
    """A CRM whose Firestore does not answer (nothing listens on its port)."""
    saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{free_port()}"
    try:
        app = create_app(
            CrmSettings(redis_url=None, firestore_timeout_seconds=0.5, log_level="CRITICAL"),
            internal_settings=INTERNAL,
        )
    finally:
        if saved is not None:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved
    async with serve(app) as url:
        yield url


def _client(
    url: str, tenant: str, *, roles: tuple[str, ...] | None = ("admin",)
) -> httpx.AsyncClient:
    """A client calling as the gateway would for this caller; no identity when roles is None."""
    headers = identity_headers(tenant=tenant, roles=roles) if roles is not None else {}
    return httpx.AsyncClient(base_url=url + PREFIX, headers=headers, timeout=30)


async def _seed(url: str) -> tuple[str, dict[str, str]]:
    """A fresh tenant with a contact and one interaction, note and task on it."""
    tenant = "ct-" + uuid.uuid4().hex[:12]
    async with _client(url, tenant) as c:
        cid = (await c.post("/contacts", json={"name": "Seed"})).json()["id"]
        ids = {"contact_id": cid}
        for kind, key, body in (
            ("interactions", "interaction_id", {"type": "call", "summary": "s"}),
            ("notes", "note_id", {"body": "n"}),
            ("tasks", "task_id", {"title": "t"}),
        ):
            r = await c.post(f"/contacts/{cid}/{kind}", json=body)
            assert r.status_code == 201, r.text
            ids[key] = r.json()["id"]
    return tenant, ids


def _invalid_query(op: dict[str, Any]) -> dict[str, str] | None:
    """A query that breaks one documented parameter's schema, if the operation has one."""
    for param in op.get("parameters", []):
        if param["in"] != "query":
            continue
        schema = next(
            (b for b in param["schema"].get("anyOf", [param["schema"]]) if b.get("type") != "null"),
            param["schema"],
        )
        if schema.get("type") == "boolean":
            return {param["name"]: "maybe"}
        if schema.get("type") == "integer" and "minimum" in schema:
            return {param["name"]: str(schema["minimum"] - 1)}
        if schema.get("format") == "date":
            return {param["name"]: "0"}
    return None


async def _provoke_at_the_crm(
    crm: Crm, dead_url: str, method: str, template: str, status: int
) -> httpx.Response:
    tenant, ids = await _seed(crm.url)
    path = template.format(**ids)
    body = VALID[(method, template)]
    op = crm.contract.op(method, template)
    kwargs: dict[str, Any] = {"json": body}
    url: str = crm.url
    roles: tuple[str, ...] | None = ("admin",)
    if status == 401:
        roles = None
    elif status == 403:
        roles = ()
    elif status == 404:
        path = template.format(**dict.fromkeys(ids, FAKE_ID))
    elif status == 412:
        kwargs["headers"] = {"If-Match": '"999"'}
    elif status == 413:
        kwargs = {"content": b"{" + b" " * MAX_BODY + b"}"}
    elif status == 422:
        if "requestBody" in op:
            kwargs = {"json": {**(body or {}), "not_a_field": 1}}
        else:
            kwargs["params"] = _invalid_query(op)
            assert kwargs["params"], (method, template)
    elif status == 503:
        url = dead_url
    async with _client(url, tenant, roles=roles) as c:
        return await c.request(method, path, **kwargs)


@pytest.fixture(scope="module")
def contract(contract_crm: Crm) -> Contract:
    return contract_crm.contract


def test_the_table_covers_every_operation(contract: Contract) -> None:
    ops = {
        (method.upper(), path.removeprefix(PREFIX))
        for path, methods in contract.spec["paths"].items()
        if path.startswith(PREFIX)
        for method in methods
    }
    assert ops == set(VALID)


@pytest.mark.parametrize(("method", "template"), OPERATIONS)
async def test_every_documented_status_happens_with_the_documented_body(
    contract_crm: Crm, dead_store_crm: str, method: str, template: str
) -> None:
    contract = contract_crm.contract
    errors = {s for s in contract.documented(method, template) if s >= 400}
    for status in sorted(errors - AT_THE_GATEWAY):
        r = await _provoke_at_the_crm(contract_crm, dead_store_crm, method, template, status)
        assert r.status_code == status, (method, template, status, r.text[:300])
        contract.check(method, template, r)
    # and the request that is accepted answers a documented success with its schema
    tenant, ids = await _seed(contract_crm.url)
    async with _client(contract_crm.url, tenant) as c:
        r = await c.request(method, template.format(**ids), json=VALID[(method, template)])
    assert r.status_code < 300, r.text
    contract.check(method, template, r)


_BAD_BODIES: list[bytes] = [b"", b"{", b'{"name": x}', b"null", b"[]", b'"x"', b"\xff\xfe", b"0"]
_BAD_VALUES: list[Any] = [None, 0, -1, 1.5, "", "0", "1700000000", "x" * 300, [], {}, True]


def _hostile_requests(
    contract: Contract, method: str, template: str, ids: dict[str, str]
) -> list[dict[str, Any]]:
    op = contract.op(method, template)
    path = template.format(**ids)
    reqs: list[dict[str, Any]] = []
    if "requestBody" in op:
        valid = VALID[(method, template)] or {}
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        props = contract.spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
        for raw in _BAD_BODIES:
            headers = {"Content-Type": "application/json"}
            reqs.append({"url": path, "content": raw, "headers": headers})
        reqs += [
            {"url": path, "json": {**valid, name: value}} for name in props for value in _BAD_VALUES
        ]
        reqs.append({"url": path, "json": valid, "headers": {"Idempotency-Key": "a b"}})
    for param in op.get("parameters", []):
        if param["in"] == "query":
            reqs += [
                {"url": path, "params": {param["name"]: v}}
                for v in ("", "0", "-1", "maybe", "9999-99-99", "x" * 3000)
            ]
    for if_match in ('W/"1"', "garbage", '"1", "2"', "*"):
        reqs.append(
            {"url": path, "json": VALID[(method, template)], "headers": {"If-Match": if_match}}
        )
    if ids:
        for fake in ("__name__", "x" * 1600, "a.b", "%2F"):
            reqs.append({"url": template.format(**dict.fromkeys(ids, fake))})
    return reqs


@pytest.mark.parametrize(("method", "template"), OPERATIONS)
async def test_hostile_input_only_ever_gets_documented_answers(
    contract_crm: Crm, method: str, template: str
) -> None:
    contract = contract_crm.contract
    tenant, ids = await _seed(contract_crm.url)
    needed = ids if "{" in template else {}
    async with _client(contract_crm.url, tenant) as c:
        for req in _hostile_requests(contract, method, template, needed):
            r = await c.request(method, **req)
            contract.check(method, template, r)


async def test_the_gateways_own_statuses_are_documented_and_match(
    contract_crm: Crm, gateway_factory: GatewayFactory
) -> None:
    contract = contract_crm.contract
    routes = {
        "services": [{"name": "crm", "url": contract_crm.url, "routes": [{"prefix": PREFIX}]}]
    }
    async with gateway_factory(routes, rate_limit_per_minute=1) as gw:
        for method, template in OPERATIONS:
            documented = contract.documented(method, template)
            assert documented >= AT_THE_GATEWAY, (method, template)
            tenant, ids = await _seed(contract_crm.url)
            path = PREFIX + template.format(**ids)
            user = "u-" + uuid.uuid4().hex[:8]
            auth = {
                "Authorization": "Bearer "
                + make_jwt(user_id=user, tenant_id=tenant, roles=["admin"])
            }
            status, _, body = await raw_request(gw.url, f"{method} /..{path} HTTP/1.1", auth)
            contract.check(method, template, httpx.Response(status, content=body))
            assert status == 400
            statuses = []
            for _ in range(2):
                r = await gw.http.request(
                    method, path, json=VALID[(method, template)], headers=auth
                )
                statuses.append(r.status_code)
                contract.check(method, template, r)
            assert statuses[-1] == 429, (method, template, statuses)
            # the gateway's 401 carries `check`, which the model documents
            r = await gw.http.request(method, path, headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401
            contract.check(method, template, r)


async def test_a_streamed_body_over_the_limit_is_413(contract_crm: Crm) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        yield b'{"name": "'
        for _ in range(MAX_BODY // 4096 + 1):
            yield b"x" * 4096
        yield b'"}'

    tenant = "ct-" + uuid.uuid4().hex[:12]
    async with _client(contract_crm.url, tenant) as c:
        r = await c.post(
            "/contacts", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in r.request.headers
        assert r.status_code == 413
        contract_crm.contract.check("POST", "/contacts", r)
        assert (await c.get("/contacts")).json()["items"] == []
