"""Integration fixtures: a real local control plane (etcd, kube-apiserver, controller-manager,
scheduler, kwok) started once per session from the binaries hack/controlplane builds.

Set XYNERGY_TEST_KUBECONFIG to run against an already-running cluster instead.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.cloudrun import FakeCloudRun
from kopf.testing import KopfRunner
from kube_support import Kube, delete_namespace, run_operator
from reaper import run_after_parent

from controllers.devcluster import DevCluster, ensure_binaries, repo_root
from controllers.devcluster.manifests import apply_files, wait_established

pytest_plugins = [
    "prometheus",  # a real Prometheus: tests/integration/prometheus.py
    "emulators",  # the Firebase Auth emulator, one per session
]


@pytest.fixture(scope="session")
def bindir() -> Path:
    return ensure_binaries()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, bindir: Path) -> Iterator[Path]:
    """The admin kubeconfig of a running cluster (started here unless one is given)."""
    given = os.environ.get("XYNERGY_TEST_KUBECONFIG")
    if given:
        yield Path(given)
        return
    dev = DevCluster(workdir=tmp_path_factory.mktemp("cluster"), bindir=bindir, nodes=2)
    # a SIGKILLed test process runs no finally: `dev down` then stops the cluster (state.json
    # lists each process as it is spawned, restarted ones too)
    xynergy = str(Path(sys.executable).with_name("xynergy"))
    down = run_after_parent([xynergy, "dev", "down", "--workdir", str(dev.workdir)])
    try:
        yield dev.start().kubeconfig
    finally:
        dev.stop()
        down.kill()


@pytest.fixture(scope="session")
def kube(cluster: Path) -> Iterator[Kube]:
    client = Kube.from_kubeconfig(cluster)
    yield client
    client.http.close()


@pytest.fixture(scope="session")
def crds_installed(cluster: Path) -> list[str]:
    """Install crds/ once per session and wait until every CRD is Established."""
    paths = sorted((repo_root() / "crds").glob("*.yaml"))
    names = apply_files(kubeconfig=cluster, paths=paths)
    wait_established(kubeconfig=cluster, names=names)
    return names


@pytest.fixture(scope="session")
def cloudrun_session() -> Iterator[FakeCloudRun]:
    """One fake Cloud Run Admin API for the session's operators (operations take 100 ms)."""
    with FakeCloudRun(operation_delay=0.1) as fake:
        yield fake
        assert not fake.crashes, fake.crashes[0]


@pytest.fixture(scope="module")
def operator(
    cluster: Path, crds_installed: list[str], cloudrun_session: FakeCloudRun
) -> Iterator[KopfRunner]:
    """One operator per test module (modules never overlap, so operators never compete)."""
    with run_operator(cluster, XYNERGY_CLOUDRUN_ENDPOINT=cloudrun_session.endpoint) as runner:
        yield runner


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    resp = kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    assert resp.status_code == 201, resp.text
    kube.wait_for(
        "default ServiceAccount in the test namespace",
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").status_code == 200,
    )
    yield name
    delete_namespace(kube, name)


@pytest.fixture(scope="session")
def audit_log(cluster: Path) -> Path:
    """The apiserver's audit log of writes (only for a cluster these tests started)."""
    path = cluster.parent.parent / "logs" / "audit.log"
    if not path.exists():
        pytest.skip("no audit log: the cluster was not started by the tests")
    return path
