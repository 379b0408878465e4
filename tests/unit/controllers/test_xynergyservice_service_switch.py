"""The Rollout's Service switch on the XynergyService side, through the reconciler and the
Kubernetes backend on an in-memory provider: the Service's selector follows
`xynergy.io/serving-revision` before anything else of the converge can fail, and also while
the service is paused, so a revision that is gone never keeps the Service selecting nothing."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, cast

import pytest

from apis.v1alpha1 import XynergyService
from apis.v1alpha1.xynergyservice import Backend as BackendKind
from controllers.providers.kubediff import is_subset
from controllers.providers.kubernetes import Applied, KubernetesProvider
from controllers.xynergyservice.backends import KubernetesBackend
from controllers.xynergyservice.reconciler import reconcile
from controllers.xynergyservice.resources import build_deployment, build_service
from controllers.xynergyservice.resources.naming import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    REVISION_LABEL,
    SERVES_LABEL,
    SERVICE_LABEL,
    SERVING_REVISION_ANNOTATION,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
REVISION = "crm-ro-7ef70c08"
ENV = [{"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}}]


class MemoryProvider:
    """get/apply/label/set_selector over dicts; Deployments report all replicas available."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[str] = []

    async def get(self, api_version: str, kind: str, name: str, ns: Any) -> Any:
        return copy.deepcopy(self.objects.get((kind, name)))

    async def apply(self, desired: dict[str, Any], live: Any, **_: Any) -> Applied:
        selector = (desired.get("spec") or {}).get("selector")  # compared whole (`exact`)
        if live is not None and is_subset(desired, live) and live["spec"]["selector"] == selector:
            return Applied(live, wrote=False)
        self.writes.append(f"apply {desired['kind']}")
        self.objects[(desired["kind"], desired["metadata"]["name"])] = copy.deepcopy(desired)
        return Applied(_available(copy.deepcopy(desired)), wrote=True)

    async def label(self, *_: Any, **__: Any) -> bool:
        return False

    async def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []

    async def set_selector(self, live: Any, selector: dict[str, str]) -> Any:
        service = self.objects.get(("Service", live["metadata"]["name"]))
        if service is None:
            return None
        service["spec"]["selector"] = dict(selector)
        self.writes.append("select Service")
        return copy.deepcopy(service)

    def selector(self) -> dict[str, str]:
        found: dict[str, str] = self.objects[("Service", "crm")]["spec"]["selector"]
        return found


def _available(dep: dict[str, Any]) -> dict[str, Any]:
    if dep["kind"] == "Deployment":
        n = dep["spec"].get("replicas", 1)
        dep["metadata"]["generation"] = 1
        dep["status"] = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n,
                         "readyReplicas": n, "availableReplicas": n}  # fmt: skip
    return dep


def _svc(*, paused: bool = False, env: bool = False) -> XynergyService:
    spec: dict[str, Any] = {"image": "reg/crm:1", "backend": "kubernetes", "paused": paused}
    if env:
        spec["env"] = ENV
    meta = {"name": "crm", "namespace": "ns", "uid": "u-1", "generation": 1,
            "annotations": {SERVING_REVISION_ANNOTATION: REVISION}}  # fmt: skip
    return XynergyService.model_validate(
        {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "XynergyService",
            "metadata": meta,
            "spec": spec,
            "status": {"latestCreatedRevision": "crm-00001"},
        }
    )


def _revision(replicas: int = 2) -> dict[str, Any]:
    """A Rollout's promoted revision, labelled to serve the target."""
    return _available({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": REVISION, "namespace": "ns",
                     "labels": {MANAGED_BY_LABEL: MANAGED_BY, SERVES_LABEL: "crm"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {REVISION_LABEL: REVISION}}},
    })  # fmt: skip


def _world(svc: XynergyService, *, revision: bool) -> MemoryProvider:
    """The service deployed, its Service switched to the revision's Pods."""
    provider = MemoryProvider()
    provider.objects[("Deployment", "crm")] = _available(build_deployment(svc))
    provider.objects[("Service", "crm")] = build_service(svc, serving=REVISION)
    if revision:
        provider.objects[("Deployment", REVISION)] = _revision()
    return provider


async def _converge(svc: XynergyService, provider: MemoryProvider) -> Any:
    backend = KubernetesBackend(cast(KubernetesProvider, provider))
    return await reconcile(svc, backends={BackendKind.KUBERNETES: backend}, now=NOW)


async def test_a_converge_that_stalls_on_its_env_still_lets_go_of_a_revision_that_is_gone() -> None:
    """The revision's Deployment deleted (a Rollout deleted, its children collected) while a
    Secret the env reads is missing: the converge stalls on the Secret, but the Service
    selects the service's own Pods again first (it selected Pods that no longer exist)."""
    svc = _svc(env=True)  # the Secret "db" does not exist
    provider = _world(svc, revision=False)
    result = await _converge(svc, provider)
    stalled = next(c for c in result.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "SecretNotFound")
    assert provider.selector() == {SERVICE_LABEL: "crm"}
    assert provider.writes == ["select Service"], "the selector only: nothing else applied"


@pytest.mark.parametrize("revision", [False, True])
async def test_a_paused_service_follows_the_switch_with_its_selector_only(revision: bool) -> None:
    """Paused holds the workload (nothing applied), not the Rollout switch: the Service lets
    go of a revision that is gone, and selects one that can serve, writing its selector
    alone."""
    svc = _svc(paused=True)
    provider = _world(svc, revision=revision)
    if revision:  # the switch asked for, not made yet
        provider.objects[("Service", "crm")] = build_service(svc)
    result = await _converge(svc, provider)
    want = {REVISION_LABEL: REVISION} if revision else {SERVICE_LABEL: "crm"}
    assert provider.selector() == want
    assert provider.writes == ["select Service"], "nothing else written while paused"
    assert result.status.selector == ",".join(f"{k}={v}" for k, v in want.items())
    again = await _converge(svc, provider)
    assert provider.writes == ["select Service"], "written once"
    assert again.status.selector == result.status.selector


async def test_the_full_apply_writes_the_selector_once() -> None:
    """The selector step and the full apply want the same selector: one write of it, and the
    Service's apply that follows finds it as wanted."""
    svc = _svc()
    provider = _world(svc, revision=False)
    await _converge(svc, provider)
    assert provider.selector() == {SERVICE_LABEL: "crm"}
    assert provider.writes.count("select Service") == 1
    assert "apply Service" not in provider.writes, "the apply found it as wanted"
