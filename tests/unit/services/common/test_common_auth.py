"""Unit tests of end-user token verification (no emulator: Firebase is a stub verifier)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from services.common.auth import AuthError, ChainVerifier, JwtVerifier, bearer_token
from services.common.settings import AuthSettings
from services.common.tenancy import Identity

SECRET = "unit-secret-" + "z" * 32
NOW = int(time.time())
LATER = NOW + 7 * 86400  # tokens are minted at collection; the suite may run long before use


def token(secret: str = SECRET, **claims: Any) -> str:
    base: dict[str, Any] = {
        "user_id": "u1",
        "tenant_id": "acme",
        "iss": "xynergy",
        "aud": "xynergy-api",
    }
    base["exp"] = LATER
    merged = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return jwt.encode(merged, secret, algorithm="HS256")


def unsigned(**claims: Any) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    body = {"user_id": "u1", "tenant_id": "acme", "iss": "xynergy", "aud": "xynergy-api"}
    return f"{b64({'alg': 'none'})}.{b64({**body, 'exp': LATER, **claims})}."


@pytest.fixture
def verifier() -> JwtVerifier:
    return JwtVerifier(AuthSettings(jwt_secret=SECRET, firebase_enabled=False))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tok", "check"),
    [
        (token(exp=NOW - 3600), "expired"),
        (token(nbf=LATER - 60), "not_yet_valid"),
        (token(iss="other"), "issuer"),
        (token(aud="other"), "audience"),
        (token(secret="another-secret-" + "q" * 32), "signature"),
        (token(tenant_id=None), "tenant"),
        (token(tenant_id="bad tenant"), "tenant"),
        (token(exp=None), "claims"),
        (token(user_id=None), "subject"),
        ("abc.def", "malformed"),
        (unsigned(), "algorithm"),
        (jwt.encode({"user_id": "u"}, "k" * 64, algorithm="HS512"), "algorithm"),
    ],
)
async def test_jwt_failures_name_the_check(verifier: JwtVerifier, tok: str, check: str) -> None:
    with pytest.raises(AuthError) as info:
        await verifier.verify(tok)
    assert info.value.check == check
    assert tok not in info.value.message


async def test_jwt_success_reads_the_claims(verifier: JwtVerifier) -> None:
    identity = await verifier.verify(token(email="a@b.c", roles=["admin", "x"]))
    assert identity == Identity(
        user_id="u1", tenant_id="acme", email="a@b.c", roles=("admin", "x"), source="jwt"
    )


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for bad, check in (
        (None, "missing"),
        ("", "missing"),
        ("Basic x", "scheme"),
        ("Bearer", "scheme"),
    ):
        with pytest.raises(AuthError) as info:
            bearer_token(bad)
        assert info.value.check == check


class StubFirebase:
    def __init__(self, result: Identity | AuthError) -> None:
        self.result = result
        self.calls = 0

    async def verify(self, tok: str) -> Identity:
        self.calls += 1
        if isinstance(self.result, AuthError):
            raise self.result
        return self.result


async def test_chain_tries_firebase_then_jwt(
    verifier: JwtVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    fb_identity = Identity(user_id="fb", tenant_id="t", source="firebase")
    ok = StubFirebase(fb_identity)
    chain = ChainVerifier(firebase=ok, jwt_verifier=verifier)
    rs256_like = jwt.encode({"x": 1}, "k" * 64, algorithm="HS384")
    assert await chain.verify(rs256_like) == fb_identity
    # an HS256 token skips Firebase entirely
    assert (await chain.verify(token())).source == "jwt"
    assert ok.calls == 1
    # Firebase refuses, JWT refuses: the JWT's reason is reported
    failing = ChainVerifier(
        firebase=StubFirebase(AuthError("firebase", "no")), jwt_verifier=verifier
    )
    with pytest.raises(AuthError) as info:
        await failing.verify(rs256_like)
    assert info.value.check == "algorithm"
    # Firebase says the tenant is missing: that is the answer, no fallback
    tenantless = ChainVerifier(
        firebase=StubFirebase(AuthError("tenant", "no tenant")), jwt_verifier=verifier
    )
    with pytest.raises(AuthError) as info:
        await tenantless.verify(rs256_like)
    assert info.value.check == "tenant"


async def test_unsigned_tokens_only_reach_firebase_with_the_emulator(
    verifier: JwtVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    fb = StubFirebase(Identity(user_id="emu", tenant_id="t", source="firebase"))
    chain = ChainVerifier(firebase=fb, jwt_verifier=verifier)
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    with pytest.raises(AuthError) as info:
        await chain.verify(unsigned())
    assert info.value.check == "algorithm"
    assert fb.calls == 0
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    assert (await chain.verify(unsigned())).user_id == "emu"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value",
    [str(LATER), str(NOW - 60), "soon", True, [LATER]],
    ids=["digits", "past", "word", "bool", "list"],
)
async def test_time_claims_must_be_json_numbers(
    verifier: JwtVerifier, claim: str, value: object
) -> None:
    """RFC 7519 NumericDate: a string (even of digits), a boolean or a list is refused, naming
    the claim (PyJWT alone takes ``int("9999999999")``)."""
    claims: dict[str, Any] = {claim: value}
    tok = token(**claims)
    with pytest.raises(AuthError) as info:
        await verifier.verify(tok)
    assert info.value.check == "claims"
    assert repr(claim) in info.value.message
    assert "number" in info.value.message


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_numeric_time_claims_are_accepted(verifier: JwtVerifier, claim: str) -> None:
    claims: dict[str, Any] = {claim: NOW - 60.5}
    identity = await verifier.verify(token(**claims))
    assert identity.user_id == "u1"
