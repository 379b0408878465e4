"""The container contract on the Kubernetes backend, as Cloud Run's: every Pod the
controller-manager creates from the Deployment is told PORT, K_SERVICE, K_CONFIGURATION and
K_REVISION, the revision the XynergyService's status reports (also after a rollout and a
scale); a user's own value wins; the grace period is the one spec.kubernetes asks for. kwok
runs no containers, so each variable is resolved from the Pod as the kubelet resolves it: a
literal value, or the downward API's field of the Pod the apiserver stored."""

from __future__ import annotations

import re
from typing import Any

from kopf.testing import KopfRunner
from kube_support import Kube
from test_xynergyservice import create_xs, get_xs, merge_patch, wait_ready, xs_url

CONTRACT = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def pods(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    """The service's Pods that are not stopping."""
    items = kube.get(
        f"/api/v1/namespaces/{ns}/pods", labelSelector=f"xynergy.io/service={name}"
    ).json()["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def resolve(pod: dict[str, Any], entry: dict[str, Any]) -> str | None:
    """A variable's value as the kubelet gives it (the subset of the downward API a field path
    of ours may use); None for a path that names nothing the Pod has."""
    if "value" in entry:
        return str(entry["value"])
    path = entry["valueFrom"]["fieldRef"]["fieldPath"]
    if path in ("metadata.name", "metadata.namespace"):
        return str(pod["metadata"][path.partition(".")[2]])
    found = _SUBSCRIPT.match(path)
    assert found, f"unexpected field path {path}"
    value = (pod["metadata"].get(found[1]) or {}).get(found[2])
    return None if value is None else str(value)


def contract(pod: dict[str, Any]) -> dict[str, str | None]:
    env = pod["spec"]["containers"][0].get("env") or []
    names = [e["name"] for e in env]
    assert all(names.count(n) == 1 for n in CONTRACT), f"each variable once: {names}"
    return {e["name"]: resolve(pod, e) for e in env if e["name"] in CONTRACT}


def wait_pods_told(
    kube: Kube, ns: str, name: str, want: dict[str, str], *, count: int
) -> list[dict[str, Any]]:
    """Wait until the service runs `count` Pods and each is told `want`."""

    def told() -> bool:
        now = pods(kube, ns, name)
        return len(now) == count and all(contract(p) == want for p in now)

    kube.wait_for(f"{count} Pods of {name} told {want}", told, timeout=90)
    return pods(kube, ns, name)


def test_pods_are_told_the_contract_and_the_revision_status_reports(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    create_xs(kube, namespace, "shop", port=9000, scaling={"minInstances": 2, "maxInstances": 4})
    obj = wait_ready(kube, namespace, "shop")
    revision = obj["status"]["latestCreatedRevision"]
    assert revision == obj["status"]["latestReadyRevision"] == "shop-00001"
    want = {"PORT": "9000", "K_SERVICE": "shop", "K_CONFIGURATION": "shop", "K_REVISION": revision}
    made = wait_pods_told(kube, namespace, "shop", want, count=2)
    for pod in made:  # made by the controller-manager's ReplicaSet, not by the operator
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        entry = next(e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "K_REVISION")
        assert "value" not in entry, "a literal would make the revision part of its own digest"
        assert pod["metadata"]["annotations"]["xynergy.io/revision"] == revision

    # a new revision: its Pods are told its name once the old ones are gone
    merge_patch(kube, xs_url(namespace, "shop"), {"spec": {"image": "reg.example/app:2"}})

    def rolled() -> bool:
        status = get_xs(kube, namespace, "shop").get("status") or {}
        return status.get("latestReadyRevision") == "shop-00002"

    kube.wait_for("revision shop-00002 Ready", rolled, timeout=90)
    wait_pods_told(kube, namespace, "shop", {**want, "K_REVISION": "shop-00002"}, count=2)

    # a scale keeps the revision: the Pod it adds is told the same name, the others stay
    before = {p["metadata"]["name"] for p in pods(kube, namespace, "shop")}
    merge_patch(kube, xs_url(namespace, "shop") + "/scale", {"spec": {"replicas": 3}})
    after = wait_pods_told(kube, namespace, "shop", {**want, "K_REVISION": "shop-00002"}, count=3)
    assert before < {p["metadata"]["name"] for p in after}
    status = get_xs(kube, namespace, "shop")["status"]
    assert status["latestCreatedRevision"] == status["latestReadyRevision"] == "shop-00002"


def test_a_users_own_contract_variable_wins_and_the_grace_period_is_the_one_asked_for(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    """An object that set K_SERVICE itself (before the operator did) is admitted, becomes
    Ready and keeps its value; the other variables are still set. Its Pods get the grace
    period spec.kubernetes asks for, after the same preStop sleep."""
    create_xs(
        kube,
        namespace,
        "legacy",
        env=[{"name": "K_SERVICE", "value": "legacy-shop"}],
        kubernetes={"terminationGracePeriodSeconds": 95},
    )
    wait_ready(kube, namespace, "legacy")
    want = {
        "PORT": "8080",
        "K_SERVICE": "legacy-shop",
        "K_CONFIGURATION": "legacy",
        "K_REVISION": "legacy-00001",
    }
    (pod,) = wait_pods_told(kube, namespace, "legacy", want, count=1)
    assert pod["spec"]["terminationGracePeriodSeconds"] == 95
    lifecycle = pod["spec"]["containers"][0]["lifecycle"]
    assert lifecycle == {"preStop": {"sleep": {"seconds": 5}}}
