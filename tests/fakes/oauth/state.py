"""What the fake OAuth providers remember: clients, codes (with their PKCE challenge and
redirect URI), tokens, and a count of every call. Pure data, guarded by one lock in the server.

The two providers answer errors the way each does:
- Slack (`oauth.v2.access`, `auth.revoke`): HTTP 200 with `{"ok": false, "error": "<code>"}`
  (429 + Retry-After with `ratelimited`). Codes used: invalid_client_id, bad_client_secret,
  invalid_code (also for a code_verifier that does not match the challenge: Slack does not
  document a separate code), code_already_used, bad_redirect_uri, invalid_grant_type,
  invalid_refresh_token, invalid_auth, not_authed; internal_error for a failure of its own.
  With `user_scope` on the authorize URL, the exchange's `authed_user` also carries a user
  token (`access_token` xoxp-, `scope`, `token_type: user`; with rotation xoxe.xoxp-,
  `refresh_token`, `expires_in`), a grant of its own; refreshing it answers it at the top level.
- Google (`/token`, `/revoke`): RFC 6749 JSON, HTTP 400 `invalid_grant` (bad or used code,
  PKCE mismatch, revoked or expired refresh token), 400 `invalid_request`, 401
  `invalid_client`, 400 `unsupported_grant_type`; revoke 200 `{}` or 400 `invalid_token`;
  HTTP 500 `{"error": "internal_failure"}` for a failure of its own (not RFC 6749's
  `server_error`, which is for the authorization endpoint's redirect).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = ["Code", "ProviderState", "Reply", "s256"]

Reply = tuple[int, dict[str, Any], dict[str, str]]
"""HTTP status, JSON body, extra headers."""


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str | None
    scope: str
    expires: float
    used: bool = False
    user_scope: str = ""
    """Slack: the `user_scope` asked for (a user token is issued beside the bot token)."""


@dataclass
class ProviderState:
    """One provider's memory. `kind` is "slack" or "google"."""

    kind: str
    clients: dict[str, str] = field(default_factory=dict)
    expires_in: int | None = 3600
    """Lifetime of issued access tokens (None: Slack without token rotation)."""
    codes: dict[str, Code] = field(default_factory=dict)
    access: dict[str, str] = field(default_factory=dict)
    """access token -> its grant id."""
    refresh: dict[str, str] = field(default_factory=dict)
    """refresh token -> its grant id."""
    grant_scopes: dict[str, str] = field(default_factory=dict)
    user_grants: set[str] = field(default_factory=set)
    """Slack: grants of user tokens (xoxp-), each beside a bot token's grant."""
    revoked: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    """Every token and code ever issued (tests grep logs for them)."""
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: dict[str, list[int]] = field(default_factory=dict)
    account: dict[str, str] = field(
        default_factory=lambda: {
            "team": "T0FAKETEAM",
            "user": "U0FAKEUSER",
            "email": "someone@example.com",
            "sub": "1234567890",
        }
    )

    # -- authorize ---------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """(302, Location) back to the redirect URI, or (400, message) as the provider's
        error page. The user approves everything asked."""
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        if client_id not in self.clients:
            return 400, f"invalid client_id {client_id!r}"
        if not redirect_uri:
            return 400, "missing redirect_uri"
        if query.get("response_type", "code") != "code":
            return 400, "unsupported response_type"
        code = self._token("code")
        self.codes[code] = Code(
            client_id=client_id,
            redirect_uri=redirect_uri,
            challenge=query.get("code_challenge"),
            method=query.get("code_challenge_method"),
            scope=query.get("scope", ""),
            expires=time.monotonic() + 600,
            user_scope=query.get("user_scope", "") if self.kind == "slack" else "",
        )
        sep = "&" if "?" in redirect_uri else "?"
        state = query.get("state")
        location = f"{redirect_uri}{sep}code={code}"
        if state is not None:
            location += f"&state={quote(state, safe='')}"
        return 302, location

    # -- token endpoint ----------------------------------------------------------------------

    def token(self, form: dict[str, str]) -> Reply:
        fault = self._fault("token")
        if fault:
            return fault
        bad = self._client_error(form)
        if bad:
            return bad
        grant = form.get("grant_type", "authorization_code" if self.kind == "slack" else "")
        if grant == "authorization_code":
            self.calls["exchange"] += 1
            return self._exchange(form)
        if grant == "refresh_token":
            self.calls["refresh"] += 1
            return self._refresh(form)
        if self.kind == "slack":
            return self._error("invalid_grant_type")
        return self._error("unsupported_grant_type", status=400)

    def _exchange(self, form: dict[str, str]) -> Reply:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.expires < time.monotonic():
            return self._error("invalid_code", google="invalid_grant", desc="Bad Request")
        if code.used:
            return self._error("code_already_used", google="invalid_grant", desc="Bad Request")
        if code.client_id != form.get("client_id"):
            return self._error("invalid_code", google="invalid_grant", desc="Bad Request")
        if code.redirect_uri != form.get("redirect_uri"):
            return self._error(
                "bad_redirect_uri", google="redirect_uri_mismatch", desc="Bad Request"
            )
        if code.challenge is not None:
            verifier = form.get("code_verifier", "")
            if code.method != "S256" or not verifier or s256(verifier) != code.challenge:
                return self._error(
                    "invalid_code", google="invalid_grant", desc="Invalid code verifier."
                )
        code.used = True
        grant = self._token("grant")
        self.grant_scopes[grant] = code.scope
        body = self._token_body(grant, new_refresh=True)
        if code.user_scope:  # Slack: the user token goes under authed_user
            user = self._token("grant")
            self.grant_scopes[user] = code.user_scope
            self.user_grants.add(user)
            body["authed_user"] = {**body["authed_user"], **self._user_token(user)}
        return 200, body, {}

    def _refresh(self, form: dict[str, str]) -> Reply:
        grant = self.refresh.get(form.get("refresh_token", ""))
        if grant is None:
            return self._error(
                "invalid_refresh_token",
                google="invalid_grant",
                desc="Token has been expired or revoked.",
            )
        # Slack rotates the refresh token; Google keeps the old one and sends none
        if self.kind == "slack":
            self.refresh.pop(form["refresh_token"])
        if grant in self.user_grants:  # a user token's refresh: the new one at the top level
            body = {"ok": True, "app_id": "A0FAKEAPP", **self._user_token(grant)}
            body["team"] = {"id": self.account["team"], "name": "Fake Team"}
            return 200, body, {}
        return 200, self._token_body(grant, new_refresh=self.kind == "slack"), {}

    def _user_token(self, grant: str) -> dict[str, Any]:
        """Slack's user token fields (xoxp-; xoxe.xoxp- and a refresh token with rotation)."""
        rotating = self.expires_in is not None
        access = self._token("xoxe.xoxp-1-" if rotating else "xoxp-")
        self.access[access] = grant
        body: dict[str, Any] = {
            "id": self.account["user"],
            "scope": self.grant_scopes[grant],
            "access_token": access,
            "token_type": "user",
        }
        if rotating:
            refresh = self._token("xoxe-1-")
            self.refresh[refresh] = grant
            body.update(expires_in=self.expires_in, refresh_token=refresh)
        return body

    def _token_body(self, grant: str, *, new_refresh: bool) -> dict[str, Any]:
        prefix = "xoxe.xoxb-1-" if self.kind == "slack" else "ya29.a0"
        access = self._token(prefix)
        self.access[access] = grant
        scope = self.grant_scopes[grant]
        body: dict[str, Any] = {"access_token": access}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if new_refresh and (self.expires_in is not None or self.kind == "google"):
            refresh = self._token("xoxe-1-" if self.kind == "slack" else "1//0g")
            self.refresh[refresh] = grant
            body["refresh_token"] = refresh
        if self.kind == "slack":
            return {
                "ok": True,
                "app_id": "A0FAKEAPP",
                "authed_user": {"id": self.account["user"]},
                "scope": scope,
                "token_type": "bot",
                "bot_user_id": "U0FAKEBOT",
                "team": {"id": self.account["team"], "name": "Fake Team"},
                "enterprise": None,
                "is_enterprise_install": False,
                **body,
            }
        body.update(scope=scope, token_type="Bearer", id_token=self._id_token())
        return body

    def _id_token(self) -> str:
        def part(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        claims = {
            "iss": "https://accounts.google.com",
            "sub": self.account["sub"],
            "email": self.account["email"],
            "email_verified": True,
            "iat": int(time.time()),
            "exp": int(time.time()) + 3600,
        }
        return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"

    # -- revoke ------------------------------------------------------------------------------

    def revoke(self, form: dict[str, str], bearer: str | None) -> Reply:
        fault = self._fault("revoke")
        if fault:
            return fault
        self.calls["revoke"] += 1
        token = bearer or form.get("token", "")
        if not token:
            return self._error("not_authed", google="invalid_request", desc="Bad Request")
        grant = self.access.get(token) or self.refresh.get(token)
        if grant is None:
            return self._error(
                "invalid_auth", google="invalid_token", desc="Token expired or revoked"
            )
        self.revoke_grant(grant)
        self.revoked.append(token)
        return 200, ({"ok": True, "revoked": True} if self.kind == "slack" else {}), {}

    def revoke_grant(self, grant: str) -> None:
        """The user removed the app: every token of the grant stops working."""
        for table in (self.access, self.refresh):
            for token in [t for t, g in table.items() if g == grant]:
                table.pop(token)

    # -- helpers -----------------------------------------------------------------------------

    def _client_error(self, form: dict[str, str]) -> Reply | None:
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return self._error(
                "invalid_client_id", google="invalid_client", desc="Unauthorized", status=401
            )
        if not secrets.compare_digest(self.clients[client_id], form.get("client_secret", "")):
            return self._error(
                "bad_client_secret", google="invalid_client", desc="Unauthorized", status=401
            )
        return None

    def _error(
        self, slack: str, *, google: str | None = None, desc: str = "", status: int = 400
    ) -> Reply:
        if self.kind == "slack":
            return 200, {"ok": False, "error": slack}, {}
        return status, {"error": google or slack, "error_description": desc}, {}

    def _fault(self, endpoint: str) -> Reply | None:
        queue = self.faults.get(endpoint)
        if not queue:
            return None
        status = queue.pop(0)
        self.calls[f"{endpoint}.fault"] += 1
        if status == 429:
            body: dict[str, Any] = (
                {"ok": False, "error": "ratelimited"}
                if self.kind == "slack"
                else {"error": "rate_limit_exceeded"}
            )
            return 429, body, {"Retry-After": "1"}
        return self.internal_error(status)

    def internal_error(self, status: int | None = None) -> Reply:
        """The token or revoke endpoint's answer to a failure of the provider's own (or its
        front's `status`): Slack's envelope, HTTP 200 from the method itself; Google's
        `internal_failure`, HTTP 500, without a description."""
        if self.kind == "slack":
            return status or 200, {"ok": False, "error": "internal_error"}, {}
        return status or 500, {"error": "internal_failure"}, {}

    def _token(self, prefix: str) -> str:
        token = prefix + secrets.token_urlsafe(24)
        self.issued.append(token)
        return token
