"""The child cache (core `ChildCache`): a converge prompted by a child's event reads the
children as the watches last delivered them, never an older body, and nothing stays behind a
deleted child or owner (the XynergyService backend's reads: test_xynergyservice_backend_reads)."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.core.children import ChildCache
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


def test_the_kind_caches_its_deployments_and_services() -> None:
    assert XynergyServiceReconciler.cached_children == {"Deployment", "Service"}
