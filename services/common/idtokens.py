"""Google-signed ID tokens for calls to Cloud Run services that require authentication.

A Cloud Run service without `allUsers` as invoker answers 403 to a request that carries no
ID token of a caller it lets in (roles/run.invoker). The gateway (to its Cloud Run upstreams)
and the Rollout's verification (to a new revision's tag URL) carry one: :class:`IdTokens`
fetches it with Application Default Credentials (the metadata server on GKE and Cloud Run, a
service-account key file elsewhere; google-auth's ``fetch_id_token``), for the audience Cloud
Run always accepts, the service's own ``https://<service>-<hash>.<region>.run.app`` URL (a tag
URL ``https://<tag>---<service>...`` is the same service), and sends it as
``X-Serverless-Authorization``, which Cloud Run checks before ``Authorization`` and does not
pass on with its signature, so the request's own ``Authorization`` stays the application's.

Tokens are cached per audience until five minutes before they expire (an hour's token is
fetched about once in 55 minutes); concurrent callers share one fetch. A fetch that fails
(no credentials, a user account, the metadata server down) is logged once per audience and
cause, never with a token, and retried after ``retry_seconds``; meanwhile requests go without
a token, and Cloud Run's 403 says what is missing. URLs that are not Cloud Run's get nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HEADER", "IdTokens", "cloud_run_audience", "fetch_with_adc"]

log = logging.getLogger("xynergy.idtokens")

HEADER = "x-serverless-authorization"
_RUN_APP = ".run.app"
_TAG_SEPARATOR = "---"

Fetch = Callable[[str], str]
"""audience -> a Google-signed ID token (blocking; run in a thread)."""


def cloud_run_audience(url: str) -> str | None:
    """The audience of a Cloud Run URL (its service's `https://...run.app`, a tag removed);
    None for any other URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host.endswith(_RUN_APP):
        return None
    label, dot, rest = host.partition(".")
    _, tagged, service = label.partition(_TAG_SEPARATOR)
    return f"https://{service if tagged else label}{dot}{rest}"


def fetch_with_adc(audience: str) -> str:
    """google-auth's ID token for `audience` from Application Default Credentials."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    request = google.auth.transport.requests.Request()
    return str(google.oauth2.id_token.fetch_id_token(request, audience))  # type: ignore[no-untyped-call]


def _expiry(token: str) -> float | None:
    """The token's `exp` (not verified: the token is ours to send, not to trust)."""
    import google.auth.jwt

    try:
        claims = google.auth.jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
    except ValueError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


@dataclass
class _Entry:
    token: str | None
    refresh_at: float


class IdTokens:
    """ID tokens per Cloud Run audience, cached and refreshed before they expire."""

    def __init__(
        self,
        fetch: Fetch = fetch_with_adc,
        *,
        margin_seconds: float = 300.0,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._margin = margin_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[str | None]] = {}
        self._logged: set[tuple[str, str]] = set()

    async def header(self, url: str) -> tuple[str, str] | None:
        """(`x-serverless-authorization`, `Bearer <token>`) for a Cloud Run URL, else None."""
        audience = cloud_run_audience(url)
        if audience is None:
            return None
        token = await self.token(audience)
        return (HEADER, f"Bearer {token}") if token else None

    async def token(self, audience: str) -> str | None:
        """The cached token for `audience`, fetched when missing or about to expire."""
        entry = self._cache.get(audience)
        if entry is not None and self._clock() < entry.refresh_at:
            return entry.token
        pending = self._inflight.get(audience)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._inflight[audience] = future
        try:
            token = await self._fetched(audience)
            future.set_result(token)
            return token
        finally:
            del self._inflight[audience]
            if not future.done():
                future.set_result(None)

    async def _fetched(self, audience: str) -> str | None:
        now = self._clock()
        try:
            token = await asyncio.to_thread(self._fetch, audience)
        except Exception as exc:  # every cause leaves the request without a token
            cause = type(exc).__name__
            if (audience, cause) not in self._logged:
                self._logged.add((audience, cause))
                log.warning(
                    "no ID token for a Cloud Run audience: requests go without one",
                    extra={"fields": {"audience": audience, "error": cause}},
                )
            self._cache[audience] = _Entry(None, now + self._retry)
            return None
        expires = _expiry(token)
        lifetime = (expires - now) if expires is not None else 3600.0
        refresh_at = now + max(lifetime - self._margin, min(lifetime / 2, self._retry))
        self._cache[audience] = _Entry(token, refresh_at)
        return token
