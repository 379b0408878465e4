"""Killing the operator while Cloud Run is still deploying, then starting it again, creates no
duplicate revision. Its own module: no other operator may run while it does."""

from __future__ import annotations

from pathlib import Path

from fakes.cloudrun import FakeCloudRun
from kube_support import Kube, run_operator
from test_xynergyservice import wait_ready
from test_xynergyservice_cloudrun import (
    PROJECT,
    REGION,
    create_cloudrun_xs,
    service_exists,
    unique,
)


def test_restart_mid_operation_creates_no_duplicate_revision(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str
) -> None:
    name = unique("restart")
    with FakeCloudRun(operation_delay=0.1) as fake:
        env = {"XYNERGY_CLOUDRUN_ENDPOINT": fake.endpoint}
        with fake.operations_held(), run_operator(cluster, **env):
            create_cloudrun_xs(kube, namespace, name)
            kube.wait_for(
                "the create to reach Cloud Run",
                lambda: service_exists(fake, name),
                timeout=60,
            )
            # the operator is gone while Cloud Run is still deploying
        with run_operator(cluster, **env):
            obj = wait_ready(kube, namespace, name, timeout=120)
            # one create, never updated, one revision (other services may exist: objects of
            # earlier tests whose namespaces are still terminating are resumed here too)
            assert fake.revisions_of(PROJECT, REGION, name) == [f"{name}-00001"]
            path = f"projects/{PROJECT}/locations/{REGION}/services/{name}"
            with fake.state.lock:
                assert fake.state.services[path].generation == 1
            assert obj["status"]["latestReadyRevision"] == f"{name}-00001"
            # clean up while an operator can still run the finalizer
            url = f"/apis/xynergy.io/v1alpha1/namespaces/{namespace}/xynergyservices/{name}"
            kube.delete(url)
            kube.wait_for(
                "the XynergyService to be finalized", lambda: kube.get(url).status_code == 404
            )
        assert not fake.crashes
