"""Kubernetes backend: a Deployment and a Service per XynergyService, written with server-side
apply under our field manager, only when what is live differs from what we manage.

Status comes from what the cluster reports: Ready only when the Deployment has rolled out the
current generation and is Available. Secrets and ConfigMaps the env refers to are checked first,
so a missing one stalls with a message that names it (the values are never read into logs).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2  # lightkube's transport: timeouts and connection errors are its exceptions
from lightkube import ApiError, AsyncClient, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Secret, Service
from lightkube.types import CascadeType, PatchType

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.metrics import backend_call
from controllers.providers.base import BackendStatus, StalledError, Traffic, TransientError
from controllers.xynergyservice.resources import (
    REVISION_ANNOTATION,
    build_deployment,
    build_service,
    is_subset,
    revision_name,
    selector_string,
    service_url,
)

__all__ = ["FIELD_MANAGER", "KubernetesProvider", "status_from_deployment"]

FIELD_MANAGER = "xynergy-operator"


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    conds = obj.get("status", {}).get("conditions") or []
    return {c["type"]: c for c in conds}


def status_from_deployment(svc: XynergyService, dep: dict[str, Any] | None) -> BackendStatus:
    """What the Deployment says about the service (the logic of `kubectl rollout status`)."""
    url = service_url(svc)
    selector = selector_string(svc)
    if dep is None:
        return BackendStatus(
            exists=False,
            ready=False,
            reason="Creating",
            message="the Deployment does not exist yet",
            url=url,
            selector=selector,
        )
    meta = dep.get("metadata", {})
    spec = dep.get("spec", {})
    st = dep.get("status", {})
    desired = int(spec.get("replicas", 1))
    replicas = int(st.get("replicas", 0))
    updated = int(st.get("updatedReplicas", 0))
    ready_n = int(st.get("readyReplicas", 0))
    available = int(st.get("availableReplicas", 0))
    revision = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
    conds = _conditions(dep)
    common: dict[str, Any] = {
        "exists": True,
        "url": url,
        "selector": selector,
        "replicas": replicas,
        "ready_replicas": ready_n,
        "latest_created_revision": revision,
    }

    def waiting(reason: str, message: str) -> BackendStatus:
        return BackendStatus(ready=False, reason=reason, message=message, **common)

    progressing = conds.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return waiting("ProgressDeadlineExceeded", progressing.get("message", ""))
    if revision != revision_name(svc):
        return waiting("Updating", f"applying revision {revision_name(svc)}")
    # One stable message for the whole rollout (counts are in replicas/readyReplicas): every
    # distinct message would be another status write per object.
    rolling = f"rolling out revision {revision}: waiting for updated instances to be available"
    if (
        int(st.get("observedGeneration", 0)) < int(meta.get("generation", 0))
        or updated < desired
        or replicas > updated
        or available < updated
    ):
        return waiting("RollingOut", rolling)
    if conds.get("Available", {}).get("status") != "True":
        return waiting("Unavailable", conds.get("Available", {}).get("message", "not available"))
    return BackendStatus(
        ready=True,
        reason="Ready",
        message=f"{ready_n}/{desired} instances ready",
        latest_ready_revision=revision,
        traffic=(Traffic(revision=revision, percent=100),) if revision else (),
        **common,
    )


def _api_error(exc: ApiError, *, what: str) -> StalledError | TransientError:
    code = exc.status.code or 0
    message = f"{what}: {exc.status.message or exc}"
    if code in (400, 403, 404, 422):
        return StalledError(message, reason="ApiRejected" if code != 403 else "Forbidden")
    return TransientError(message, reason="ApiUnavailable")


# Service applies in flight at once (see KubernetesProvider).
SERVICE_APPLY_CONCURRENCY = 4


class KubernetesProvider:
    """Deploys a XynergyService as a Deployment + Service in its own namespace.

    Every API call goes through `limit` (shared with the handlers), so a burst of a thousand
    objects queues here instead of exhausting the HTTP connection pool. Service applies also
    queue on a small limit of their own first: the apiserver allocates cluster IPs one at a
    time, so more of them in flight only wait longer there, holding slots that Deployment
    applies (which start the Pods) and status writes of other objects could use.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        field_manager: str = FIELD_MANAGER,
        limit: asyncio.Semaphore | None = None,
        service_limit: int = SERVICE_APPLY_CONCURRENCY,
    ) -> None:
        self._client = client
        self._field_manager = field_manager
        self._limit = limit or asyncio.Semaphore(32)
        self._service_limit = asyncio.Semaphore(service_limit)

    @contextlib.asynccontextmanager
    async def _call(self, method: str, *, what: str) -> AsyncIterator[None]:
        """Bounded, measured API call; transport failures become TransientError."""
        async with self._limit:
            with backend_call("kubernetes", method):
                try:
                    yield
                except httpx2.TransportError as exc:
                    raise TransientError(
                        f"{what}: {type(exc).__name__} talking to the apiserver",
                        reason="ApiUnreachable",
                    ) from exc

    async def _get(
        self, kind: type[Any], name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        what = f"reading {kind.__name__} {name}"
        async with self._call(f"get_{kind.__name__.lower()}", what=what):
            try:
                obj = await self._client.get(kind, name, namespace=namespace)
            except ApiError as exc:
                if exc.status.code == 404:
                    return None
                raise _api_error(exc, what=what) from exc
        data: dict[str, Any] = obj.to_dict()
        return data

    async def check_references(self, svc: XynergyService) -> None:
        """StalledError naming the first required Secret/ConfigMap (or key) that is missing."""
        ns = svc.metadata.namespace
        for i, var in enumerate(svc.spec.env or []):
            ref = var.secret_key_ref or var.config_map_key_ref
            if ref is None or ref.optional:
                continue
            kind: type[Any] = Secret if var.secret_key_ref is not None else ConfigMap
            label = kind.__name__
            field = "secretKeyRef" if var.secret_key_ref is not None else "configMapKeyRef"
            obj = await self._get(kind, ref.name, ns)
            where = f"(spec.env[{i}].{field}, variable {var.name})"
            if obj is None:
                raise StalledError(
                    f"{label} {ref.name!r} not found in namespace {ns} {where}",
                    reason=f"{label}NotFound",
                )
            keys = set((obj.get("data") or {}).keys()) | set((obj.get("binaryData") or {}).keys())
            if ref.key not in keys:
                raise StalledError(
                    f"{label} {ref.name!r} has no key {ref.key!r} {where}",
                    reason=f"{label}KeyNotFound",
                )

    async def _apply(
        self, desired: dict[str, Any], live: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any] | None]:
        """Apply `desired` unless `live` already has it; returns (writes, object after)."""
        if live is not None and is_subset(desired, live):
            return 0, live
        kind = desired["kind"]
        name = desired["metadata"]["name"]
        own_queue = self._service_limit if kind == "Service" else contextlib.nullcontext()
        async with own_queue, self._call(f"apply_{kind.lower()}", what=f"applying {kind} {name}"):
            try:
                applied = await self._client.apply(
                    codecs.from_dict(desired), field_manager=self._field_manager, force=True
                )
            except ApiError as exc:
                raise _api_error(exc, what=f"applying {kind} {name}") from exc
        after: dict[str, Any] = applied.to_dict()  # type: ignore[no-untyped-call]
        return 1, after

    async def apply(self, svc: XynergyService) -> BackendStatus:
        await self.check_references(svc)
        name, ns = svc.metadata.name or "", svc.metadata.namespace
        # A service we never deployed has no children to compare with: apply straight away
        # (server-side apply is idempotent) and read the result from the response.
        fresh = svc.status is None or not svc.status.latest_created_revision
        live_dep = None if fresh else await self._get(Deployment, name, ns)
        live_svc = None if fresh else await self._get(Service, name, ns)
        # Both at once: the Deployment (which starts the Pods) never waits behind the Service.
        dep_task = asyncio.ensure_future(self._apply(build_deployment(svc), live_dep))
        try:
            svc_writes, _ = await self._apply(build_service(svc), live_svc)
        except asyncio.CancelledError:
            dep_task.cancel()
            raise
        except Exception:
            await dep_task  # a Deployment error is reported first, as when they ran in order
            raise
        dep_writes, dep_after = await dep_task
        observed = status_from_deployment(svc, dep_after)
        return BackendStatus(**{**observed.__dict__, "writes": dep_writes + svc_writes})

    async def observe(self, svc: XynergyService) -> BackendStatus:
        dep = await self._get(Deployment, svc.metadata.name or "", svc.metadata.namespace)
        return status_from_deployment(svc, dep)

    def drifted(self, svc: XynergyService, dep: dict[str, Any]) -> bool:
        """True when the live Deployment no longer has every field we manage."""
        return not is_subset(build_deployment(svc), dep)

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        name, ns = svc.metadata.name or "", svc.metadata.namespace
        uid = svc.metadata.uid
        gone = True
        for kind in (Deployment, Service):
            live = await self._get(kind, name, ns)
            if live is None:
                continue
            owners = live.get("metadata", {}).get("ownerReferences") or []
            if orphan:
                keep = [o for o in owners if o.get("uid") != uid]
                if len(keep) != len(owners):
                    async with self._call(
                        f"release_{kind.__name__.lower()}", what=f"releasing {kind.__name__} {name}"
                    ):
                        await self._client.patch(
                            kind,
                            name,
                            {"metadata": {"ownerReferences": keep}},
                            namespace=ns,
                            patch_type=PatchType.MERGE,
                        )
                continue
            if not any(o.get("uid") == uid for o in owners):
                continue  # not ours: leave it
            async with self._call(
                f"delete_{kind.__name__.lower()}", what=f"deleting {kind.__name__} {name}"
            ):
                try:
                    await self._client.delete(
                        kind, name, namespace=ns, cascade=CascadeType.BACKGROUND
                    )
                except ApiError as exc:
                    if exc.status.code != 404:
                        raise _api_error(exc, what=f"deleting {kind.__name__} {name}") from exc

        return gone
