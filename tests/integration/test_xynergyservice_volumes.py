"""spec.volumes on the real apiserver: the CRD refuses a mount over a system directory naming
the field; a XynergyService with a Secret volume gets a Deployment with the volume and its
read-only mount; updating the mounted Secret leaves the Deployment alone (the kubelet updates
the files in place), even when the service is converged again after the change."""

from __future__ import annotations

import base64

import pytest
from kopf.testing import KopfRunner
from kube_support import Kube
from test_xynergyservice import create_xs, deployment, merge_patch, wait_ready, xs_url

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

VOLUME = {
    "name": "jwt",
    "mountPath": "/var/run/xynergy/jwt",
    "secret": {"secretName": "jwt", "items": [{"key": "secret", "path": "secret"}]},
}


def test_the_crd_refuses_a_mount_over_a_system_directory(
    kube: Kube, crds_installed: list[str], namespace: str
) -> None:
    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": "bad"},
        "spec": {"image": "reg.example/app:1", "volumes": [{**VOLUME, "mountPath": "/etc"}]},
    }
    resp = kube.create(xs_url(namespace), body)
    assert resp.status_code == 422, resp.text
    causes = resp.json()["details"]["causes"]
    assert any(
        c["field"] == "spec.volumes[0].mountPath" and "system directory" in c["message"]
        for c in causes
    ), causes


def test_mounted_secret_rotation_does_not_touch_the_deployment(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    secret = {"metadata": {"name": "jwt"}, "stringData": {"secret": "old-jwt-secret-0001"}}
    assert kube.create(secrets, secret).status_code == 201
    create_xs(kube, namespace, "gw", volumes=[VOLUME])
    wait_ready(kube, namespace, "gw")
    dep = deployment(kube, namespace, "gw")
    assert dep is not None
    pod = dep["spec"]["template"]["spec"]
    assert pod["volumes"][0]["name"] == "jwt"
    assert pod["volumes"][0]["secret"]["secretName"] == "jwt"
    assert pod["volumes"][0]["secret"]["items"] == [{"key": "secret", "path": "secret"}]
    mount = {"name": "jwt", "mountPath": "/var/run/xynergy/jwt", "readOnly": True}
    assert pod["containers"][0]["volumeMounts"] == [mount]
    labels = kube.get(f"{secrets}/jwt").json()["metadata"].get("labels") or {}
    assert "xynergy.io/env-source" not in labels  # not watched: its changes are not ours

    new = base64.b64encode(b"new-jwt-secret-0002").decode()
    merge_patch(kube, f"{secrets}/jwt", {"data": {"secret": new}})
    # Converge the service after the change: a spec edit the Deployment does not carry
    # (a route), so anything that moves the Deployment below came from the Secret.
    routes = [{"prefix": "/api/v2/gw"}]
    merge_patch(kube, xs_url(namespace, "gw"), {"spec": {"routes": routes}})
    converged = wait_ready(kube, namespace, "gw")
    assert converged["metadata"]["generation"] == converged["status"]["observedGeneration"] > 1
    after = deployment(kube, namespace, "gw")
    assert after is not None
    assert after["spec"]["template"] == dep["spec"]["template"]  # no config hash, no roll
