"""Where a XynergyService runs: one `Backend` per `spec.backend`, each the kind's glue between
its pure builders (resources/) and a provider that knows only its cloud.

`KubernetesBackend` applies the Deployment and the Service the builders make, restores a
missing child at once (reporting it: Ready is False while a child was missing), and looks at
the Pods when a rollout is slow, so a Pod the scheduler cannot place, or a container the
kubelet cannot create from its spec, cannot pull or that keeps exiting, shows in the conditions.
`CloudRunBackend` hands the Cloud Run provider the plan of resources/cloudrun.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from apis.conditions import READY, get_condition
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.children import ChildCache
from controllers.core.controller import ChildEvent
from controllers.core.errors import StalledError, TransientError
from controllers.providers.kubernetes import KubernetesProvider
from controllers.xynergyservice.observed import (
    CONTAINER_CONFIG_ERROR,
    CONTAINER_FAILURES,
    BackendStatus,
    from_deployment,
    missing_children,
    rollout_pods,
    with_scheduling,
)
from controllers.xynergyservice.resources.kubernetes import (
    DEFAULT_PROGRESS_DEADLINE_SECONDS,
    build_deployment,
    build_service,
    revision_of,
)
from controllers.xynergyservice.resources.naming import (
    REVISION_ANNOTATION,
    TEMPLATE_ANNOTATION,
    name_of,
    selector,
)
from controllers.xynergyservice.resources.references import (
    CONFIG_SOURCES_ANNOTATION,
    SOURCE_LABEL,
    WATCHED_KINDS,
    Reference,
    changed_sources,
    digest,
    parse_sources,
    references,
    sources_of,
)

if TYPE_CHECKING:
    from controllers.providers.cloudrun import CloudRunProvider
    from controllers.providers.secretmanager import SecretManagerProvider

__all__ = ["Backend", "CloudRunBackend", "KubernetesBackend"]

_CHILDREN = (("apps/v1", "Deployment"), ("v1", "Service"))
# Reasons under which the Pods are read on every converge (the rollout is known to be stuck).
_SCHEDULING_REASONS = frozenset(
    {"Unschedulable", "ProgressDeadlineExceeded", CONTAINER_CONFIG_ERROR, *CONTAINER_FAILURES}
)


class Backend(Protocol):
    """One runtime a XynergyService can be deployed to."""

    async def apply(self, svc: XynergyService, *, child: ChildEvent | None = None) -> BackendStatus:
        """Make the backend match the spec (writing only what differs) and report its state."""
        ...

    async def observe(
        self, svc: XynergyService, *, child: ChildEvent | None = None
    ) -> BackendStatus:
        """Report the backend's state without changing anything."""
        ...

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        """Delete (or, with orphan, release) the backend service; True once it is gone."""
        ...


