"""The Rollout's Kubernetes backend: the new revision beside the target, traffic by weight.

The stable revision is the target's own Deployment and Service (its XynergyService controller
keeps them as they are until promotion patches the target). The new revision gets a
Deployment and a Service of its own, named after the revision and owned by the Rollout
(labelled `app.kubernetes.io/managed-by=xynergy`, the server-side selector the operator watches
children with, and `xynergy.io/rollout`; the XynergyService controller only follows children
its own kind owns, so it leaves them alone).

Traffic is split in one of two ways (`spec.trafficRouting`):
- `gateway`: the weights go into `status.traffic` (revision, in-cluster URL, weight, tag) and
  the Xynergy gateway applies them to the target's routes per request, without a restart; the
  new revision runs a share of the target's instances matching its weight.
- `replicas`: the new revision's Pods also carry the target's Pod selector, so the target's
  Service spreads over both; the weight is the replica ratio (approximate for small counts).

The new revision's Pod template carries the config hash of the Secrets/ConfigMaps its env
reads (read, labelled and digested by the XynergyService backend's own `read_sources`), as the
target's does: the same value for the same sources, and a rotation rolls its Pods.

Promotion: all traffic to the new revision while the target's Deployment rolls to the new
spec (blue-green: only once `scaleDownDelaySeconds` is over, so the old revision is kept for a
fast rollback), then the target serves again and the new revision's children are removed.
A rollback sends everything to the target's Service and scales the new revision down.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from apis.v1alpha1.rollout import RevisionTemplate, Rollout, TrafficRouting, TrafficTarget
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError
from controllers.providers.kubernetes import KubernetesProvider
from controllers.rollout.backends import (
    CANARY_TAG,
    PREVIEW_TAG,
    STABLE_TAG,
    CanaryState,
    Routed,
    Serving,
)
from controllers.rollout.resources import (
    ROLLOUT_LABEL,
    canary_deployment,
    canary_replicas,
    canary_service,
    check_label_name,
    kubernetes_revision_name,
    revision_url,
    settled_on,
)
from controllers.xynergyservice.backends import KubernetesBackend
from controllers.xynergyservice.observed import from_deployment
from controllers.xynergyservice.resources.naming import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    REVISION_ANNOTATION,
)
from controllers.xynergyservice.resources.references import (
    CONFIG_SOURCES_ANNOTATION,
    parse_sources,
)

__all__ = ["KubernetesRollout", "routing_for"]

log = logging.getLogger(__name__)
Split = tuple[tuple[str | None, int, str | None], ...]


def routing_for(rollout: Rollout, target: XynergyService) -> TrafficRouting:
    """spec.trafficRouting, with auto resolved: gateway when the target has routes."""
    chosen = rollout.spec.traffic_routing
    if chosen is not TrafficRouting.AUTO:
        return chosen
    return TrafficRouting.GATEWAY if target.spec.routes else TrafficRouting.REPLICAS


def _available(dep: dict[str, Any] | None) -> tuple[bool, str | None]:
    """(ready, failure) of the new revision's Deployment."""
    if dep is None:
        return False, None
    meta, st = dep.get("metadata") or {}, dep.get("status") or {}
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, str(cond.get("message") or "progress deadline exceeded")
    current = int(st.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
    want = int((dep.get("spec") or {}).get("replicas", 1))
    return current and int(st.get("availableReplicas", 0)) >= min(1, want), None


class KubernetesRollout:
    """One Rollout's new revision and traffic on Kubernetes (built per converge). The weight
    and the new revision are read from `rollout.status`, the converge's working status (the
    reconciler keeps them one object, also when a new revision restarts the rollout)."""

    defers_target_patch = True

    def __init__(
        self,
        provider: KubernetesProvider,
        rollout: Rollout,
        target: XynergyService,
        canary: XynergyService,
    ) -> None:
        self.provider = provider
        self.rollout = rollout
        self.canary = canary
        self.routing: TrafficRouting | None = routing_for(rollout, target)
        self.namespace = target.metadata.namespace
        self.rollout_name = f"{self.namespace}/{rollout.metadata.name}"
        self.rollout_label = rollout.metadata.name or ""

    def revision_name(self, canary: XynergyService) -> str:
        """`kubernetes_revision_name`; StalledError when the Rollout's name cannot label
        its children (`check_label_name`)."""
        check_label_name(self.rollout)
        return kubernetes_revision_name(canary)

    async def _deployment(self, name: str) -> dict[str, Any] | None:
        return await self.provider.get("apps/v1", "Deployment", name, self.namespace)

    async def serving(self, target: XynergyService) -> Serving:
        dep = await self._deployment(target.metadata.name or "")
        if dep is None:
            return Serving(None, ready=False)
        revision = ((dep.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
        return Serving(revision, ready=from_deployment(target, dep).ready)

    async def _apply(
        self,
        canary: XynergyService,
        name: str,
        replicas: int,
        *,
        serving: bool,
        live: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """The new revision's Deployment and Service as `canary` at `replicas`; `live` is its
        Deployment when the caller has just read it (read here otherwise)."""
        routing = self.routing or TrafficRouting.GATEWAY
        live = live or await self._deployment(name)
        digests = await self._digests(canary, live)
        desired = canary_deployment(
            self.rollout,
            canary,
            name=name,
            replicas=replicas,
            routing=routing,
            serving=serving,
            digests=digests,
        )
        dep = await self.provider.apply(desired, live)
        live = await self.provider.get("v1", "Service", name, self.namespace)
        svc = await self.provider.apply(canary_service(self.rollout, canary, name=name), live)
        return int(dep.wrote) + int(svc.wrote), dep.body

    async def _digests(self, canary: XynergyService, live: dict[str, Any] | None) -> dict[str, str]:
        """Digests of the Secrets/ConfigMaps the new revision's env reads (the XynergyService
        backend's own reading: the same hash as the target's Pods). One that cannot be read
        (a required Secret deleted) keeps the digests the live Deployment was applied with:
        its Pods do not roll for it, and traffic can still move (a rollback must)."""
        try:
            return await KubernetesBackend(self.provider).read_sources(canary)
        except StalledError as exc:
            log.info("rollout %s: %s; keeping the config hash it had", self.rollout_name, exc)
            annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
            return parse_sources(annotations.get(CONFIG_SOURCES_ANNOTATION))

    def _replicas(self, target: XynergyService, weight: int, *, preview: bool) -> int:
        routing = self.routing or TrafficRouting.GATEWAY
        total = target.spec.sizing().replicas
        return canary_replicas(total, weight, routing=routing, preview=preview)

    async def ensure_canary(
        self, target: XynergyService, canary: XynergyService, *, name: str, stable: str, tag: str
    ) -> CanaryState:
        weight = (self.rollout.status.canary_weight if self.rollout.status else 0) or 0
        replicas = self._replicas(target, weight, preview=tag == PREVIEW_TAG)
        writes, body = await self._apply(canary, name, replicas, serving=weight > 0)
        ready, failed = _available(body)
        url = revision_url(name, self.namespace)
        return CanaryState(ready=ready, failed=failed, url=url, writes=writes)

    async def _scale(self, name: str, replicas: int, *, serving: bool = True) -> int:
        """The new revision at `replicas` (the whole Deployment re-applied: no write when it
        already is; a server-side apply of replicas alone would drop our other fields)."""
        live = await self._deployment(name)
        if live is None:
            return 0
        writes, _ = await self._apply(self.canary, name, replicas, serving=serving, live=live)
        return writes

    def _traffic(
        self, target: XynergyService, canary: str | None, split: Split
    ) -> tuple[dict[str, str], tuple[TrafficTarget, ...]]:
        stable_url = revision_url(target.metadata.name or "", self.namespace)
        urls: dict[str, str] = {}
        entries = []
        for revision, weight, tag in split:
            if not revision:
                continue
            url = revision_url(revision, self.namespace) if revision == canary else stable_url
            urls[tag or STABLE_TAG] = url
            entries.append(TrafficTarget(revision=revision, url=url, weight=weight, tag=tag))
        only_target = all(e.url == stable_url for e in entries if e.weight > 0)
        if only_target and not any(e.tag == PREVIEW_TAG for e in entries) and len(entries) < 2:
            entries = []  # the target's own Service serves everything: plain routes
        if self.routing is not TrafficRouting.GATEWAY:
            entries = []
        return urls, tuple(entries)

    async def route(self, target: XynergyService, split: Split) -> Routed:
        status = self.rollout.status
        canary = status.canary_revision if status else None
        share = {rev: (w, tag) for rev, w, tag in split if rev}
        writes = 0
        if canary:
            weight, tag = share.get(canary, (0, None))
            live = canary in share
            replicas = self._replicas(target, weight, preview=tag == PREVIEW_TAG) if live else 0
            writes = await self._scale(canary, replicas, serving=weight > 0)
        urls, traffic = self._traffic(target, canary, split)
        return Routed(writes, urls, traffic)

    async def promote(
        self,
        target: XynergyService,
        canary: XynergyService,
        *,
        name: str,
        keep: str | None,
        confirmed: bool = False,
    ) -> Routed:
        """Everything to the new revision until the target runs its spec and is ready; then
        the target serves again and the new revision's children go (the same whether
        `confirmed` or not: every call reads where the target stands)."""
        dep = await self._deployment(target.metadata.name or "")
        done = Routed(0, {}, () if self.routing is TrafficRouting.GATEWAY else None)
        if settled_on(target, canary) and from_deployment(target, dep).ready:
            writes = await self._remove(name)
            return dataclasses.replace(done, writes=writes)
        live = await self._deployment(name)
        if live is None:  # removed already: the target serves (its Deployment rolling or
            return done  # unready again must not route to nothing)
        replicas = target.spec.sizing().replicas
        writes, body = await self._apply(self.canary, name, replicas, serving=True, live=live)
        if int(((body or {}).get("status") or {}).get("availableReplicas") or 0) < 1:
            # no Pod of it ready (scaled back up after another Rollout had the target):
            # the target's own Service serves until one is
            return dataclasses.replace(done, writes=writes, settled=False)
        urls, traffic = self._traffic(target, name, ((name, 100, CANARY_TAG),))
        return Routed(writes, urls, traffic, settled=False)

    async def restore(
        self,
        target: XynergyService,
        *,
        kept: str,
        image: str | None,
        template: RevisionTemplate | None = None,
    ) -> Routed:
        """The target, not patched while the old revision is kept, still runs it: its own
        Service serves everything again and the new revision scales to zero."""
        return await self.route(target, ((kept, 100, None),))

    async def retire(self, *, keep: str | None) -> int:
        """Delete this Rollout's new revisions (Deployment and Service, found by the
        `xynergy.io/rollout` label beside the managed-by one every child of the operator
        carries, and owned by it) other than `keep`: a canary the spec
        replaced mid-rollout still carries the target's Pod selector (replica routing) and
        would keep serving."""
        names: set[str] = set()
        for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service")):
            found = await self.provider.list(
                api_version,
                kind,
                self.namespace,
                labels={MANAGED_BY_LABEL: MANAGED_BY, ROLLOUT_LABEL: self.rollout_label},
            )
            names |= {str((o.get("metadata") or {}).get("name") or "") for o in found}
        gone = 0
        for name in sorted(names - {keep, ""}):
            log.info("rollout %s: removing its replaced revision %s", self.rollout_name, name)
            gone += await self._remove(name)
        return gone

    async def _remove(self, name: str) -> int:
        uid = self.rollout.metadata.uid or ""
        gone = 0
        for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service")):
            if await self.provider.get(api_version, kind, name, self.namespace) is None:
                continue
            await self.provider.remove_owned(
                api_version, kind, name, self.namespace, owner_uid=uid, orphan=False
            )
            gone += 1
        return gone
