"""The Gmail API through google-api-python-client, built from the discovery document the
client library ships (``build_from_document``; nothing is fetched), with google-auth
credentials holding the connection's access token.

The operator refreshes tokens (services never hold a refresh token's client secret), so the
authorized HTTP never refreshes on a 401: a refused token is an answer, mapped to 409.
httplib2 is blocking and not thread-safe: each :class:`GmailApi` has its own ``Http`` and runs
its calls one at a time in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

import httplib2
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import discovery_cache
from googleapiclient.discovery import Resource, build_from_document
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

from services.common.errors import ApiError

__all__ = ["GmailApi", "discovery_document", "from_http_error"]

log = logging.getLogger("xynergy.gmail")


@cache
def discovery_document() -> dict[str, Any]:
    """The Gmail v1 discovery document shipped with google-api-python-client."""
    text = discovery_cache.get_static_doc("gmail", "v1")
    if text is None:
        raise RuntimeError("google-api-python-client ships no gmail v1 discovery document")
    doc: dict[str, Any] = json.loads(text)
    return doc


class GmailApi:
    """One connection's Gmail for one request (or one poll)."""

    def __init__(self, access_token: str, *, api_url: str, timeout: float, connection: str) -> None:
        credentials = Credentials(token=access_token)  # type: ignore[no-untyped-call]
        http = AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=timeout), refresh_status_codes=()
        )
        self._users: Any = build_from_document(
            discovery_document(), http=http, client_options={"api_endpoint": api_url}
        ).users()
        self.connection = connection
        self._lock = asyncio.Lock()

    async def run(self, request: Callable[[Resource], HttpRequest]) -> dict[str, Any]:
        """Build a request on ``users()`` and execute it in a thread; errors as ApiError."""
        async with self._lock:
            try:
                result = await asyncio.to_thread(request(self._users).execute, num_retries=0)
            except HttpError as exc:
                raise from_http_error(exc, connection=self.connection) from None
            except TimeoutError:
                raise ApiError(504, "Gmail did not answer in time") from None
            except (httplib2.HttpLib2Error, OSError) as exc:
                raise ApiError(502, f"Gmail unreachable ({type(exc).__name__})") from None
        return result if isinstance(result, dict) else {}


_HEADER_FIELDS = {
    "Invalid To header": "to",
    "Invalid Cc header": "cc",
    "Invalid Bcc header": "bcc",
}
"""Gmail's 400 on users.messages.send for a recipient header it cannot parse, and the field of
the send body that header is built from."""


def _reason(exc: HttpError) -> tuple[str, str]:
    """(reason, message) of Google's error body."""
    try:
        error = json.loads(exc.content).get("error", {})
    except (ValueError, AttributeError):
        return "", ""
    errors = error.get("errors") or [{}]
    return str(errors[0].get("reason") or ""), str(error.get("message") or "")


def from_http_error(exc: HttpError, *, connection: str) -> ApiError:
    status = int(exc.resp.status)
    reason, message = _reason(exc)
    if status == 401:
        msg = f"Google refused the token of OAuthConnection {connection}; re-authorize"
        return ApiError(409, msg, error="oauth_token_refused")
    if status == 429 or reason in ("rateLimitExceeded", "userRateLimitExceeded"):
        retry = str(exc.resp.get("retry-after") or "1")
        return ApiError(
            429, "Gmail rate-limited this call; retry later", headers={"Retry-After": retry}
        )
    if status == 403 and reason == "insufficientPermissions":
        msg = f"OAuthConnection {connection} lacks the Gmail scope this needs; re-authorize"
        return ApiError(403, msg, error="missing_scope")
    if status == 400 and message in _HEADER_FIELDS:  # a 422 names its field
        field = [{"field": _HEADER_FIELDS[message], "message": message}]
        return ApiError(422, f"Gmail: {message}", fields=field)
    if status in (400, 403, 404, 409):
        code = {400: 422, 403: 403, 404: 404, 409: 409}[status]
        return ApiError(code, f"Gmail: {message or reason}")
    return ApiError(502, f"Gmail answered {status} {reason}".rstrip(), error="upstream_error")
