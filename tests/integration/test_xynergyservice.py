"""XynergyService on the Kubernetes backend, end to end: a real apiserver, controller-manager,
scheduler and kwok nodes, and the operator running under kopf's KopfRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from kopf.testing import KopfRunner
from kube_support import Kube, audit_events

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


def merge_patch(kube: Kube, path: str, body: dict[str, Any], *, kind: str = "merge") -> None:
    """A JSON merge patch, or with kind="strategic-merge" what `kubectl patch` does by default
    (lists of containers and env merge by name)."""
    resp = kube.http.patch(
        path,
        content=json.dumps(body),
        headers={"Content-Type": f"application/{kind}-patch+json"},
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


def _required_secrets(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The Secrets (name -> keys) the samples' env and Secret volumes need and do not mark
    optional: made by the user (or a secret manager) before applying a sample, like its
    ServiceAccount."""
    out: dict[str, dict[str, str]] = {}
    for doc in docs:
        spec = doc.get("spec", {})
        for env in spec.get("env") or []:
            ref = env.get("secretKeyRef")
            if ref and not ref.get("optional"):
                out.setdefault(ref["name"], {})[ref["key"]] = "not-a-real-value"
        for volume in spec.get("volumes") or []:
            secret = volume.get("secret")
            if secret and not secret.get("optional"):
                keys = out.setdefault(secret["secretName"], {})
                keys.update({item["key"]: "not-a-real-value" for item in secret.get("items") or []})
    return out


