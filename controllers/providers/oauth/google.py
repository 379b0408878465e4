"""Google OAuth 2.0 (for Gmail): `accounts.google.com/o/oauth2/v2/auth`,
`oauth2.googleapis.com/token`, `oauth2.googleapis.com/revoke`.

Google's quirks: a refresh token is only issued with `access_type=offline` (and again on a
re-consent only with `prompt=consent`); a refresh answer carries no new refresh token (the old
one stays); errors are RFC 6749 JSON with HTTP 400/401 (`invalid_grant` for a bad code, a
PKCE mismatch or a revoked refresh token; a rate limit is 429 `rate_limit_exceeded`,
retried); revoke answers 200 or 400 `invalid_token`. The
account's email comes from the `id_token` when an `openid`/`email` scope was granted: it is
read without checking its signature, which OpenID Connect Core 3.1.3.7 allows for an ID token
received straight from the token endpoint over TLS.
"""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar

from controllers.providers.oauth import Account, endpoints
from controllers.providers.oauth.oauth2 import OAuth2Provider

__all__ = ["DEFAULT_ENDPOINTS", "GoogleOAuth"]

DEFAULT_ENDPOINTS = endpoints.GOOGLE


class GoogleOAuth(OAuth2Provider):
    name: ClassVar[str] = "google"
    grant_errors: ClassVar[frozenset[str]] = frozenset({"invalid_grant", "invalid_token"})

    def authorize_params(self) -> dict[str, str]:
        return {"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"}

    def account(self, token: dict[str, Any]) -> Account:
        claims = _claims(str(token.get("id_token") or ""))
        email = claims.get("email")
        return Account(user_id=claims.get("sub"), email=email if isinstance(email, str) else None)


def _claims(id_token: str) -> dict[str, Any]:
    parts = id_token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}
