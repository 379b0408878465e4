"""The Gmail API through google-api-python-client, built from the discovery document the
client library ships (``build_from_document``; nothing is fetched), with google-auth
credentials holding the connection's access token.

The operator refreshes tokens (services never hold a refresh token's client secret), so the
authorized HTTP never refreshes on a 401: a refused token is an answer, mapped to 409.
httplib2 is blocking and not thread-safe: each :class:`GmailApi` has its own ``Http`` and runs
its calls one at a time in a worker thread.

Gmail's 400 is the caller's 422 with Gmail's own message. A route says which of its request
fields fed each Gmail parameter (:data:`Fields`); when Gmail's message names one of them the 422
names that field in ``fields``, otherwise ``fields`` is empty and the message says Gmail named
none. A message from Gmail never carries the connection's access token (it is redacted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping
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

__all__ = ["Fields", "GmailApi", "discovery_document", "from_http_error", "gmail_parameter"]

log = logging.getLogger("xynergy.gmail")

Fields = Mapping[str, str | Callable[[str], str | None]]
"""Gmail parameter (as :func:`gmail_parameter` names it) -> the field of the service's request
that fed it, or a function of the value Gmail's message names (``Invalid label: X``) giving
the field (``add.0``), or None when that value is in none of the request's fields."""


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
        self._secrets = (access_token,)
        self._lock = asyncio.Lock()

    async def run(
        self, request: Callable[[Resource], HttpRequest], *, fields: Fields | None = None
    ) -> dict[str, Any]:
        """Build a request on ``users()`` and execute it in a thread; errors as ApiError,
        a 400 naming the field of ``fields`` Gmail's message is about."""
        async with self._lock:
            try:
                result = await asyncio.to_thread(request(self._users).execute, num_retries=0)
            except HttpError as exc:
                raise from_http_error(
                    exc, connection=self.connection, fields=fields, secrets=self._secrets
                ) from None
            except TimeoutError:
                raise ApiError(504, "Gmail did not answer in time") from None
            except (httplib2.HttpLib2Error, OSError) as exc:
                raise ApiError(502, f"Gmail unreachable ({type(exc).__name__})") from None
        return result if isinstance(result, dict) else {}


_MESSAGE_LIMIT = 300
_TOKEN = re.compile(r"\bya29\.[\w.-]+|\b1//[\w.-]{10,}")
"""What Google's access tokens (``ya29.``) and refresh tokens (``1//``) look like."""


def gmail_parameter(message: str) -> tuple[str, str] | None:
    """(parameter, value) Gmail's 400 message is about, ``value`` the one it names or "";
    None when it names no parameter of the request. ``to``, ``cc`` and ``bcc`` are the
    headers of the ``raw`` message sent."""
    if found := re.fullmatch(r"Invalid (To|Cc|Bcc) header", message):
        return found[1].lower(), ""
    if message == "Recipient address required":
        return "to", ""
    if found := re.fullmatch(r"Invalid label: (.+)", message):
        return "labelIds", found[1]
    if re.match(r"Invalid label name\b", message):
        return "name", ""
    if message.startswith("Request payload size exceeds the limit"):
        return "raw", ""
    if message == "Invalid id value":
        return "id", ""
    for parameter, pattern in (
        ("pageToken", r"\bInvalid (?:value for )?page ?token\b"),
        ("threadId", r"\bInvalid (?:value for )?thread[ _]?id\b"),
        ("maxResults", r"\bInvalid value for maxResults\b"),
        ("q", r"^Invalid (?:search )?query\b|\bInvalid value for q\b"),
    ):
        if re.search(pattern, message, re.IGNORECASE):
            return parameter, ""
    return None


def _field(message: str, fields: Fields | None) -> str | None:
    found = gmail_parameter(message)
    where = fields.get(found[0]) if found and fields else None
    if where is None or found is None:
        return None
    return where(found[1]) if callable(where) else where


def _reason(exc: HttpError) -> tuple[str, str]:
    """(reason, message) of Google's error body."""
    try:
        error = json.loads(exc.content).get("error", {})
    except (ValueError, AttributeError):
        return "", ""
    errors = error.get("errors") or [{}]
    return str(errors[0].get("reason") or ""), str(error.get("message") or "")


def _clean(message: str, secrets: tuple[str, ...]) -> str:
    """Gmail's message as the service repeats it: one line, at most 300 characters, with no
    token in it."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "[redacted]")
    message = _TOKEN.sub("[redacted]", message)
    message = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", message).split())
    return message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 3] + "..."


def from_http_error(
    exc: HttpError, *, connection: str, fields: Fields | None = None, secrets: tuple[str, ...] = ()
) -> ApiError:
    status = int(exc.resp.status)
    reason, message = _reason(exc)
    message = _clean(message, secrets)
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
    if status == 400:  # a 422 names the field Gmail's message is about, or says it names none
        said = message or _clean(reason, secrets) or "400 Bad Request, no message"
        field = _field(message, fields)
        if field is None:
            return ApiError(422, f"Gmail: {said} (names no field of this request)", fields=[])
        return ApiError(422, f"Gmail: {said}", fields=[{"field": field, "message": said}])
    if status in (403, 404, 409):
        return ApiError(status, f"Gmail: {message or _clean(reason, secrets)}")
    return ApiError(502, f"Gmail answered {status} {reason}".rstrip(), error="upstream_error")