def test_every_sample_becomes_ready(kube: Kube, operator: KopfRunner, namespace: str) -> None:
    samples = [
        doc
        for path in sorted(SAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "XynergyService"
    ]
    for name, data in _required_secrets(samples).items():
        secret = {"metadata": {"name": name}, "stringData": data}
        assert kube.create(f"/api/v1/namespaces/{namespace}/secrets", secret).status_code == 201
    accounts = {(d["spec"].get("kubernetes") or {}).get("serviceAccountName") for d in samples}
    for account in accounts - {None}:
        sa = {"metadata": {"name": account}}
        assert kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", sa).status_code == 201
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


def test_child_watches_are_filtered_by_the_apiserver(
    kube: Kube, operator: KopfRunner, namespace: str, audit_log: Path
) -> None:
    """The operator asks the apiserver for its own Deployments and Services only (a label
    selector on the list and the watch), so a cluster's other children never reach it; the
    hand-edit and deleted-Service tests show the filtered watches still see ours."""
    create_xs(kube, namespace, "watched")
    wait_ready(kube, namespace, "watched")
    requests = [
        e
        for e in audit_events(audit_log, "xynergy-operator", verbs=frozenset({"list", "watch"}))
        if e.get("objectRef", {}).get("resource") in ("deployments", "services")
    ]
    watched = {e["objectRef"]["resource"] for e in requests if e["verb"] == "watch"}
    # the dev cluster's audit policy records Deployment list/watch requests (Services too
    # once it records them); every one recorded must carry the selector: the watches exactly
    # it, a one-off list (a Rollout's `retire`) it and a narrower label beside it
    assert "deployments" in watched, requests
    for event in requests:
        query = parse_qs(urlsplit(event["requestURI"]).query)
        selector = (query.get("labelSelector") or [""])[0].split(",")
        if event["verb"] == "watch":
            assert selector == ["app.kubernetes.io/managed-by=xynergy"], event["requestURI"]
        else:
            assert "app.kubernetes.io/managed-by=xynergy" in selector, event["requestURI"]


def test_scale_subresource(kube: Kube, operator: KopfRunner, namespace: str) -> None:
    create_xs(kube, namespace, "scaled", scaling={"maxInstances": 5})
    wait_ready(kube, namespace, "scaled")
    before = get_xs(kube, namespace, "scaled")
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
    # A new count is not a new revision: the generation moved, the revision serving did not,
    # and no Updated event says otherwise (the Deployment's own events tell the scaling).
    after = get_xs(kube, namespace, "scaled")
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    for field in ("latestCreatedRevision", "latestReadyRevision"):
        assert after["status"][field] == before["status"][field] == "scaled-00001", field
    items = kube.get(f"/api/v1/namespaces/{namespace}/events").json()["items"]
    reasons = [e["reason"] for e in items if e["involvedObject"].get("name") == "scaled"]
    assert reasons.count("Updated") == 0, reasons
    # Every version of the object since the scale (the apiserver replays them to a watch
    # from the resourceVersion before it) kept Ready True: it never flapped while scaling.
    seen = kube.get(
        xs_url(namespace),
        watch="1",
        resourceVersion=before["metadata"]["resourceVersion"],
        fieldSelector="metadata.name=scaled",
        timeoutSeconds="2",
    )
    versions = [json.loads(line)["object"] for line in seen.text.splitlines() if line]
    assert len(versions) >= 2, "the scale and at least one status write"
    assert [ready_condition(v).get("status") for v in versions] == ["True"] * len(versions), [
        (ready_condition(v).get("reason"), ready_condition(v).get("message")) for v in versions
    ]


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


def test_hand_edited_env_value_is_corrected(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    """Issue 11: "1000" -> "1k" is a different env value (it used to compare as the same
    quantity, so the edit stayed)."""
    create_xs(kube, namespace, "envdrift", env=[{"name": "LIMIT", "value": "1000"}])
    wait_ready(kube, namespace, "envdrift")
    dep_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/envdrift"
    edit = {"name": "app", "env": [{"name": "LIMIT", "value": "1k"}]}
    body = {"spec": {"template": {"spec": {"containers": [edit]}}}}
    merge_patch(kube, dep_path, body, kind="strategic-merge")

    def env_value() -> str:
        dep = deployment(kube, namespace, "envdrift") or {}
        env = dep["spec"]["template"]["spec"]["containers"][0].get("env") or []
        return next(e.get("value", "") for e in env if e["name"] == "LIMIT")

    kube.wait_for("the env hand edit to be taken back", lambda: env_value() == "1000", timeout=60)


def watch_ready(
    kube: Kube, ns: str, name: str, since: str, *, until: str, timeout: float
) -> list[tuple[str, str]]:
    """(status, reason) of the Ready condition in every change of the object after
    resourceVersion `since`, read from a watch, until a Ready condition with reason `until`
    follows a not-Ready one (or the watch times out)."""
    seen: list[tuple[str, str]] = []
    params = {
        "watch": "1",
        "resourceVersion": since,
        "fieldSelector": f"metadata.name={name}",
        "timeoutSeconds": str(int(timeout)),
    }
    with kube.http.stream("GET", xs_url(ns), params=params, timeout=timeout + 10) as resp:
        for line in resp.iter_lines():
            if not line:
                continue
            obj = json.loads(line)["object"]
            cond = ready_condition(obj)
            if cond and (not seen or seen[-1] != (cond["status"], cond["reason"])):
                seen.append((cond["status"], cond["reason"]))
            if len(seen) >= 2 and seen[-1][1] == until and seen[-2][0] != "True":
                break
    return seen


def test_deleted_service_is_restored_at_once_and_ready_drops_meanwhile(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    """Issue 20 item 1: a deleted owned Service came back only with the 10-minute drift check
    and Ready stayed True meanwhile. The Service watch brings it back at once; Ready is False
    while it was missing."""
    create_xs(kube, namespace, "svcgone")
    obj = wait_ready(kube, namespace, "svcgone")
    svc_path = f"/api/v1/namespaces/{namespace}/services/svcgone"
    old_uid = kube.get(svc_path).json()["metadata"]["uid"]
    assert kube.delete(svc_path).status_code == 200

    def restored() -> bool:
        resp = kube.get(svc_path)
        return resp.status_code == 200 and resp.json()["metadata"]["uid"] != old_uid

    kube.wait_for("the Service to be recreated", restored, timeout=30)
    seen = watch_ready(
        kube, namespace, "svcgone", obj["metadata"]["resourceVersion"], until="Ready", timeout=60
    )
    assert ("False", "ChildRecreated") in seen, seen
    assert seen[-1] == ("True", "Ready"), seen
    owner = kube.get(svc_path).json()["metadata"]["ownerReferences"][0]
    assert owner["uid"] == obj["metadata"]["uid"]
