"""Unit tests of the gateway-to-service identity token and the services' dependency."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.identity import (
    IDENTITY_HEADER,
    CurrentIdentity,
    InternalIdentityError,
    InternalIdentitySigner,
    InternalIdentityVerifier,
)
from services.common.roles import Editor
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity

KEY = "k" * 40
SETTINGS = InternalIdentitySettings(signing_key=KEY)  # type: ignore[arg-type]
ALICE = Identity(user_id="alice", tenant_id="acme", email="a@x.io", roles=("admin",))


def test_round_trip_and_token_reuse() -> None:
    signer = InternalIdentitySigner(SETTINGS)
    tok = signer.sign(ALICE)
    assert signer.sign(ALICE) == tok
    assert InternalIdentityVerifier(SETTINGS).verify(tok) == ALICE


@pytest.mark.parametrize(
    "tok",
    [
        None,
        "",
        "garbage",
        jwt.encode({"sub": "a", "tid": "t", "iat": 1, "exp": 2**40}, "other" * 10, "HS256"),
        jwt.encode(
            {
                "sub": "a",
                "tid": "t",
                "iss": "xynergy-gateway",
                "aud": "xynergy-services",
                "iat": int(time.time()) - 100,
                "exp": int(time.time()) - 50,
            },
            KEY,
            "HS256",
        ),
        # PyJWT's "none" algorithm takes no key; its key type does not allow None
        jwt.encode({"sub": "a", "tid": "t"}, None, "none"),  # type: ignore[arg-type]
    ],
    ids=["none", "empty", "garbage", "wrong-key", "expired", "unsigned"],
)
def test_services_refuse_bad_identities(tok: str | None) -> None:
    with pytest.raises(InternalIdentityError):
        InternalIdentityVerifier(SETTINGS).verify(tok)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        InternalIdentitySigner(InternalIdentitySettings(signing_key="short"))  # type: ignore[arg-type]


def test_fastapi_dependency() -> None:
    app = FastAPI()
    app.state.identity_verifier = InternalIdentityVerifier(SETTINGS)

    @app.get("/me")
    def me(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id, "tenant": identity.tenant_id}

    client = TestClient(app)
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"X-User-Id": "alice"}).status_code == 401
    good = InternalIdentitySigner(SETTINGS).sign(ALICE)
    r = client.get("/me", headers={IDENTITY_HEADER: good})
    assert r.json() == {"user": "alice", "tenant": "acme"}


def test_identity_and_role_checks_take_no_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity and role dependencies run on the event loop: FastAPI sends a plain `def`
    dependency to its thread pool, a hop per dependency per request (and a queue when the
    pool is busy with blocking calls)."""

    async def no_threads(*_: object, **__: object) -> None:
        raise AssertionError("a dependency was run in the thread pool")

    monkeypatch.setattr("fastapi.dependencies.utils.run_in_threadpool", no_threads)
    app = FastAPI()
    app.state.identity_verifier = InternalIdentityVerifier(SETTINGS)

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id}

    @app.get("/edit")
    async def edit(identity: Editor) -> dict[str, str]:
        return {"user": identity.user_id}

    client = TestClient(app)
    good = {IDENTITY_HEADER: InternalIdentitySigner(SETTINGS).sign(ALICE)}
    assert client.get("/me", headers=good).json() == {"user": "alice"}
    assert client.get("/edit", headers=good).json() == {"user": "alice"}
    assert client.get("/me").status_code == 401
