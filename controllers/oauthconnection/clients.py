"""A change to an OAuth client Secret (`spec.clientSecretRef`) converges, at once, the
OAuthConnections that use it: a connection stalled because the provider refused its client
(ClientRefused) tries again as soon as the user fixes the Secret, not at the next resync.

The SecretStore labels each client Secret it reads (`xynergy.io/oauth-client=true`, a merge
patch of that label only) and this watch selects only labelled Secrets on the apiserver, so the
cluster's other Secrets never reach the operator. It is the operator's own lightkube watch, not
a kopf handler: kopf keeps one watch per resource with one label selector, which selects the
connections' token Secrets (handlers.py); XynergyService's env sources are watched the same
way (controllers/xynergyservice/sources.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError

from apis.v1alpha1.oauthconnection import CLIENT_SECRET_LABEL, OAuthConnection
from controllers.core.context import OperatorContext
from controllers.core.controller import Kind
from controllers.core.errors import ProviderError
from controllers.providers.kubernetes import KubernetesProvider

__all__ = ["ClientWatch", "using"]

log = logging.getLogger(__name__)

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
    """One watch of the labelled client Secrets for the operator's lifetime; a watch the
    operator may not open (403) is given up with a warning (changes are then seen at resync)."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.provider = KubernetesProvider(ctx.client, limit=ctx.api_limit)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

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

    async def changed(self, event: str, body: Mapping[str, Any]) -> None:
        """Converge every OAuthConnection of the Secret's namespace that uses it."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), str(meta.get("name"))
        try:
            async with self.ctx.api_limit:
                items: Any = self.ctx.client.list(KIND.resource, namespace=namespace)
                found = [obj.to_dict() async for obj in items]
        except (ApiError, ProviderError) as exc:
            log.warning("Secret %s/%s %s: listing OAuthConnections failed: %s",
                        namespace, name, event.lower(), exc)  # fmt: skip
            return
        readers = using(found, name)
        for conn in readers:
            log.info("Secret %s/%s %s: converging OAuthConnection %s",
                     namespace, name, event.lower(), conn["metadata"]["name"])  # fmt: skip
        await asyncio.gather(*(self.ctx.controllers[KIND].trigger(KIND.key(c)) for c in readers))
