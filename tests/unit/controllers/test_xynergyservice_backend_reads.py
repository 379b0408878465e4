"""What the Kubernetes backend reads: its children from the core's child cache in a converge
prompted by a child event (the apiserver otherwise); the Pods only when a rollout is slow (a check not
prompted by a child event) or known stuck, never for a rollout the converge itself just
started (every new XynergyService listed its namespace's Pods on creation: at N=1000 a LIST
over a thousand Pods per object, 6 % of the operator's CPU)."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from apis.v1alpha1 import XynergyService
from controllers.core.children import ChildCache
from controllers.core.controller import ChildEvent
from controllers.providers.kubediff import is_subset
from controllers.providers.kubernetes import Applied, KubernetesProvider
from controllers.xynergyservice.backends import KubernetesBackend

pytestmark = pytest.mark.unit


class ListingProvider:
    """get/apply over dicts (a Deployment applied is not rolled out yet), counting reads."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.lists = 0
        self.gets: list[str] = []
        self.pods: list[dict[str, Any]] = []

    async def get(self, api_version: str, kind: str, name: str, ns: str | None) -> Any:
        self.gets.append(kind)
        found = self.objects.get(kind)
        return copy.deepcopy(found) if found is not None else None

    async def apply(self, desired: dict[str, Any], live: dict[str, Any] | None) -> Applied:
        if live is not None and is_subset(desired, live):
            return Applied(live, wrote=False)
        body = copy.deepcopy(desired) | {"status": {}}
        body["metadata"] |= {"resourceVersion": "1", "generation": 1}
        self.objects[desired["kind"]] = body
        return Applied(body, wrote=True)

    async def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        self.lists += 1
        return copy.deepcopy(self.pods)


def _svc(*, deployed: bool, image: str = "reg/crm:1", replicas: int = 1) -> XynergyService:
    meta = {"name": "crm", "namespace": "ns", "uid": "u-1", "generation": 1}
    status = {"latestCreatedRevision": "crm-00001"} if deployed else None
    spec = {"image": image, "replicas": replicas}
    return XynergyService.model_validate({"metadata": meta, "spec": spec, "status": status})


async def test_a_rollout_this_converge_started_lists_no_pods() -> None:
    provider = ListingProvider()
    backend = KubernetesBackend(cast(KubernetesProvider, provider))
    created = await backend.apply(_svc(deployed=False))  # the creation's converge
    assert created.writes == 2
    assert provider.lists == 0
    updated = await backend.apply(_svc(deployed=True, image="reg/crm:2"))  # a spec change
    assert updated.writes == 1
    assert provider.lists == 0
    slow = await backend.apply(_svc(deployed=True, image="reg/crm:2"))  # a check, no event
    assert slow.writes == 0
    assert provider.lists == 1  # still not rolled out: why not is read from the Pods


async def test_a_child_events_converge_reads_the_cache_and_a_check_reads_the_apiserver() -> None:
    provider, cache = ListingProvider(), ChildCache()
    backend = KubernetesBackend(cast(KubernetesProvider, provider), children=cache)
    await backend.apply(_svc(deployed=False))  # never deployed: applied without reading
    assert provider.gets == []
    ready = copy.deepcopy(provider.objects["Deployment"])
    ready["metadata"]["resourceVersion"] = "9"
    ready["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                       "readyReplicas": 1, "availableReplicas": 1,
                       "conditions": [{"type": "Available", "status": "True"}]}  # fmt: skip
    cache.put("Deployment", ready)  # the watch's newest event
    observed = await backend.apply(_svc(deployed=True), child=ChildEvent("Deployment", ready))
    assert provider.gets == []  # both children from the cache (the Service: apply's answer)
    assert observed.ready  # decided on the newest body, not the apiserver's older one
    assert observed.writes == 0
    await backend.apply(_svc(deployed=True))  # a resync check: the apiserver
    assert sorted(provider.gets) == ["Deployment", "Service"]


RUNS_AS_ROOT = (
    'container has runAsNonRoot and image will run as root (pod: "crm-7d4-abc_ns(u-2)", '
    "container: app)"
)
ROOT_POD = {
    "metadata": {"name": "crm-7d4-abc"},
    "status": {
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {
                "name": "app",
                "state": {
                    "waiting": {"reason": "CreateContainerConfigError", "message": RUNS_AS_ROOT}
                },
            }
        ],
    },
}


