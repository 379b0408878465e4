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

A Rollout's new revision (its own Deployment on Kubernetes) reads the same env as its target,
plus its `spec.template.env` overrides: the Rollouts of the namespace whose target reads the
object, or whose overrides do, are converged the same way (when the operator runs the Rollout
controller), so a rotated Secret reaches the new revision's config hash at once too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError

from apis.v1alpha1.rollout import Rollout
from controllers.core.context import OperatorContext
from controllers.core.controller import Kind
from controllers.core.errors import ProviderError
from controllers.providers.kubernetes import KubernetesProvider
from controllers.xynergyservice.reconciler import KIND
from controllers.xynergyservice.resources.references import SOURCE_LABEL, WATCHED_KINDS

__all__ = ["SourceWatch", "referencing", "rollouts_reading"]

log = logging.getLogger(__name__)

_FIELDS = {"Secret": "secretKeyRef", "ConfigMap": "configMapKeyRef"}
ROLLOUT = Kind.of(Rollout)


def _reads(env: Any, kind: str, name: str) -> bool:
    field = _FIELDS[kind]
    for var in env or []:
        ref = var.get(field) if isinstance(var, dict) else None
        if isinstance(ref, dict) and ref.get("name") == name:
            return True
    return False


def referencing(services: list[Mapping[str, Any]], kind: str, name: str) -> list[Mapping[str, Any]]:
    """The services whose `spec.env` reads the `kind` object called `name` (pure)."""
    return [svc for svc in services if _reads((svc.get("spec") or {}).get("env"), kind, name)]


def rollouts_reading(
    rollouts: list[Mapping[str, Any]], targets: set[str], kind: str, name: str
) -> list[Mapping[str, Any]]:
    """The Rollouts whose new revision reads the `kind` object called `name` (pure): their
    target is one of `targets` (the services reading it), or their `spec.template.env` does."""
    out = []
    for ro in rollouts:
        spec = ro.get("spec") or {}
        target = (spec.get("targetRef") or {}).get("name")
        if target in targets or _reads((spec.get("template") or {}).get("env"), kind, name):
            out.append(ro)
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
        async def changed(event: str, body: dict[str, Any]) -> None:
            await self.changed(kind, event, body)

        await self.provider.watch_forever(
            "v1",
            kind,
            labels={SOURCE_LABEL: "true"},
            namespace=self.ctx.settings.namespace,
            changed=changed,
            what=f"{kind}s",
            missed="their changes roll at resync",
        )

    async def changed(self, kind: str, event: str, body: Mapping[str, Any]) -> None:
        """Converge every XynergyService in the object's namespace that reads it, and every
        Rollout whose new revision does."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), str(meta.get("name"))
        rollouts = self.ctx.controllers.get(ROLLOUT)
        try:
            services = await self._list(KIND, namespace)
            found = await self._list(ROLLOUT, namespace) if rollouts is not None else []
        except (ApiError, ProviderError) as exc:
            log.warning("%s %s/%s %s: listing readers failed: %s",
                        kind, namespace, name, event.lower(), exc)  # fmt: skip
            return
        readers = referencing(services, kind, name)
        targets = {str(svc["metadata"]["name"]) for svc in readers}
        triggers = [(KIND, svc) for svc in readers]
        triggers += [(ROLLOUT, ro) for ro in rollouts_reading(found, targets, kind, name)]
        for which, obj in triggers:
            log.info("%s %s/%s %s: converging %s %s", kind, namespace, name, event.lower(),
                     which.kind, obj["metadata"]["name"])  # fmt: skip
        # Together, but before the next event: each object sees the changes in their order.
        await asyncio.gather(
            *(self.ctx.controllers[which].trigger(which.key(obj)) for which, obj in triggers)
        )

    async def _list(self, which: Kind, namespace: str | None) -> list[Mapping[str, Any]]:
        async with self.ctx.api_limit:
            items: Any = self.ctx.client.list(which.resource, namespace=namespace)
            return [obj.to_dict() async for obj in items]
