"""The child cache (core `ChildCache`): a converge prompted by a child's event reads the
children as the watches last delivered them, never an older body, and nothing stays behind a
deleted child or owner. The XynergyService Kubernetes backend reads it instead of GETting."""

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
from controllers.xynergyservice.reconciler import XynergyServiceReconciler

pytestmark = pytest.mark.unit

OWNER = {"kind": "XynergyService", "name": "crm", "uid": "u-1", "controller": True}


def _child(kind: str, version: str, *, ready: int = 0, owner: bool = True) -> dict[str, Any]:
    meta = {"name": "crm", "namespace": "ns", "resourceVersion": version, "generation": 1}
    meta["managedFields"] = [{"manager": "kube-controller-manager"}]
    if owner:
        meta["ownerReferences"] = [OWNER]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": meta}
    if kind == "Deployment":
        available = {"type": "Available", "status": "True" if ready else "False"}
        body["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                          "readyReplicas": ready, "availableReplicas": ready,
                          "conditions": [available]}  # fmt: skip
    return body


def test_the_newest_body_is_held_and_each_read_is_a_copy() -> None:
    cache = ChildCache()
    cache.put("Deployment", _child("Deployment", "7", ready=1))
    cache.put("Deployment", _child("Deployment", "5"))  # an older event after an apply's answer
    held = cache.get("Deployment", "ns", "crm")
    assert held is not None
    assert held["metadata"]["resourceVersion"] == "7"
    assert "managedFields" not in held["metadata"]
    held["status"]["readyReplicas"] = 0
    again = cache.get("Deployment", "ns", "crm")
    assert again is not None
    assert again["status"]["readyReplicas"] == 1
    cache.put("Deployment", _child("Deployment", "8"))
    newer = cache.get("Deployment", "ns", "crm")
    assert newer is not None
    assert newer["metadata"]["resourceVersion"] == "8"


def test_nothing_stays_behind_a_deleted_child_or_owner() -> None:
    cache = ChildCache()
    cache.put("Deployment", _child("Deployment", "1"))
    cache.put("Service", _child("Service", "2"))
    cache.put("Service", _child("Service", "3", owner=False) | {"metadata": {"name": "x"}})
    assert len(cache) == 2  # a body without a controller owner is not ours to hold
    cache.drop("Service", _child("Service", "4"))
    assert cache.get("Service", "ns", "crm") is None
    cache.forget("u-1")
    assert len(cache) == 0
    assert cache._owned == {}


class CountingProvider:
    """get/apply over dicts, counting the reads."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.gets: list[str] = []

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
        return []


def _svc() -> XynergyService:
    meta = {"name": "crm", "namespace": "ns", "uid": "u-1", "generation": 1}
    status = {"latestCreatedRevision": "crm-00001", "observedGeneration": 1}
    return XynergyService.model_validate(
        {"metadata": meta, "spec": {"image": "reg/crm:1"}, "status": status}
    )


async def test_a_child_events_converge_reads_the_cache_and_a_check_reads_the_apiserver() -> None:
    provider, cache = CountingProvider(), ChildCache()
    backend = KubernetesBackend(cast(KubernetesProvider, provider), children=cache)
    fresh = _svc().model_copy(update={"status": None})
    await backend.apply(fresh)  # never deployed: applied without reading
    assert provider.gets == []
    ready = copy.deepcopy(provider.objects["Deployment"])
    ready["metadata"]["resourceVersion"] = "9"
    ready["status"] = _child("Deployment", "9", ready=1)["status"]
    cache.put("Deployment", ready)  # the watch's newest event
    observed = await backend.apply(_svc(), child=ChildEvent("Deployment", ready))
    assert provider.gets == []  # both children from the cache (the Service: apply's answer)
    assert observed.ready  # decided on the newest body, not the apiserver's older one
    assert observed.writes == 0
    await backend.apply(_svc())  # a resync check: the apiserver
    assert sorted(provider.gets) == ["Deployment", "Service"]


def test_the_kind_caches_its_deployments_and_services() -> None:
    assert XynergyServiceReconciler.cached_children == {"Deployment", "Service"}
