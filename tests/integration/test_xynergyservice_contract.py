"""The container contract on the Kubernetes backend, as Cloud Run's: every Pod the
controller-manager creates from the Deployment is told PORT, K_SERVICE, K_CONFIGURATION and
K_REVISION, the revision the XynergyService's status reports (also after a rollout and a
scale); a user's own value wins; the grace period is the one spec.kubernetes asks for. kwok
runs no containers, so each variable is resolved from the Pod as the kubelet resolves it: a
literal value, or the downward API's field of the Pod the apiserver stored."""

from __future__ import annotations

import json
import re
from typing import Any

from kopf.testing import KopfRunner
from kube_support import Kube
from test_xynergyservice import create_xs, get_xs, merge_patch, wait_ready, xs_url

from apis.v1alpha1 import XynergyService
from controllers.core.context import FIELD_MANAGER
from controllers.xynergyservice.resources.kubernetes import build_deployment, pod_spec_digest

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


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][-._A-Za-z0-9]*)\)")


def expanded(pod: dict[str, Any]) -> dict[str, str | None]:
    """Every variable of the Pod's container as the kubelet makes it: a `$(VAR)` in a value
    is replaced only when VAR is defined earlier in the list (`$$` is a literal `$`), else
    kept as written (Kubernetes' own rule, which kwok does not run)."""
    seen: dict[str, str | None] = {}
    for entry in pod["spec"]["containers"][0].get("env") or []:
        if "value" not in entry:
            seen[entry["name"]] = resolve(pod, entry)
            continue

        def known(ref: re.Match[str]) -> str:
            if ref[0] == "$$":
                return "$"
            value = seen.get(ref[1])
            return ref[0] if value is None else value

        seen[entry["name"]] = _REFERENCE.sub(known, str(entry["value"]))
    return seen


def test_a_users_variable_reads_the_contract_variables(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    """The contract's variables come first in the Pods' env, so `$(K_SERVICE)` and the others
    resolve in a user's variable; each name is in the list once."""
    env = [
        {"name": "SELF_URL", "value": f"http://$(K_SERVICE).{namespace}:$(PORT)"},
        {"name": "BUILD", "value": "$(K_CONFIGURATION)@$(K_REVISION)"},
    ]
    create_xs(kube, namespace, "echo", port=9000, env=env)
    wait_ready(kube, namespace, "echo")
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/echo").json()
    names = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names == [*CONTRACT, "SELF_URL", "BUILD"]
    (pod,) = wait_pods_told(
        kube,
        namespace,
        "echo",
        {
            "PORT": "9000",
            "K_SERVICE": "echo",
            "K_CONFIGURATION": "echo",
            "K_REVISION": "echo-00001",
        },
        count=1,
    )
    got = expanded(pod)
    assert got["SELF_URL"] == f"http://echo.{namespace}:9000"
    assert got["BUILD"] == "echo@echo-00001"


def test_a_deployment_with_the_contract_last_is_reordered_under_its_revision(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    """What the operator wrote before the contract moved first (spec.env, then the contract,
    and that Pod spec's digest) is applied again with the new order: server-side apply moves
    the variables (no apply on every converge), the revision keeps its name."""
    create_xs(kube, namespace, "upg", env=[{"name": "SELF", "value": "$(K_SERVICE)"}])
    wait_ready(kube, namespace, "upg")
    # generation 2 without a new revision: a new one now would be named upg-00002
    merge_patch(kube, xs_url(namespace, "upg"), {"spec": {"routes": [{"prefix": "/upg"}]}})
    assert wait_ready(kube, namespace, "upg")["metadata"]["generation"] == 2
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/upg"
    svc = XynergyService.model_validate(get_xs(kube, namespace, "upg"))
    old = build_deployment(svc, revision="upg-00001")
    old_pod = old["spec"]["template"]["spec"]
    env = old_pod["containers"][0]["env"]
    old_pod["containers"][0]["env"] = [e for e in env if e["name"] == "SELF"] + [
        e for e in env if e["name"] != "SELF"
    ]
    old["metadata"]["annotations"]["xynergy.io/template"] = pod_spec_digest(old_pod)
    resp = kube.http.patch(  # as the operator before this change applied it
        path,
        content=json.dumps(old),
        headers={"Content-Type": "application/apply-patch+yaml"},
        params={"fieldManager": FIELD_MANAGER, "force": "true"},
    )
    assert resp.status_code == 200, resp.text
    assert [e["name"] for e in resp.json()["spec"]["template"]["spec"]["containers"][0]["env"]] == [
        "SELF",
        *CONTRACT,
    ]

    def reordered() -> bool:
        dep = kube.get(path).json()
        names = [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]]
        return names == [*CONTRACT, "SELF"]

    kube.wait_for("the Deployment's env with the contract first", reordered, timeout=60)
    dep = kube.get(path).json()
    assert dep["metadata"]["annotations"]["xynergy.io/revision"] == "upg-00001"
    (pod,) = wait_pods_told(
        kube,
        namespace,
        "upg",
        {"PORT": "8080", "K_SERVICE": "upg", "K_CONFIGURATION": "upg", "K_REVISION": "upg-00001"},
        count=1,
    )
    assert expanded(pod)["SELF"] == "upg"
    status = wait_ready(kube, namespace, "upg")["status"]
    assert status["latestCreatedRevision"] == status["latestReadyRevision"] == "upg-00001"
