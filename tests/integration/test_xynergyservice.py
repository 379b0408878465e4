"""XynergyService on the Kubernetes backend, end to end: a real apiserver, controller-manager,
scheduler and kwok nodes, and the operator running under kopf's KopfRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from conftest import Kube, audit_events
from kopf.testing import KopfRunner

from apis.conditions import Condition, check_invariants

SAMPLES = Path(__file__).parents[2] / "manifests" / "samples"
GROUP_PATH = "/apis/xynergy.io/v1alpha1"


def xs_url(ns: str, name: str = "") -> str:
    return f"{GROUP_PATH}/namespaces/{ns}/xynergyservices" + (f"/{name}" if name else "")


def get_xs(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    resp = kube.get(xs_url(ns, name))
    assert resp.status_code == 200, resp.text
    obj: dict[str, Any] = resp.json()
    status = obj.get("status") or {}
    if status.get("conditions"):
        conds = [Condition.model_validate(c) for c in status["conditions"]]
        problems = check_invariants(
            generation=obj["metadata"]["generation"],
            observed_generation=status.get("observedGeneration"),
            conditions=conds,
        )
        assert problems == [], f"{name}: {problems} in {status}"
    return obj


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "Ready"), {})


def wait_ready(kube: Kube, ns: str, name: str, *, timeout: float = 90) -> dict[str, Any]:
    def ready() -> bool:
        obj = get_xs(kube, ns, name)
        return (
            ready_condition(obj).get("status") == "True"
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        )

    kube.wait_for(f"XynergyService {ns}/{name} Ready", ready, timeout=timeout)
    return get_xs(kube, ns, name)


def deployment(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    resp = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    return resp.json() if resp.status_code == 200 else None


def merge_patch(kube: Kube, path: str, body: dict[str, Any]) -> None:
    resp = kube.http.patch(
        path,
        content=json.dumps(body),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text


def create_xs(kube: Kube, ns: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name},
        "spec": {"image": "reg.example/app:1", **spec},
    }
    resp = kube.create(xs_url(ns), body)
    assert resp.status_code == 201, resp.text


def test_every_sample_becomes_ready(kube: Kube, operator: KopfRunner, namespace: str) -> None:
    names = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "ConfigMap":
                assert (
                    kube.create(f"/api/v1/namespaces/{namespace}/configmaps", doc).status_code
                    == 201
                )
            elif doc["kind"] == "XynergyService":
                assert kube.create(xs_url(namespace), doc).status_code == 201
                names.append(doc["metadata"]["name"])
    assert len(names) >= 3
    for name in names:
        obj = wait_ready(kube, namespace, name)
        status = obj["status"]
        assert status["url"] == f"http://{name}.{namespace}.svc.cluster.local"
        dep = deployment(kube, namespace, name)
        assert dep is not None
        assert status["readyReplicas"] == dep["spec"]["replicas"] >= 1
        assert status["latestReadyRevision"] == f"{name}-{obj['metadata']['generation']:05d}"
        svc = kube.get(f"/api/v1/namespaces/{namespace}/services/{name}")
        assert svc.status_code == 200
        owner = dep["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("XynergyService", obj["metadata"]["uid"])


def test_image_change_rolls_out(kube: Kube, operator: KopfRunner, namespace: str) -> None:
    create_xs(kube, namespace, "api", scaling={"minInstances": 2})
    first = wait_ready(kube, namespace, "api")
    merge_patch(kube, xs_url(namespace, "api"), {"spec": {"image": "reg.example/app:2"}})

    def rolled() -> bool:
        obj = get_xs(kube, namespace, "api")
        dep = deployment(kube, namespace, "api") or {}
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        return (
            image == "reg.example/app:2"
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
            and ready_condition(obj).get("status") == "True"
        )

    kube.wait_for("the new image to roll out", rolled, timeout=90)
    obj = get_xs(kube, namespace, "api")
    assert obj["metadata"]["generation"] > first["metadata"]["generation"]
    assert obj["status"]["latestReadyRevision"] == f"api-{obj['metadata']['generation']:05d}"
    assert obj["status"]["readyReplicas"] == 2


def test_hand_edit_is_corrected_unmanaged_fields_kept(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    create_xs(kube, namespace, "drift")
    wait_ready(kube, namespace, "drift")
    dep_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/drift"
    merge_patch(
        kube,
        dep_path,
        {
            "metadata": {"annotations": {"team.example/owner": "crm-team"}},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "app", "image": "reg.example/hacked:9"}]}
                }
            },
        },
    )

    def corrected() -> bool:
        dep = deployment(kube, namespace, "drift") or {}
        return dep["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example/app:1"

    kube.wait_for("the operator to correct the hand edit", corrected, timeout=60)
    dep = deployment(kube, namespace, "drift") or {}
    assert dep["metadata"]["annotations"]["team.example/owner"] == "crm-team"


def test_deployment_watch_is_filtered_by_the_apiserver(
    kube: Kube, operator: KopfRunner, namespace: str, audit_log: Path
) -> None:
    """The operator asks the apiserver for its own Deployments only (a label selector on the
    list and the watch), so a cluster's other Deployments never reach it; the hand-edit test
    above shows the filtered watch still sees ours."""
    create_xs(kube, namespace, "watched")
    wait_ready(kube, namespace, "watched")
    requests = [
        e
        for e in audit_events(audit_log, "xynergy-operator", verbs=frozenset({"list", "watch"}))
        if e.get("objectRef", {}).get("resource") == "deployments"
    ]
    assert {e["verb"] for e in requests} >= {"watch"}, requests
    for event in requests:
        query = parse_qs(urlsplit(event["requestURI"]).query)
        assert query.get("labelSelector") == ["app.kubernetes.io/managed-by=xynergy"], event[
            "requestURI"
        ]


def test_scale_subresource(kube: Kube, operator: KopfRunner, namespace: str) -> None:
    create_xs(kube, namespace, "scaled", scaling={"maxInstances": 5})
    wait_ready(kube, namespace, "scaled")
    merge_patch(kube, xs_url(namespace, "scaled") + "/scale", {"spec": {"replicas": 3}})

    def scaled() -> bool:
        obj = get_xs(kube, namespace, "scaled")
        return (
            obj["status"].get("readyReplicas") == 3 and ready_condition(obj).get("status") == "True"
        )

    kube.wait_for("kubectl scale to reach 3 ready replicas", scaled, timeout=90)
    scale = kube.get(xs_url(namespace, "scaled") + "/scale").json()
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "xynergy.io/service=scaled"


def test_delete_removes_children(kube: Kube, operator: KopfRunner, namespace: str) -> None:
    create_xs(kube, namespace, "gone")
    wait_ready(kube, namespace, "gone")
    assert kube.delete(xs_url(namespace, "gone")).status_code == 200

    def children_gone() -> bool:
        svc = kube.get(f"/api/v1/namespaces/{namespace}/services/gone").status_code
        return deployment(kube, namespace, "gone") is None and svc == 404

    kube.wait_for("Deployment and Service to be deleted", children_gone, timeout=60)
    kube.wait_for(
        "the XynergyService to go (finalizer removed)",
        lambda: kube.get(xs_url(namespace, "gone")).status_code == 404,
    )


def test_orphan_keeps_children(kube: Kube, operator: KopfRunner, namespace: str) -> None:
    create_xs(kube, namespace, "kept", deletionPolicy="Orphan")
    wait_ready(kube, namespace, "kept")
    assert kube.delete(xs_url(namespace, "kept")).status_code == 200
    kube.wait_for(
        "the XynergyService to go",
        lambda: kube.get(xs_url(namespace, "kept")).status_code == 404,
    )
    dep = deployment(kube, namespace, "kept")
    assert dep is not None, "Orphan must keep the Deployment"
    assert not dep["metadata"].get("ownerReferences"), "released from its owner"
    assert kube.get(f"/api/v1/namespaces/{namespace}/services/kept").status_code == 200


def test_missing_secret_stalls_then_recovers(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    create_xs(
        kube,
        namespace,
        "needs-secret",
        env=[
            {"name": "DB_PASSWORD", "secretKeyRef": {"name": "db-credentials", "key": "password"}}
        ],
    )

    def stalled() -> bool:
        obj = get_xs(kube, namespace, "needs-secret")
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        return conds.get("Stalled", {}).get("status") == "True"

    kube.wait_for("Stalled on the missing Secret", stalled, timeout=60)
    ready = ready_condition(get_xs(kube, namespace, "needs-secret"))
    assert ready["status"] == "False"
    assert ready["reason"] == "SecretNotFound"
    assert "db-credentials" in ready["message"]
    assert "spec.env[0].secretKeyRef" in ready["message"]
    assert deployment(kube, namespace, "needs-secret") is None

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-credentials"},
        "stringData": {"password": "not-a-real-password"},
    }
    assert kube.create(f"/api/v1/namespaces/{namespace}/secrets", secret).status_code == 201
    obj = wait_ready(kube, namespace, "needs-secret", timeout=120)
    assert "not-a-real-password" not in json.dumps(obj)
    events = kube.get(f"/api/v1/namespaces/{namespace}/events").json()["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "needs-secret"}
    assert {"Failed", "Created", "Ready"} <= reasons
    assert not any("not-a-real-password" in (e.get("message") or "") for e in events)