async def test_a_container_the_kubelet_cannot_create_is_named_and_stays_named() -> None:
    """An image that runs as root under the default runAsNonRoot (podSecurity restricted):
    the kubelet's CreateContainerConfigError is in the conditions once the rollout is slow,
    and a converge prompted by a Deployment event reads the Pods again rather than falling
    back to "RollingOut" (a status write each way)."""
    provider, cache = ListingProvider(), ChildCache()
    provider.pods = [ROOT_POD]
    backend = KubernetesBackend(cast(KubernetesProvider, provider), children=cache)
    await backend.apply(_svc(deployed=False))
    slow = await backend.apply(_svc(deployed=True))  # a check: the Pods are read
    assert (slow.ready, slow.stalled, slow.reason) == (False, False, "CreateContainerConfigError")
    assert slow.message == f"pod crm-7d4-abc: container app: {RUNS_AS_ROOT}"
    stuck = _svc(deployed=True).model_dump(by_alias=True, exclude_none=True)
    stuck["status"]["conditions"] = [
        {
            "type": "Ready",
            "status": "Unknown",
            "reason": slow.reason,
            "message": slow.message,
            "lastTransitionTime": "2026-12-04T03:00:00Z",
        }
    ]
    dep = provider.objects["Deployment"]
    cache.put("Deployment", dep)
    lists = provider.lists
    again = await backend.apply(
        XynergyService.model_validate(stuck), child=ChildEvent("Deployment", dep)
    )
    assert provider.lists == lists + 1
    assert (again.reason, again.message) == (slow.reason, slow.message)


def _crash_looping(back_off: str, restarts: int, rs: str = "crm-7d4") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{rs}-abc",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs}],
        },
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "reg/crm:1",
                    "ready": False,
                    "restartCount": restarts,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {back_off} restarting failed container=app",
                        }
                    },
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}},
                }
            ],
        },
    }


def _with_ready(svc: XynergyService, **ready: Any) -> XynergyService:
    body = svc.model_dump(by_alias=True, exclude_none=True)
    condition = {"type": "Ready", "lastTransitionTime": "2026-12-04T03:00:00Z", **ready}
    body["status"] = {**body.get("status", {}), "conditions": [condition]}
    return XynergyService.model_validate(body)


async def test_a_crash_looping_rollout_is_named_and_each_back_off_reads_the_same() -> None:
    """The app of the new revision exits: CrashLoopBackOff with the last exit code once the
    rollout is slow; the Deployment events that follow read the Pods again (the reason is
    known stuck) and find the same condition, whatever the back-off says now."""
    provider, cache = ListingProvider(), ChildCache()
    provider.pods = [_crash_looping("10s", 1)]
    backend = KubernetesBackend(cast(KubernetesProvider, provider), children=cache)
    await backend.apply(_svc(deployed=False))
    slow = await backend.apply(_svc(deployed=True))
    assert (slow.ready, slow.reason) == (False, "CrashLoopBackOff")
    assert (
        slow.message == "pod crm-7d4-abc: container app: CrashLoopBackOff, last exit code 3 (Error)"
    )
    stuck = _with_ready(
        _svc(deployed=True), status="Unknown", reason=slow.reason, message=slow.message
    )
    provider.pods = [_crash_looping("2m40s", 5)]
    dep = provider.objects["Deployment"]
    cache.put("Deployment", dep)
    lists = provider.lists
    again = await backend.apply(stuck, child=ChildEvent("Deployment", dep))
    assert provider.lists == lists + 1
    assert (again.reason, again.message) == (slow.reason, slow.message)


async def test_a_serving_revision_missing_an_instance_reads_its_pods_only_on_a_check() -> None:
    """Ready with every instance: no Pod read, check or event. Ready while an instance is
    missing (Scaling): a check reads the Pods and names a crash-looping one in the message
    (Ready stays True); then Deployment events read them again rather than dropping it."""
    provider, cache = ListingProvider(), ChildCache()
    provider.pods = [_crash_looping("40s", 3)]
    backend = KubernetesBackend(cast(KubernetesProvider, provider), children=cache)
    await backend.apply(_svc(deployed=False, replicas=2))
    dep = provider.objects["Deployment"]
    dep["status"] = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                     "readyReplicas": 2, "availableReplicas": 2,
                     "conditions": [{"type": "Available", "status": "True"}]}  # fmt: skip
    serving = _svc(deployed=True, replicas=2).model_dump(by_alias=True, exclude_none=True)
    serving["status"]["latestReadyRevision"] = "crm-00001"
    svc = _with_ready(XynergyService.model_validate(serving), status="True", reason="Ready", message="2/2 instances ready")  # fmt: skip
    full = await backend.apply(svc)
    assert (full.ready, full.reason, provider.lists) == (True, "Ready", 0)
    dep["status"] |= {"readyReplicas": 1, "availableReplicas": 1}
    cache.put("Deployment", dep)
    event = await backend.apply(svc, child=ChildEvent("Deployment", dep))
    assert (event.ready, event.reason, provider.lists) == (True, "Scaling", 0)
    check = await backend.apply(svc)
    assert provider.lists == 1
    assert (check.ready, check.reason) == (True, "Scaling")
    assert check.message == (
        f"{event.message}; pod crm-7d4-abc: container app: CrashLoopBackOff, last exit code 3 (Error)"
    )
    named = _with_ready(svc, status="True", reason="Scaling", message=check.message)
    again = await backend.apply(named, child=ChildEvent("Deployment", dep))
    assert provider.lists == 2
    assert again.message == check.message
