"""The gateway's attack table, in the manner of Envoy's and Kong's auth conformance suites: each
row is what a hostile client sends (on a raw socket, so nothing is tidied on the way) and what
must come back. For every row: the expected status; when refused, the upstream never sees the
request; when let through, the upstream sees the honest caller's identity, never a forged one.

Rows the gateway's own tests already pin one by one (alg none, expired, wrong iss/aud, bad
signature, missing tenant, string time claims, identity headers) appear here as well, so the
table alone answers "what does the gateway do with X".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway.conftest import INTERNAL_KEY, JWT_SECRET, RunningGateway, Upstream, make_jwt

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity

NOW = int(time.time())
CLAIMS = {"user_id": "mallory", "tenant_id": "acme", "iss": "xynergy", "aud": "xynergy-api",
          "exp": NOW + 3600, "roles": ["admin"]}  # fmt: skip
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes, digest: Any) -> str:
    """A JWT signed by hand with HMAC (PyJWT refuses some keys an attacker would use)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(sig)}"


def unsigned(alg: str) -> str:
    return f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(CLAIMS).encode())}."


def forged_identity(tenant: str) -> str:
    """A well-formed internal identity, signed with the real internal key (a replayed one)."""
    signer = InternalIdentitySigner(InternalIdentitySettings(signing_key=INTERNAL_KEY))  # type: ignore[arg-type]
    return signer.sign(Identity(user_id="root", tenant_id=tenant, roles=("admin",), source="jwt"))


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


HONEST = make_jwt(user_id="honest", tenant_id="acme")
OTHER = make_jwt(user_id="eve", tenant_id="globex")


@dataclass
class Attack:
    id: str
    headers: list[tuple[str, str]]
    expect: int
    path: str = "/api/v2/crm/contacts"
    method: str = "GET"
    body: bytes = b""
    raw_head: bytes = b""  # appended to the head as is (CR/LF tricks)
    identity: dict[str, str] | None = field(default=None)  # what the upstream must see on 2xx


