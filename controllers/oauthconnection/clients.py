"""A change to an OAuth client Secret (`spec.clientSecretRef`) converges, at once, the
OAuthConnections that use it: a connection stalled because the provider refused its client
(ClientRefused) tries again as soon as the user fixes the Secret, and one stalled because its
client Secret is missing (ClientSecretMissing) as soon as the Secret is created, not at the
next resync.

The SecretStore labels each client Secret it reads (`xynergy.io/oauth-client=true`, a merge
patch of that label only) and this watch selects only labelled Secrets on the apiserver, so the
cluster's other Secrets never reach the operator. A client Secret that does not exist yet
cannot carry the label, so the store reports it (`await_creation`) and a watch of that one
name (field selector `metadata.name`, in its namespace) waits for it: its first version
converges the connections that use it, whose converge labels it, and that watch ends. It is
the operator's own lightkube watch, not a kopf handler: kopf keeps one watch per resource with
one label selector, which selects the connections' token Secrets (handlers.py);
XynergyService's env sources are watched the same way (controllers/xynergyservice/sources.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError

from apis.v1alpha1.oauthconnection import CLIENT_SECRET_LABEL, OAuthConnection
from controllers.core.context import OperatorContext
from controllers.core.controller import Kind
from controllers.core.errors import ProviderError
from controllers.providers.kubernetes import KubernetesProvider

__all__ = ["ClientWatch", "client_watch", "using"]

log = logging.getLogger(__name__)

AWAIT_CREATION_SECONDS = 15 * 60.0
"""How long the watch of a missing client Secret's name lasts: a connection fixed to another
name, or deleted, does not keep it open until the operator stops (longer than the 10-minute
resync, whose converge starts a new one while the Secret is still missing)."""

KIND = Kind.of(OAuthConnection)


def using(connections: list[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The connections whose `spec.clientSecretRef` names Secret `name` (pure)."""
    out = []
    for conn in connections:
        ref = (conn.get("spec") or {}).get("clientSecretRef") or {}
        if isinstance(ref, dict) and ref.get("name") == name:
            out.append(conn)
    return out


class ClientWatch:
    """One watch of the labelled client Secrets for the operator's lifetime, and one per
    missing client Secret until it appears; a watch the operator may not open (403) is given
    up with a warning (changes are then seen at resync)."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.provider = KubernetesProvider(ctx.client, limit=ctx.api_limit)
        self.task: asyncio.Task[None] | None = None
        self.awaited: dict[tuple[str, str], asyncio.Task[None]] = {}
        """The watches for missing client Secrets, by (namespace, name)."""

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self.task, *self.awaited.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        await self.provider.watch_forever(
            "v1",
            "Secret",
            labels={CLIENT_SECRET_LABEL: "true"},
            namespace=self.ctx.settings.namespace,
            changed=self.changed,
            what="OAuth client Secrets",
            missed="seen at resync",
        )

    def await_creation(self, namespace: str, name: str) -> None:
        """Watch for client Secret `name` of `namespace`, which a connection found missing, to
        be created (once per name: a watch already waiting for it is kept)."""
        key = (namespace, name)
        if key in self.awaited:
            return
        task = asyncio.create_task(self._until_created(namespace, name))
        self.awaited[key] = task
        task.add_done_callback(lambda _: self.awaited.pop(key, None))

    async def _until_created(self, namespace: str, name: str) -> None:
        """The watch of one name; `listed`, so a Secret created between the converge that
        found it missing and this watch's listing is not missed."""

        async def created(event: str, body: dict[str, Any]) -> bool:
            if event == "DELETED":
                return False
            if not await self._converge_users(event, body):  # listed again after 5 s
                raise RuntimeError("listing OAuthConnections failed")
            return True

        # bounded: no connection may want it any more (fixed to another name, deleted); a
        # converge that still finds it missing (at the latest at its resync) watches again
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AWAIT_CREATION_SECONDS):
                await self.provider.watch_forever(
                    "v1",
                    "Secret",
                    labels={},
                    fields={"metadata.name": name},
                    listed=True,
                    namespace=namespace,
                    changed=created,
                    what=f"OAuth client Secret {namespace}/{name}",
                    missed="its creation is seen at resync",
                )

    async def changed(self, event: str, body: Mapping[str, Any]) -> None:
        """Converge every OAuthConnection of the Secret's namespace that uses it."""
        await self._converge_users(event, body)

    async def _converge_users(self, event: str, body: Mapping[str, Any]) -> bool:
        """`changed`; False when the connections could not be listed (logged)."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), str(meta.get("name"))
        try:
            async with self.ctx.api_limit:
                items: Any = self.ctx.client.list(KIND.resource, namespace=namespace)
                found = [obj.to_dict() async for obj in items]
        except (ApiError, ProviderError) as exc:
            log.warning("Secret %s/%s %s: listing OAuthConnections failed: %s",
                        namespace, name, event.lower(), exc)  # fmt: skip
            return False
        readers = using(found, name)
        for conn in readers:
            log.info("Secret %s/%s %s: converging OAuthConnection %s",
                     namespace, name, event.lower(), conn["metadata"]["name"])  # fmt: skip
        await asyncio.gather(*(self.ctx.controllers[KIND].trigger(KIND.key(c)) for c in readers))
        return True


def client_watch(ctx: OperatorContext) -> ClientWatch:
    """The operator's one ClientWatch (kept with its providers): started by the startup
    handler, told of missing client Secrets by the reconciler's store."""
    return ctx.provider("oauthconnection.clients", lambda: ClientWatch(ctx))
