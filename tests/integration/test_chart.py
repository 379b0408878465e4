"""The helm chart installs on the local cluster: kubeVersion is satisfied (the apiserver build
is version-stamped), CRDs and RBAC are accepted, and the operator Deployment becomes Available
on a kwok node."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kube_support import Kube

CHART = Path(__file__).parents[2] / "charts" / "xynergy"


def helm(bindir: Path, cluster: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bindir / "helm"), "--kubeconfig", str(cluster), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_lint(bindir: Path, cluster: Path) -> None:
    done = helm(bindir, cluster, "lint", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_and_uninstall(bindir: Path, cluster: Path, kube: Kube) -> None:
    version = kube.get("/version").json()
    assert version["gitVersion"] == "v1.37.2", "an unstamped build breaks kubeVersion checks"
    ns = "xynergy-chart"
    done = helm(
        bindir,
        cluster,
        "install",
        "xy",
        str(CHART),
        "--namespace",
        ns,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        dep = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/xy-operator").json()
        conds = {c["type"]: c["status"] for c in dep["status"]["conditions"]}
        assert conds["Available"] == "True"
        crd = kube.get(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/xynergyservices.xynergy.io"
        )
        assert crd.status_code == 200
        role = kube.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/xy-operator").json()
        assert any("xynergyservices" in r.get("resources", []) for r in role["rules"])
    finally:
        down = helm(bindir, cluster, "uninstall", "xy", "--namespace", ns, "--wait")
        assert down.returncode == 0, down.stdout + down.stderr
        kube.delete(f"/api/v1/namespaces/{ns}")
    assert kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/xy-operator").status_code == 404
