"""The CRM app without a database: identity required, 422 names the field, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.crm.app import create_app
from services.crm.settings import CrmSettings

INTERNAL = InternalIdentitySettings(signing_key="k" * 40)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # The client is built but never called by these tests; the emulator variable only keeps
    # google-auth from looking for credentials.
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    app = create_app(CrmSettings(redis_url=None, access_log=False), internal_settings=INTERNAL)
    with TestClient(app) as c:
        yield c


def headers(*roles: str) -> dict[str, str]:
    token = InternalIdentitySigner(INTERNAL).sign(
        Identity(user_id="u", tenant_id="acme", roles=roles)
    )
    return {IDENTITY_HEADER: token}


def test_identity_is_required(client: TestClient) -> None:
    r = client.get("/api/v2/crm/contacts")
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    r = client.get("/api/v2/crm/contacts", headers={IDENTITY_HEADER: "x.y.z"})
    assert r.status_code == 401


def test_roles_are_checked_before_anything_is_read(client: TestClient) -> None:
    r = client.post("/api/v2/crm/contacts", json={"name": "x"}, headers=headers("viewer"))
    assert r.status_code == 403
    r = client.get("/api/v2/crm/contacts/anything", headers=headers())
    assert r.status_code == 403


def test_422_names_every_bad_field(client: TestClient) -> None:
    r = client.post(
        "/api/v2/crm/contacts",
        json={"name": "", "email": "nope", "phone": "123", "colour": "red"},
        headers=headers("editor"),
    )
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_failed"
    assert {f["field"] for f in body["fields"]} == {"name", "email", "phone", "colour"}
    assert {f["message"] for f in body["fields"] if f["field"] == "colour"} == {"unknown field"}
    r = client.get("/api/v2/crm/contacts", params={"status": "friend"}, headers=headers("viewer"))
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "status"


def test_openapi_has_examples_for_every_request_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("ContactCreate", "ContactPatch", "InteractionCreate", "NoteCreate", "TaskCreate"):
        assert schemas[name]["examples"], name
        assert schemas[name]["additionalProperties"] is False
    assert "/api/v2/crm/tasks/due" in spec["paths"]
    assert client.get("/healthz").json() == {"status": "ok"}
