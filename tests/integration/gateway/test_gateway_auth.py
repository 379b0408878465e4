"""Authentication through the running gateway: every failure by table, both modes succeed,
and identity headers a client sends never reach the upstream."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from .conftest import FirebaseEmulator, RunningGateway, Upstream, make_jwt


def _unsigned(claims: dict[str, Any]) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


_NOW = int(time.time())
_GOOD = {
    "user_id": "u-1",
    "tenant_id": "acme",
    "iss": "xynergy",
    "aud": "xynergy-api",
    "exp": _NOW + 86400,
}

FAILURES = [
    pytest.param(None, "missing", id="no-header"),
    pytest.param("Basic dXNlcjpwYXNz", "scheme", id="basic-scheme"),
    pytest.param("Bearer not-a-jwt", "malformed", id="malformed"),
    pytest.param("Bearer " + _unsigned(_GOOD), "algorithm", id="alg-none"),
    pytest.param("Bearer " + make_jwt(ttl=-3600), "expired", id="expired"),
    pytest.param("Bearer " + make_jwt(nbf=_NOW + 43200), "not_yet_valid", id="not-yet-valid"),
    pytest.param("Bearer " + make_jwt(iss="someone-else"), "issuer", id="wrong-issuer"),
    pytest.param("Bearer " + make_jwt(aud="other-api"), "audience", id="wrong-audience"),
    pytest.param("Bearer " + make_jwt(secret="not-the-secret" * 4), "signature", id="bad-sig"),
    pytest.param("Bearer " + make_jwt(tenant_id=None), "tenant", id="missing-tenant"),
    pytest.param("Bearer " + make_jwt(tenant_id="a:b"), "tenant", id="invalid-tenant"),
]


@pytest.mark.parametrize(("authorization", "check"), FAILURES)
async def test_auth_failures_are_401_with_the_failed_check(
    gateway: RunningGateway, upstream: Upstream, authorization: str | None, check: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    before = upstream.count("/api/v2/crm")
    r = await gateway.http.get("/api/v2/crm/contacts", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="xynergy"')
    body = r.json()
    assert body["check"] == check
    if authorization and " " in authorization:
        token = authorization.split(" ", 1)[1]
        assert token not in r.text
        assert token not in r.headers["www-authenticate"]
    assert upstream.count("/api/v2/crm") == before


async def test_missing_exp_is_refused(gateway: RunningGateway) -> None:
    from .conftest import JWT_SECRET

    token = jwt.encode({k: v for k, v in _GOOD.items() if k != "exp"}, JWT_SECRET, "HS256")
    r = await gateway.http.get("/api/v2/crm/x", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json()["check"] == "claims"


async def test_jwt_user_gets_through_with_a_signed_identity(
    gateway: RunningGateway, auth: Any
) -> None:
    r = await gateway.http.get(
        "/api/v2/crm/contacts", headers=auth(user_id="jwt-user", tenant_id="acme")
    )
    assert r.status_code == 200
    echoed = r.json()
    assert echoed["identity"] == {"user": "jwt-user", "tenant": "acme", "src": "jwt"}
    assert "authorization" not in echoed["headers"]


async def test_firebase_user_with_tenant_claims_gets_through(
    gateway: RunningGateway, firebase_emulator: FirebaseEmulator
) -> None:
    token = await firebase_emulator.user_token(
        "fb-user@example.com", {"tenant_id": "globex", "roles": ["admin"]}
    )
    r = await gateway.http.get("/api/v2/crm/contacts", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    who = r.json()["identity"]
    assert who["tenant"] == "globex"
    assert who["src"] == "firebase"


async def test_firebase_user_without_tenant_claim_is_refused(
    gateway: RunningGateway, firebase_emulator: FirebaseEmulator
) -> None:
    token = await firebase_emulator.user_token("no-tenant@example.com", None)
    r = await gateway.http.get("/api/v2/crm/contacts", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json()["check"] == "tenant"


async def test_client_identity_headers_never_reach_the_upstream(
    gateway: RunningGateway, auth: Any
) -> None:
    forged = {
        "X-Xynergy-Identity": "forged",
        "X-User-Id": "admin",
        "X-Tenant-Id": "other-tenant",
        "X-Forwarded-User": "admin",
        "X-Goog-Authenticated-User-Email": "admin@example.com",
        "X-Roles": "superuser",
    }
    r = await gateway.http.get(
        "/api/v2/crm/contacts", headers={**auth(user_id="honest", tenant_id="acme"), **forged}
    )
    assert r.status_code == 200
    echoed = r.json()
    seen = {k.lower() for k in echoed["headers"]}
    assert not seen & {k.lower() for k in forged if k != "X-Xynergy-Identity"}
    assert echoed["headers"]["x-xynergy-identity"] != "forged"
    assert echoed["identity"] == {"user": "honest", "tenant": "acme", "src": "jwt"}
