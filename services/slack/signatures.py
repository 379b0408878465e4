"""Events API request verification: Slack's signature, a fresh timestamp, no replays.

Slack signs ``v0:<timestamp>:<body>`` with the app's signing secret (HMAC-SHA256, checked by
slack_sdk's :class:`SignatureVerifier`). A request whose timestamp is further than the
tolerance from now is refused before its signature is looked at; a signature seen before (kept
in Redis for twice the tolerance, after which its timestamp is stale anyway) is a replay.
Without Redis no request is accepted (503): replays could not be told.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr
from redis.exceptions import RedisError
from slack_sdk.signature import Clock, SignatureVerifier

from services.common.errors import ApiError

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookGuard"]

TIMESTAMP_HEADER = "x-slack-request-timestamp"
SIGNATURE_HEADER = "x-slack-signature"


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class WebhookGuard:
    def __init__(
        self,
        *,
        signing_secret: SecretStr,
        redis: Any,
        tolerance_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        secret = signing_secret.get_secret_value()
        self._verifier = SignatureVerifier(secret, clock=_Clock(clock)) if secret else None
        self._redis = redis
        self._tolerance = tolerance_seconds
        self._clock = clock

    async def check(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Return when the request is Slack's and new; else raise an :class:`ApiError`."""
        if self._verifier is None:
            raise ApiError(
                503, "the Slack signing secret is not configured (XYNERGY_SLACK_SIGNING_SECRET)"
            )
        stamp, signature = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
        if not stamp or not stamp.isdigit():
            raise ApiError(
                401, "X-Slack-Request-Timestamp: expected Unix seconds", error="bad_timestamp"
            )
        if not signature:
            raise ApiError(401, "X-Slack-Signature: missing", error="invalid_signature")
        skew = abs(self._clock() - int(stamp))
        if skew > self._tolerance:
            msg = f"X-Slack-Request-Timestamp is {int(skew)} s from now (at most {self._tolerance})"
            raise ApiError(401, msg, error="stale_request")
        if not self._verifier.is_valid(body, stamp, signature):
            raise ApiError(
                401, "X-Slack-Signature does not match the body", error="invalid_signature"
            )
        await self._first_time(signature)

    async def _first_time(self, signature: str) -> None:
        key = "xynergy:slack:sig:" + hashlib.sha256(signature.encode()).hexdigest()
        try:
            fresh = await self._redis.set(key, "1", nx=True, ex=2 * self._tolerance)
        except (RedisError, OSError) as exc:
            raise ApiError(
                503, "replay check unavailable; retry", headers={"Retry-After": "1"}
            ) from exc
        if not fresh:
            raise ApiError(
                401, "this request was already received (replay)", error="replayed_request"
            )
