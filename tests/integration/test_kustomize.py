"""The kustomize base and overlays under manifests/: built with the real `kubectl kustomize`,
the base matching the chart (pod spec, RBAC, the security policies), the dev overlay applied to the local cluster
(operator Available under kwok), gke and cloudrun accepted by a server-side dry run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_support import Kube

ROOT = Path(__file__).parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("dev", "gke", "cloudrun")
NS = "xynergy-system"
POLICY_KINDS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}
ADMISSION = "/apis/admissionregistration.k8s.io/v1"


def kubectl(*args: str, cluster: Path | None = None) -> str:
    config = ["--kubeconfig", str(cluster)] if cluster else []
    done = subprocess.run(
        ["kubectl", *config, *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def build(path: str) -> dict[tuple[str, str], dict[str, Any]]:
    out = kubectl("kustomize", str(MANIFESTS / path))
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


def container(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return objs[("Deployment", "xynergy-operator")]["spec"]["template"]["spec"]["containers"][0]


def test_base_matches_the_chart(bindir: Path) -> None:
    """One operator: the base's pod spec and RBAC are what the chart renders by default."""
    chart = subprocess.run(
        [str(bindir / "helm"), "template", "xynergy", str(ROOT / "charts" / "xynergy"),
         "--namespace", NS, "--kube-version", "1.37.2"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(chart) if d}
    base = build("base")
    key = ("Deployment", "xynergy-operator")
    assert base[key]["spec"]["template"]["spec"] == rendered[key]["spec"]["template"]["spec"]
    assert base[key]["spec"]["replicas"] == rendered[key]["spec"]["replicas"] == 2
    for name in ("xynergy-operator", "xynergy-operator-cluster"):
        assert base[("ClusterRole", name)]["rules"] == rendered[("ClusterRole", name)]["rules"]
    assert ("ClusterKopfPeering", "xynergy-operator") in base
    assert "namespace" not in base[("ClusterKopfPeering", "xynergy-operator")]["metadata"]
    assert base[("PodDisruptionBudget", "xynergy-operator")]["spec"]["minAvailable"] == 1
    policies = sorted(k for k in base if k[0] in POLICY_KINDS)
    assert len(policies) == 14, policies  # 5 policies; 5 production bindings, 4 warn elsewhere
    assert policies == sorted(k for k in rendered if k[0] in POLICY_KINDS)
    for key in [*policies, ("ConfigMap", "xynergy-policy-params")]:
        assert base[key].get("spec") == rendered[key].get("spec"), key
        assert base[key].get("data") == rendered[key].get("data"), key


def test_overlays() -> None:
    dev, gke, cloudrun = (build(f"overlays/{o}") for o in OVERLAYS)
    key = ("Deployment", "xynergy-operator")
    assert dev[key]["spec"]["replicas"] == 1
    assert dev[key]["spec"]["strategy"] == {"type": "Recreate"}
    assert ("PodDisruptionBudget", "xynergy-operator") not in dev
    assert container(dev)["image"] == "ghcr.io/xynergy/operator:dev"
    env = {e["name"]: e.get("value") for e in container(dev)["env"]}
    assert env["XYNERGY_DRIFT_CHECK_SECONDS"] == "60"
    sa = gke[("ServiceAccount", "xynergy-operator")]["metadata"]
    assert "iam.gke.io/gcp-service-account" in sa["annotations"]
    assert gke[key]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    env = {e["name"]: e.get("value") for e in container(cloudrun)["env"]}
    assert env["XYNERGY_SCALING_GCP_PROJECT"] == "PROJECT_ID"
    assert env["XYNERGY_PEERING"] == "xynergy-operator"


def _available(kube: Kube) -> bool:
    dep = kube.get(f"/apis/apps/v1/namespaces/{NS}/deployments/xynergy-operator").json()
    conds = {c["type"]: c["status"] for c in (dep.get("status") or {}).get("conditions", [])}
    return conds.get("Available") == "True"


@pytest.fixture
def cleanup(kube: Kube) -> Any:
    yield
    # the base's policies bind cluster-wide (Deny in production namespaces): never leave them
    for kind, name in build("base"):
        if kind in POLICY_KINDS:
            path = f"{ADMISSION}/{POLICY_KINDS[kind]}/{name}"
            kube.delete(path)
            assert kube.get(path).status_code == 404, path
    kube.delete(f"/api/v1/namespaces/{NS}")
    kube.delete("/apis/kopf.dev/v1/clusterkopfpeerings/xynergy-operator")
    for name in ("xynergy-operator", "xynergy-operator-cluster"):
        kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")
        kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")


def test_apply_on_the_cluster(cluster: Path, kube: Kube, cleanup: None) -> None:
    # CRDs may already be there (other tests apply crds/): server-side apply takes them over
    apply = ["apply", "--server-side", "--force-conflicts", "--field-manager=kustomize-test"]
    # the documented order: CRDs first (the base holds a ClusterKopfPeering object)
    kubectl(*apply, "-k", str(MANIFESTS / "base" / "crds"), cluster=cluster)
    kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=xynergy",
            cluster=cluster)  # fmt: skip
    kubectl(*apply, "-k", str(MANIFESTS / "overlays" / "dev"), cluster=cluster)
    kube.wait_for("the dev overlay's operator Available (kwok)", lambda: _available(kube))
    sa = kube.get(f"/api/v1/namespaces/{NS}/serviceaccounts/xynergy-operator")
    assert sa.status_code == 200
    for kind, plural in POLICY_KINDS.items():  # the paths the cleanup deletes
        got = kube.get(f"{ADMISSION}/{plural}/xynergy-resources-set")
        assert got.status_code == 200, kind
    binding = f"{ADMISSION}/validatingadmissionpolicybindings/xynergy-resources-set"
    assert kube.get(binding).json()["spec"]["validationActions"] == ["Deny"]
    for overlay in ("gke", "cloudrun"):
        out = kubectl(*apply, "--dry-run=server", "-k", str(MANIFESTS / "overlays" / overlay),
                      cluster=cluster)  # fmt: skip
        assert "deployment.apps/xynergy-operator serverside-applied (server dry run)" in out
