"""HTTP front of the fake token endpoint (``POST /token``) on 127.0.0.1, in a thread.

Google's checks on the grant, in its order and with its answers (400, OAuth 2.0 error JSON):
``grant_type`` must be ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (else
``unsupported_grant_type``); the ``assertion`` must be an RS256 JWT signed by a key the fake
issued (``invalid_grant`` "Invalid JWT Signature."), for Google's token endpoint as ``aud``
(google-auth writes it whatever the key file's ``token_uri``) and not
expired (``invalid_grant`` "Invalid JWT: Token must be a short-lived token..."), with a
``target_audience`` claim (an access-token grant: the fake answers ``invalid_scope``, it issues
ID tokens only). The answer is ``{"id_token": <RS256 JWT>}`` with ``iss``
``https://accounts.google.com``, ``aud`` the target audience, ``email``/``sub`` the account,
``iat`` and ``exp`` an hour later, as Google's."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fakes.serving import JsonHandler, ThreadedFake

__all__ = ["FakeGoogleToken"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"
"""The `aud` Google requires of an assertion, whatever URI the key file sends it to."""
LIFETIME = 3600


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class FakeGoogleToken(ThreadedFake):
    """Issues ID tokens to the service accounts whose key files it wrote."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        fake = self

        class Handler(JsonHandler):
            def answer(self, raw: bytes) -> None:
                self.send_json(*fake.grant(self.path, raw), {})

            def internal_error(self, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
                return 500, {"error": "internal_failure"}, {}

        super().__init__(Handler, host=host, port=port, name="fake-google-token")
        self._lock = threading.Lock()
        self._signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._accounts: dict[str, rsa.RSAPublicKey] = {}
        self.issued: list[str] = []

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"

    def key_file(self, path: Path, email: str = "gateway@proj.iam.gserviceaccount.com") -> Path:
        """Write a service-account key file (the format IAM gives) pointing at the fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self._lock:
            self._accounts[email] = key.public_key()
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "proj",
                    "private_key_id": "k1",
                    "private_key": _pem(key),
                    "client_email": email,
                    "client_id": "1",
                    "token_uri": self.token_uri,
                }
            )
        )
        return path

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of an ID token this fake issued for `audience` (signature checked)."""
        return dict(
            jwt.decode(token, self._signer.public_key(), algorithms=["RS256"], audience=audience)
        )

    def grant(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        if path.split("?")[0] != "/token":
            return 404, {"error": "not_found"}
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Invalid grant_type",
            }
        claims = self._assertion(form.get("assertion", ""))
        if isinstance(claims, str):
            return 400, {"error": "invalid_grant", "error_description": claims}
        audience = claims.get("target_audience")
        if not audience:
            return 400, {"error": "invalid_scope", "error_description": "ID tokens only"}
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": "https://accounts.google.com",
                "aud": audience,
                "azp": claims["iss"],
                "email": claims["iss"],
                "email_verified": True,
                "sub": "1",
                "iat": now,
                "exp": now + LIFETIME,
            },
            self._signer,
            algorithm="RS256",
        )
        with self._lock:
            self.issued.append(audience)
        return 200, {"id_token": token}

    def _assertion(self, assertion: str) -> dict[str, Any] | str:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return "Invalid JWT Signature."
        with self._lock:
            key = self._accounts.get(str(unverified.get("iss")))
        if key is None:
            return "Invalid JWT Signature."
        try:
            return dict(
                jwt.decode(assertion, key, algorithms=["RS256"], audience=GOOGLE_TOKEN_ENDPOINT)
            )
        except jwt.ExpiredSignatureError:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        except jwt.InvalidTokenError:
            return "Invalid JWT Signature."
