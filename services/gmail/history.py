"""``email-updates`` events from Gmail history, polled per connection (``users.history.list``).

Each poll of a connection runs under a Redis lock (one replica at a time) from the history id
kept in Redis (``xynergy:gmail:history:<connection>``). The first poll only records the
mailbox's current history id (no backlog is replayed). Every change (a message added or
deleted, labels added or removed) is published once to the tenant's topic: a change's key
(history record, kind, message) is set in Redis before it is published, and the history id
moves forward after each page, so a crash or a second replica never publishes a change twice.
When Gmail no longer has the history (404), the connection starts again from now and
subscribers get one ``history_reset`` event (they re-read).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from apis.v1alpha1.oauthconnection import OAuthProvider
from services.common.connections import TokenSource, usable_connections
from services.common.errors import ApiError
from services.common.events import publish_event
from services.common.oauth_tokens import NotConnectedError, OAuthTokens, TokenSecretNotOwnedError
from services.gmail.gmailapi import GmailApi

__all__ = ["ConnectionLister", "HistoryPoller", "KubeConnections", "changes"]

log = logging.getLogger("xynergy.gmail.history")

_KINDS = {
    "messagesAdded": "messageAdded",
    "messagesDeleted": "messageDeleted",
    "labelsAdded": "labelsAdded",
    "labelsRemoved": "labelsRemoved",
}
_SEEN_SECONDS = 8 * 86_400  # Gmail keeps history about a week
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


class ConnectionLister(Protocol):
    async def tenants(self) -> list[str]:
        """Tenants with a usable gmail connection."""
        ...


class KubeConnections:
    def __init__(self, client: Any, *, namespace: str | None = None) -> None:
        self._client = client
        self._namespace = namespace

    async def tenants(self) -> list[str]:
        conns = await usable_connections(
            self._client, OAuthProvider.GMAIL, namespace=self._namespace
        )
        return sorted({c.spec.tenant for c in conns})


def changes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The changes of one history record, as event payloads."""
    out = []
    for kind, change in _KINDS.items():
        for item in record.get(kind) or []:
            msg = item.get("message") or {}
            payload = {
                "change": change,
                "historyId": str(record.get("id")),
                "messageId": msg.get("id"),
                "threadId": msg.get("threadId"),
                "labelIds": msg.get("labelIds", []),
            }
            if "labelIds" in item:
                payload["changedLabelIds"] = item["labelIds"]
            out.append(payload)
    return out


def _history_page(start: str, page: str | None) -> Callable[[Any], Any]:
    def request(users: Any) -> Any:
        return users.history().list(
            userId="me", startHistoryId=start, pageToken=page, maxResults=500
        )

    return request


class HistoryPoller:
    def __init__(
        self,
        redis: Any,
        tokens: TokenSource,
        connections: ConnectionLister,
        *,
        api: Callable[[OAuthTokens], GmailApi],
        topic: str,
        lock_seconds: int,
    ) -> None:
        self._redis = redis
        self._tokens = tokens
        self._connections = connections
        self._api = api
        self._topic = topic
        self._lock_seconds = lock_seconds
        self._release = redis.register_script(_RELEASE)

    async def poll_all(self) -> int:
        """Poll every connected tenant once; the number of events published."""
        published = 0
        for tenant in await self._connections.tenants():
            try:
                published += await self.poll(tenant)
            except (
                NotConnectedError,
                TokenSecretNotOwnedError,
                ApiError,
                RedisError,
                OSError,
            ) as exc:
                log.warning(
                    "history poll failed",
                    extra={"fields": {"tenant": tenant, "error": type(exc).__name__}},
                )
        return published

    async def poll(self, tenant: str) -> int:
        tokens = await self._tokens.tokens(tenant, OAuthProvider.GMAIL.value)
        key = f"xynergy:gmail:history:{tokens.connection}"
        holder = uuid.uuid4().hex
        if not await self._redis.set(key + ":lock", holder, nx=True, ex=self._lock_seconds):
            return 0  # another replica is polling this connection
        try:
            return await self._poll(tenant, key, self._api(tokens))
        finally:
            await self._release(keys=[key + ":lock"], args=[holder])

    async def _poll(self, tenant: str, key: str, gmail: GmailApi) -> int:
        start = await self._redis.get(key)
        if start is None:
            await self._restart(key, gmail)
            return 0
        published, page = 0, None
        while True:
            try:
                found = await gmail.run(_history_page(start.decode(), page))
            except ApiError as exc:
                if exc.status != 404:
                    raise
                await self._restart(key, gmail)
                await self._publish(
                    tenant, {"change": "history_reset", "connection": gmail.connection}
                )
                return published + 1
            for record in found.get("history", []):
                for payload in changes(record):
                    published += await self._once(tenant, key, payload)
                await self._redis.set(key, str(record["id"]))
            page = found.get("nextPageToken")
            if not page:
                await self._redis.set(key, str(found["historyId"]))
                return published

    async def _restart(self, key: str, gmail: GmailApi) -> None:
        profile = await gmail.run(lambda u: u.getProfile(userId="me"))
        await self._redis.set(key, str(profile["historyId"]))

    async def _once(self, tenant: str, key: str, payload: dict[str, Any]) -> int:
        seen = f"{key}:seen:{payload['historyId']}:{payload['change']}:{payload['messageId']}"
        if not await self._redis.set(seen, "1", nx=True, ex=_SEEN_SECONDS):
            return 0
        await self._publish(tenant, payload)
        return 1

    async def _publish(self, tenant: str, payload: dict[str, Any]) -> None:
        await publish_event(self._redis, tenant_id=tenant, topic=self._topic, payload=payload)

    async def run(self, interval: float) -> None:
        """Poll every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.poll_all()
            except Exception as exc:  # listing connections failed: try again next time
                log.warning(
                    "history poll round failed", extra={"fields": {"error": type(exc).__name__}}
                )
            await asyncio.sleep(interval)
