"""A XynergyService in a namespace that enforces PodSecurity `restricted` (GKE Autopilot, a
hardened cluster): its Pods are admitted by default, and Pods the ReplicaSet cannot create
(`podSecurity: baseline` there, or a ResourceQuota) say why at once instead of "RollingOut"
until the progress deadline, and clear once they are created. Real apiserver (PodSecurity and
ResourceQuota admission) and controller-manager, kwok Pods."""

from __future__ import annotations

from typing import Any

from kopf.testing import KopfRunner
from kube_support import Kube
from test_xynergyservice import create_xs, deployment, get_xs, merge_patch, wait_ready, xs_url

from controllers.xynergyservice.resources.kubernetes import (
    PRE_STOP_SLEEP_SECONDS,
    TERMINATION_GRACE_PERIOD_SECONDS,
)


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_restricted_namespace_admits_the_pods_and_a_refusal_stalls_at_once(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    merge_patch(
        kube,
        f"/api/v1/namespaces/{namespace}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    create_xs(kube, namespace, "app")
    wait_ready(kube, namespace, "app")
    dep = deployment(kube, namespace, "app")
    assert dep is not None
    # what the apiserver kept of the Pod template (a field it dropped would be re-applied on
    # every converge)
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}}
    assert pod["terminationGracePeriodSeconds"] == TERMINATION_GRACE_PERIOD_SECONDS

    create_xs(kube, namespace, "root", kubernetes={"podSecurity": "baseline"})

    def refused() -> bool:
        return conditions(get_xs(kube, namespace, "root")).get("Stalled", {}).get("reason") == (
            "FailedCreate"
        )

    # the progress deadline is 600 s: this is the ReplicaFailure, not the deadline
    kube.wait_for("the refused Pods in the conditions", refused, timeout=60)
    conds = conditions(get_xs(kube, namespace, "root"))
    assert conds["Ready"]["status"] == "False"
    assert "Reconciling" not in conds
    message = conds["Stalled"]["message"]
    assert message.startswith("the ReplicaSet cannot create Pods: pods ")
    assert 'is forbidden: violates PodSecurity "restricted:latest"' in message
    assert "runAsNonRoot != true" in message

    # the fix: the Pods get created, and the stall clears
    merge_patch(kube, xs_url(namespace, "root"), {"spec": {"kubernetes": {"podSecurity": None}}})
    healed = wait_ready(kube, namespace, "root")
    assert "Stalled" not in conditions(healed)


def test_a_resourcequota_refusal_stalls_at_once_and_clears_when_the_pods_fit(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    quota = {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    resp = kube.create(f"/api/v1/namespaces/{namespace}/resourcequotas", quota)
    assert resp.status_code == 201, resp.text
    kube.wait_for(
        "the quota's usage computed",
        lambda: (
            "used"
            in (kube.get(f"/api/v1/namespaces/{namespace}/resourcequotas/no-pods").json()["status"])
        ),
    )
    create_xs(kube, namespace, "app")

    def refused() -> bool:
        return conditions(get_xs(kube, namespace, "app")).get("Stalled", {}).get("reason") == (
            "FailedCreate"
        )

    kube.wait_for("the quota's refusal in the conditions", refused, timeout=60)
    message = conditions(get_xs(kube, namespace, "app"))["Stalled"]["message"]
    assert "exceeded quota: no-pods" in message

    merge_patch(
        kube,
        f"/api/v1/namespaces/{namespace}/resourcequotas/no-pods",
        {"spec": {"hard": {"pods": "10"}}},
    )
    healed = wait_ready(kube, namespace, "app", timeout=120)
    assert "Stalled" not in conditions(healed)