TABLE = [
    # -- tokens ------------------------------------------------------------------------------
    Attack("no-token", [], 401),
    Attack("garbage-token", [bearer("garbage")], 401),
    Attack("alg-none", [bearer(unsigned("none"))], 401),
    Attack("alg-None-case", [bearer(unsigned("nOnE"))], 401),
    Attack("alg-hs512-right-secret", [bearer(hand_signed({"alg": "HS512"}, CLAIMS, JWT_SECRET.encode(), hashlib.sha512))], 401),
    Attack("hs256-wrong-key", [bearer(jwt.encode(CLAIMS, "wrong-" * 8, algorithm="HS256"))], 401),
    Attack("rs256-own-key", [bearer(jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256"))], 401),
    Attack("rs-hs-confusion", [bearer(hand_signed({"alg": "HS256", "typ": "JWT"}, CLAIMS, RSA_PUBLIC_PEM, hashlib.sha256))], 401),
    Attack("empty-hmac-key", [bearer(hand_signed({"alg": "HS256"}, CLAIMS, b"", hashlib.sha256))], 401),
    Attack("kid-path-traversal", [bearer(hand_signed({"alg": "HS256", "kid": "../../../../dev/null"}, CLAIMS, b"", hashlib.sha256))], 401),
    Attack("kid-sql", [bearer(jwt.encode(CLAIMS, "x" * 32, algorithm="HS256", headers={"kid": "' UNION SELECT 'x'--"}))], 401),
    Attack("jku-x5u-elsewhere", [bearer(jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256", headers={"jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/c"}))], 401),
    Attack("expired", [bearer(make_jwt(ttl=-3600))], 401),
    Attack("nbf-future", [bearer(make_jwt(nbf=NOW + 43200))], 401),
    Attack("exp-as-string", [bearer(make_jwt(exp=str(NOW + 3600)))], 401),
    Attack("wrong-issuer", [bearer(make_jwt(iss="evil"))], 401),
    Attack("wrong-audience", [bearer(make_jwt(aud="other-api"))], 401),
    Attack("no-tenant", [bearer(make_jwt(tenant_id=None))], 401),
    Attack("token-in-query", [], 401, path=f"/api/v2/crm/contacts?access_token={HONEST}&token={HONEST}"),
    Attack("token-oversized", [bearer(HONEST + "A" * 60_000)], 401),
    Attack("basic-scheme", [("Authorization", "Basic " + b64(b"admin:admin"))], 401),
    # -- header smuggling --------------------------------------------------------------------
    Attack("two-authorizations", [bearer(HONEST), bearer(OTHER)], 400),
    Attack("authorization-underscore", [("Authorization_", f"Bearer {HONEST}")], 401),
    Attack("client-identity-header", [bearer(HONEST), (IDENTITY_HEADER, forged_identity("globex"))], 200,
           identity={"user": "honest", "tenant": "acme", "src": "jwt"}),
    Attack("client-identity-underscore", [bearer(HONEST), (IDENTITY_HEADER.replace("-", "_"), forged_identity("globex"))], 200,
           identity={"user": "honest", "tenant": "acme", "src": "jwt"}),
    Attack("identity-header-alone", [(IDENTITY_HEADER, forged_identity("acme"))], 401),
    Attack("crlf-in-header-value", [bearer(HONEST)], 400, raw_head=f"X-Note: a\rX-Tenant-Id: globex\r\n{IDENTITY_HEADER}: forged\r\n".encode()),
    Attack("te-cl-smuggling", [bearer(HONEST), ("Transfer-Encoding", "chunked"), ("Content-Length", "4")], 400,
           method="POST", body=b"0\r\n\r\nGET /api/v2/crm/contacts HTTP/1.1\r\n\r\n"),
    # -- paths -------------------------------------------------------------------------------
    Attack("dot-dot-to-root", [bearer(HONEST)], 404, path="/api/v2/crm/../../../etc/passwd"),
    Attack("dot-dot-above-root", [bearer(HONEST)], 400, path="/api/v2/crm/../../../../etc/passwd"),
    Attack("encoded-dot-dot", [bearer(HONEST)], 400, path="/api/v2/crm/%2e%2e/%2e%2e/%2e%2e/%2e%2e/x"),
    Attack("encoded-slash", [bearer(HONEST)], 404, path="/api/v2/crm/..%2f..%2f..%2fadmin"),
    Attack("double-encoded", [bearer(HONEST)], 404, path="/api/v2/%252e%252e/crm"),
    Attack("backslash", [bearer(HONEST)], 404, path="/api/v2\\crm/contacts"),
    Attack("unknown-prefix", [bearer(HONEST)], 404, path="/internal/admin"),
    # -- bodies ------------------------------------------------------------------------------
    # refused on the declared length, before the body is read (only its first KiB is sent)
    Attack("oversized-body", [bearer(HONEST), ("Content-Type", "application/json"),
                              ("Content-Length", str(2 << 20))], 413, method="POST", body=b"[" * 1024),
]  # fmt: skip


async def send(url: str, attack: Attack, path: str) -> tuple[int, bytes]:
    """The request on a raw socket: the head exactly as the table says."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"{attack.method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in attack.headers]
    framed = {k.lower() for k, _ in attack.headers} & {"transfer-encoding", "content-length"}
    if attack.body and not framed:
        head.append(f"Content-Length: {len(attack.body)}")
    writer.write(("\r\n".join(head) + "\r\n").encode() + attack.raw_head + b"\r\n" + attack.body)
    try:
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=20)
    except ConnectionResetError:  # refused before the body was read: the status was sent
        data = b""
    writer.close()
    status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
    assert status_line.startswith("HTTP/1.1 "), (attack.id, data[:200])
    return int(status_line.split(" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


# Rows the gateway fails today, each a finding for its owner (strict: a fix turns them red).
GAPS: dict[str, str] = {}


@pytest.mark.parametrize(
    "attack",
    [pytest.param(a, id=a.id, marks=[pytest.mark.xfail(strict=True, reason=GAPS[a.id])] if a.id in GAPS else [])
     for a in TABLE],
)  # fmt: skip
async def test_attack_table(gateway: RunningGateway, upstream: Upstream, attack: Attack) -> None:
    marker = f"atk-{uuid.uuid4().hex[:8]}"
    path = attack.path.replace("/contacts", f"/{marker}", 1)
    status, body = await send(gateway.url, attack, path)
    assert status == attack.expect, (attack.id, body[:300])
    if status >= 400:
        assert upstream.count(f"/api/v2/crm/{marker}") == 0, (
            "a refused request reached the upstream"
        )
        assert not any(marker in p for p in upstream.hits), "a refused request reached the upstream"
        return
    echoed = json.loads(body)
    assert echoed["identity"] == attack.identity
    assert echoed["path"].startswith("/api/v2/crm/")
