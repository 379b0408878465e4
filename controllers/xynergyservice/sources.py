"""Rotation: a change to a Secret or ConfigMap a XynergyService reads its env from converges
that service at once, so the new config hash reaches the Pod template and the Deployment rolls.

The operator labels each object a service reads (`xynergy.io/env-source`, a merge patch of that
label only) and watches only labelled Secrets and ConfigMaps: the apiserver filters, so the
cluster's other Secrets never reach the operator. kopf keeps one watch per resource with one
label selector for all handlers (the OAuthConnection controller's selects its token Secrets),
so this watch is the operator's own (lightkube), started with the operator and stopped with it.
On an event the namespace's XynergyServices are listed and each that references the object is
converged through the core's one path (serialized per object, paused under peering); the
converge compares digests, so an unchanged object causes no write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError

from controllers.core.context import OperatorContext
from controllers.core.errors import ProviderError
from controllers.providers.kubernetes import KubernetesProvider
from controllers.xynergyservice.reconciler import KIND
from controllers.xynergyservice.resources.references import SOURCE_LABEL, WATCHED_KINDS

__all__ = ["SourceWatch", "referencing"]

log = logging.getLogger(__name__)

_FIELDS = {"Secret": "secretKeyRef", "ConfigMap": "configMapKeyRef"}
_RESTART_SECONDS = 5.0


def referencing(services: list[Mapping[str, Any]], kind: str, name: str) -> list[Mapping[str, Any]]:
    """The services whose `spec.env` reads the `kind` object called `name` (pure)."""
    field = _FIELDS[kind]
    out = []
    for svc in services:
        for var in (svc.get("spec") or {}).get("env") or []:
            ref = var.get(field) if isinstance(var, dict) else None
            if isinstance(ref, dict) and ref.get("name") == name:
                out.append(svc)
                break
    return out


class SourceWatch:
    """One watch per kind (Secret, ConfigMap) on the labelled objects, for the operator's
    lifetime; a watch the operator may not open (403, RBAC) is given up with a warning (the
    resync check still rolls the change, later)."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.provider = KubernetesProvider(ctx.client, limit=ctx.api_limit)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run(kind)) for kind in WATCHED_KINDS]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _run(self, kind: str) -> None:
        while True:
            try:
                async for event, body in self.provider.watch(
                    "v1", kind, labels={SOURCE_LABEL: "true"}, namespace=self.ctx.settings.namespace
                ):
                    await self.changed(kind, event, body)
            except ApiError as exc:
                if exc.status.code == 403:
                    log.warning("not watching %ss (%s): their changes roll at resync", kind, exc)
                    return
                log.info("%s watch failed (%s); restarting", kind, exc)
            except Exception as exc:  # a broken connection: list and watch again
                log.info("%s watch failed (%s: %s); restarting", kind, type(exc).__name__, exc)
            await asyncio.sleep(_RESTART_SECONDS)

    async def changed(self, kind: str, event: str, body: Mapping[str, Any]) -> None:
        """Converge every XynergyService in the object's namespace that reads it."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), str(meta.get("name"))
        try:
            services = await self._services(namespace)
        except (ApiError, ProviderError) as exc:
            log.warning("%s %s/%s %s: listing XynergyServices failed: %s",
                        kind, namespace, name, event.lower(), exc)  # fmt: skip
            return
        controller = self.ctx.controllers[KIND]
        readers = referencing(services, kind, name)
        for svc in readers:
            log.info("%s %s/%s %s: converging XynergyService %s",
                     kind, namespace, name, event.lower(), svc["metadata"]["name"])  # fmt: skip
        # Together, but before the next event: each service sees the changes in their order.
        await asyncio.gather(*(controller.trigger(KIND.key(svc)) for svc in readers))

    async def _services(self, namespace: str | None) -> list[Mapping[str, Any]]:
        async with self.ctx.api_limit:
            items: Any = self.ctx.client.list(KIND.resource, namespace=namespace)
            return [obj.to_dict() async for obj in items]