class KubernetesBackend:
    """A Deployment + Service per XynergyService, in its namespace."""

    def __init__(
        self,
        provider: KubernetesProvider,
        *,
        progress_deadline_seconds: int = DEFAULT_PROGRESS_DEADLINE_SECONDS,
        children: ChildCache | None = None,
    ) -> None:
        self.provider = provider
        self.progress_deadline_seconds = progress_deadline_seconds
        self.children = children

    async def read_sources(self, svc: XynergyService) -> dict[str, str]:
        """Digests of the Secrets/ConfigMaps the env reads (by `Kind/name`), read now, each
        labelled so the operator's watch reports its changes; StalledError naming the first
        required Secret/ConfigMap (or key) that is missing."""
        ns = svc.metadata.namespace
        refs = references(svc)
        sources = sources_of(refs)
        found = await asyncio.gather(
            *(self.provider.get("v1", src.kind, src.name, ns) for src in sources)
        )
        objects = {src.id: obj for src, obj in zip(sources, found, strict=True)}
        _check_references(refs, objects, namespace=ns)
        salt = str(svc.metadata.uid or "")
        await asyncio.gather(
            *(
                self.provider.label("v1", src.kind, obj, {SOURCE_LABEL: "true"})
                for src, obj in zip(sources, found, strict=True)
                if obj is not None and src.kind in WATCHED_KINDS
            )
        )
        return {src.id: digest(src, objects[src.id], salt=salt) for src in sources}

    async def _live(
        self, svc: XynergyService, child: ChildEvent | None
    ) -> dict[str, dict[str, Any] | None]:
        """The live children by kind. A converge prompted by a child event reads them from the
        child cache (the newest body any watch event or apply answer gave, never an older
        one: acting on the triggering event's own body, which may be older than what another
        trigger already read, made Ready flap) and the apiserver only for a child it does not
        hold; a resync check or the object's own event reads the apiserver."""
        name, ns = name_of(svc), svc.metadata.namespace
        held = {k: self._held(k, name, ns, child) for _, k in _CHILDREN}
        found = await asyncio.gather(
            *(self.provider.get(v, k, name, ns) for v, k in _CHILDREN if held[k] is None)
        )
        read = iter(found)
        live = {k: held[k] if held[k] is not None else next(read) for _, k in _CHILDREN}
        self._hold({k: body for k, body in live.items() if held[k] is None})
        return live

    def _held(
        self, kind: str, name: str, namespace: str | None, child: ChildEvent | None
    ) -> dict[str, Any] | None:
        if child is None or self.children is None:
            return None
        return self.children.get(kind, namespace, name)

    def _hold(self, bodies: dict[str, dict[str, Any] | None]) -> None:
        """Keep what was read or applied (newer than or as new as what the cache holds)."""
        if self.children is not None:
            for kind, body in bodies.items():
                if body is not None:
                    self.children.put(kind, body)

    async def apply(self, svc: XynergyService, *, child: ChildEvent | None = None) -> BackendStatus:
        digests = await self.read_sources(svc)
        # A service we never deployed has no children to compare with: apply straight away
        # (server-side apply is idempotent) and read the result from the response.
        fresh = svc.status is None or not svc.status.latest_created_revision
        live = {k: None for _, k in _CHILDREN} if fresh else await self._live(svc, child)
        deployment = build_deployment(
            svc,
            progress_deadline_seconds=self.progress_deadline_seconds,
            digests=digests,
            # the same Pods (e.g. only scaled): the revision serving keeps its name
            revision=revision_of(svc, live["Deployment"]),
        )
        # Both at once: the Deployment (which starts the Pods) never waits behind the Service.
        dep, service = await asyncio.gather(
            self.provider.apply(deployment, live["Deployment"]),
            self.provider.apply(build_service(svc), live["Service"]),
        )
        self._hold({"Deployment": dep.body, "Service": service.body})
        observed = from_deployment(svc, dep.body)
        if not dep.wrote:  # a rollout this converge started is not slow: no Pods to read yet
            observed = await self._scheduling(svc, observed, dep.body, child)
        missing = [] if fresh else [k for k, obj in live.items() if obj is None]
        observed = missing_children(observed, _named(svc, missing), restored=True)
        writes = int(dep.wrote) + int(service.wrote)
        changed = _rotated(live["Deployment"], digests) if dep.wrote else ()
        return replace(
            observed,
            writes=writes,
            created=fresh and writes > 0,
            changed_sources=changed,
            rescaled=_rescaled_only(live["Deployment"], dep.body) and not service.wrote,
        )

    async def observe(
        self, svc: XynergyService, *, child: ChildEvent | None = None
    ) -> BackendStatus:
        live = await self._live(svc, child)
        dep = live["Deployment"]
        observed = await self._scheduling(svc, from_deployment(svc, dep), dep, child)
        missing = [k for k, obj in live.items() if obj is None and k != "Deployment"]
        return missing_children(observed, _named(svc, missing), restored=False)

    async def _scheduling(
        self,
        svc: XynergyService,
        observed: BackendStatus,
        dep: dict[str, Any] | None,
        child: ChildEvent | None,
    ) -> BackendStatus:
        """Read the Pods when the rollout is slow (a check not prompted by a child event) or
        already known to be stuck, and say why the rollout's Pods do not schedule or start. A
        revision that serves while instances are missing (Ready, reason Scaling) is looked at
        likewise, and a Ready service with all its instances never."""
        if not observed.exists or (observed.ready and observed.reason != "Scaling"):
            return observed
        ready = get_condition(svc.status.conditions, READY) if svc.status else None
        if observed.ready:  # serving; known when its message already names a failing Pod
            stuck = ready is not None and ready.message.startswith(f"{observed.message}; pod ")
        else:
            stuck = ready is not None and ready.reason in _SCHEDULING_REASONS
        if child is not None and not stuck:
            return observed
        pods = await self.provider.list("v1", "Pod", svc.metadata.namespace, labels=selector(svc))
        return with_scheduling(observed, rollout_pods(dep, pods))

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        for api_version, kind in _CHILDREN:
            await self.provider.remove_owned(
                api_version,
                kind,
                name_of(svc),
                svc.metadata.namespace,
                owner_uid=str(svc.metadata.uid),
                orphan=orphan,
            )
        return True


def _check_references(
    refs: list[Reference], objects: dict[str, dict[str, Any] | None], *, namespace: str | None
) -> None:
    """StalledError for the first required reference whose object or key is missing."""
    for ref in refs:
        if ref.optional:
            continue
        obj = objects[f"{ref.kind}/{ref.name}"]
        where = f"(spec.env[{ref.index}].{ref.field}, variable {ref.variable})"
        if obj is None:
            raise StalledError(
                f"{ref.kind} {ref.name!r} not found in namespace {namespace} {where}",
                reason=f"{ref.kind}NotFound",
            )
        keys = set((obj.get("data") or {}).keys()) | set((obj.get("binaryData") or {}).keys())
        if ref.key not in keys:
            raise StalledError(
                f"{ref.kind} {ref.name!r} has no key {ref.key!r} {where}",
                reason=f"{ref.kind}KeyNotFound",
            )


