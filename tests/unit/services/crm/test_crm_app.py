"""The CRM app without a database: identity required, 422 names the field, OpenAPI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.crm.app import create_app
from services.crm.settings import CrmSettings

INTERNAL = InternalIdentitySettings(signing_key=SecretStr("k" * 40))


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


def test_malformed_json_names_the_body_and_the_position(client: TestClient) -> None:
    raw = '{"name": x}'
    with pytest.raises(json.JSONDecodeError) as decode:
        json.loads(raw)
    r = client.post(
        "/api/v2/crm/contacts",
        content=raw,
        headers={**headers("editor"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    position = decode.value.pos
    assert r.json()["message"] == f"body: invalid JSON at position {position}"
    assert r.json()["fields"] == [
        {"field": "body", "message": f"invalid JSON at position {position}"}
    ]


@pytest.mark.parametrize(
    ("path", "param"), [("/api/v2/crm/statistics", "as_of"), ("/api/v2/crm/tasks/due", "before")]
)
@pytest.mark.parametrize("value", ["0", "1700000000", "0001-01-01", "9999-12-31", "soon"])
def test_date_parameters_are_plausible_iso_days(
    client: TestClient, path: str, param: str, value: str
) -> None:
    # Answered by validation alone: the store (no database here) is never reached.
    r = client.get(path, params={param: value}, headers=headers("viewer"))
    assert r.status_code == 422, r.text
    [field] = r.json()["fields"]
    assert field["field"] == param
    assert r.json()["message"].startswith(f"{param}: ")


def test_patch_null_for_a_kept_field_is_a_422_naming_it(client: TestClient) -> None:
    for field in ("name", "status", "tags"):
        r = client.patch("/api/v2/crm/contacts/abc", json={field: None}, headers=headers("editor"))
        assert r.status_code == 422
        assert r.json()["fields"][0]["field"] == field
        assert "cannot be null" in r.json()["fields"][0]["message"]


def test_every_operation_documents_its_errors_with_the_error_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ref = "#/components/schemas/ErrorBody"
    assert {"error", "message", "status"} <= set(
        spec["components"]["schemas"]["ErrorBody"]["required"]
    )
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in ops.items():
            documented = {int(s) for s in op["responses"] if int(s) >= 400}
            assert {400, 401, 403, 413, 429, 503} <= documented, (method, path)
            for status in documented:
                schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
                assert schema == {"$ref": ref}, (method, path, status)
            has_id = "{" in path
            assert (404 in documented) == has_id, (method, path)
            assert (412 in documented) == (
                method == "patch"
                or (method, path) == ("delete", "/api/v2/crm/contacts/{contact_id}")
            ), (method, path)
