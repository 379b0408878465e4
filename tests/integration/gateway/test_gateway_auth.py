"""Authentication through the running gateway: every failure by table, both modes succeed,
and identity headers a client sends never reach the upstream."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from emulators import FirebaseEmulator

from .conftest import RunningGateway, Upstream, make_jwt


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


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_string_time_claims_are_refused(gateway: RunningGateway, claim: str) -> None:
    """RFC 7519 NumericDate: ``"exp": "9999999999"`` is not a number, so the token is refused."""
    token = make_jwt(**{claim: "9999999999" if claim == "exp" else str(_NOW - 60)})
    r = await gateway.http.get("/api/v2/crm/x", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json() == {
        "error": "unauthorized",
        "check": "claims",
        "status": 401,
        "message": f"the token's {claim!r} claim must be a number (seconds since the epoch), "
        "not str",
    }
    assert 'error_description="claims"' in r.headers["www-authenticate"]


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


async def test_underscored_and_proxy_headers_never_reach_the_upstream(
    gateway: RunningGateway, auth: Any
) -> None:
    """Names that read as identity headers once ``_`` is ``-`` (as CGI-style servers read
    them), and the headers only a proxy may set, are dropped; ordinary ones still pass."""
    forged = {
        "X_Xynergy_Identity": "forged",
        "X_Tenant_Id": "other-tenant",
        "x_user_id": "admin",
        "X-Original-User": "admin",
        "X-Original-URL": "/admin",
        "X-Real-IP": "10.9.9.9",
        "X_Real_IP": "10.9.9.9",
        "True-Client-IP": "10.9.9.9",
        "X-Forwarded-Host": "evil.example.com",
        "X-Forwarded-Proto": "https",
        "Impersonate-User": "system:admin",
        "X-Remote-Group": "admins",
        "X-HTTP-Method-Override": "DELETE",
    }
    r = await gateway.http.get(
        "/api/v2/crm/contacts",
        headers={**auth(user_id="honest", tenant_id="acme"), **forged, "X-Custom_Thing": "kept"},
    )
    assert r.status_code == 200
    seen = r.json()["headers"]
    names = {k.lower() for k in seen}
    sent_values = [v for _, v in r.json()["header_list"]]
    leaked = {k for k, v in forged.items() if v in sent_values}
    assert not leaked
    assert not {n for n in names if n.replace("_", "-").startswith(("x-tenant", "x-user"))}
    assert seen["x-xynergy-identity"] != "forged"
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the peer, not anything the client said
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-custom_thing"] == "kept"
    assert r.json()["identity"] == {"user": "honest", "tenant": "acme", "src": "jwt"}