def _rescaled_only(live: dict[str, Any] | None, applied: dict[str, Any]) -> bool:
    """The write changed the instance count and nothing else the user set (same revision,
    same config hash, same Deployment settings)."""
    if live is None:
        return False
    before, after = live.get("spec") or {}, applied.get("spec") or {}
    if before.get("replicas") == after.get("replicas"):
        return False
    keys = (REVISION_ANNOTATION, TEMPLATE_ANNOTATION, CONFIG_SOURCES_ANNOTATION)
    notes = [((o.get("metadata") or {}).get("annotations") or {}) for o in (live, applied)]
    same_notes = all(notes[0].get(k) == notes[1].get(k) for k in keys)
    rest = ("template", "strategy", "progressDeadlineSeconds", "selector")
    return same_notes and all(before.get(k) == after.get(k) for k in rest)


def _rotated(live: dict[str, Any] | None, digests: dict[str, str]) -> tuple[str, ...]:
    """The sources whose data changed since the live Deployment was applied (names only)."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    before = parse_sources(annotations.get(CONFIG_SOURCES_ANNOTATION))
    return tuple(sid.replace("/", " ", 1) for sid in changed_sources(before, digests))


def _from_cloud_run(service: Any, *, writes: int = 0) -> BackendStatus:
    """What the Cloud Run service says; a rollout an internal error interrupted is transient
    (the next converge deploys it again, `CloudRunProvider.apply`), not Stalled."""
    from controllers.providers.cloudrun import interrupted
    from controllers.xynergyservice.observed_cloudrun import from_service

    if interrupted(service):
        message = service.terminal_condition.message or "internal error"
        raise TransientError(
            f"Cloud Run service {service.name.rpartition('/')[2]}: rollout interrupted: "
            f"{message}; deploying it again",
            reason="RolloutInterrupted",
        )
    return from_service(service, writes=writes)


def _named(svc: XynergyService, kinds: list[str]) -> list[str]:
    return [f"{kind} {name_of(svc)}" for kind in kinds]


def _absent(message: str, writes: int = 0) -> BackendStatus:
    return BackendStatus(
        exists=False, ready=False, reason="NotFound", message=message, writes=writes
    )


class CloudRunBackend:
    """The Cloud Run service of a XynergyService (resources/cloudrun.py builds it); env from
    Secret Manager is pinned to the versions `secrets` resolves (`latest` -> a number), so a
    new version makes a new revision."""

    def __init__(
        self, provider: CloudRunProvider, secrets: SecretManagerProvider | None = None
    ) -> None:
        self.provider = provider
        self.secrets = secrets

    async def _versions(self, svc: XynergyService) -> dict[tuple[str, str], str]:
        """(secret, version) -> the concrete version, for each reference of the env."""
        from controllers.xynergyservice.resources import cloudrun

        refs = cloudrun.secret_references(svc)
        if not refs:
            return {}
        if self.secrets is None:
            raise StalledError(
                "spec.env reads Secret Manager secrets but this operator has no Secret "
                "Manager client (google-cloud-secret-manager)",
                reason="BackendUnavailable",
            )
        project = svc.spec.cloud_run.project if svc.spec.cloud_run else ""
        found = await asyncio.gather(
            *(self.secrets.resolve(project, secret, version) for secret, version in refs)
        )
        return dict(zip(refs, found, strict=True))

    async def apply(self, svc: XynergyService, *, child: ChildEvent | None = None) -> BackendStatus:
        from controllers.xynergyservice.resources import cloudrun

        path = cloudrun.service_path(svc)
        cloudrun.desired_service(svc, None)  # StalledError for what Cloud Run cannot express
        versions = await self._versions(svc)
        rotated: list[str] = []

        def plan(found: Any) -> Any:
            wanted = cloudrun.plan(svc, found, versions=versions)
            if wanted is not None and found is not None:
                rotated[:] = cloudrun.rotated_secrets(found, wanted[0])
            return wanted

        service, writes = await self.provider.apply(path, plan)
        if service is None:
            return _absent(f"Cloud Run service {path} disappeared while being deployed", writes)
        fresh = svc.status is None or not svc.status.latest_created_revision
        observed = _from_cloud_run(service, writes=writes)
        changed = tuple(rotated) if writes else ()
        return replace(observed, created=fresh and writes > 0, changed_sources=changed)

    async def observe(
        self, svc: XynergyService, *, child: ChildEvent | None = None
    ) -> BackendStatus:
        from controllers.xynergyservice.resources import cloudrun

        path = cloudrun.service_path(svc)
        existing = await self.provider.get(path)
        if existing is None:
            return _absent(f"Cloud Run service {path} does not exist")
        cloudrun.check_owner(existing, svc)
        return _from_cloud_run(existing)

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        from controllers.xynergyservice.resources import cloudrun

        return await self.provider.delete(
            cloudrun.service_path(svc),
            owned=lambda found: cloudrun.owned(found, svc),
            release=cloudrun.released if orphan else None,
        )
