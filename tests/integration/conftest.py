"""Integration fixtures: a real local control plane (etcd, kube-apiserver, controller-manager,
scheduler, kwok) started once per session from the binaries hack/controlplane builds.

Set XYNERGY_TEST_KUBECONFIG to run against an already-running cluster instead.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fakes.cloudrun import FakeCloudRun
from kopf.testing import KopfRunner

from controllers.devcluster import DevCluster, ensure_binaries, repo_root
from controllers.devcluster.manifests import apply_files, wait_established

pytest_plugins = ["prometheus"]  # a real Prometheus: tests/integration/prometheus.py


@dataclass
class Kube:
    """A thin, explicit HTTP client for the apiserver (what kubectl does, without kubectl)."""

    kubeconfig: Path
    http: httpx.Client

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Kube:
        cfg = yaml.safe_load(path.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
        ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        return cls(path, httpx.Client(base_url=cluster["server"], verify=ctx, timeout=30))

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def create(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST with strict field validation, as `kubectl apply` does by default."""
        return self.http.post(path, json=body, params={"fieldValidation": "Strict"})

    def delete(self, path: str, **params: Any) -> httpx.Response:
        return self.http.delete(path, params=params)

    def wait_for(self, what: str, check: Callable[[], bool], *, timeout: float = 60.0) -> None:
        """Poll `check` until true (with backoff); fail with `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        pytest.fail(f"timed out after {timeout}s waiting for {what}")


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
    state = dev.start()
    try:
        yield state.kubeconfig
    finally:
        dev.stop()


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


@contextmanager
def run_operator(cluster: Path, **env: str) -> Iterator[KopfRunner]:
    """The operator as `python -m controllers` runs it (its own identity), under KopfRunner."""
    kubeconfig = cluster.with_name("operator.kubeconfig")
    env = {"KUBECONFIG": str(kubeconfig if kubeconfig.exists() else cluster), **env}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    args = ["run", "-A", "--standalone", "-m", "controllers.runtime"]
    args += ["-m", "controllers.xynergyservice.handlers"]
    try:
        with KopfRunner(args, timeout=60) as runner:
            yield runner
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert runner.exception is None, runner.exception


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
    kube.delete(f"/api/v1/namespaces/{name}")
    # let finalizers run while this module's operator is still up (bounded; not an assertion)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and kube.get(f"/api/v1/namespaces/{name}").status_code == 200:
        time.sleep(0.5)


@pytest.fixture(scope="session")
def audit_log(cluster: Path) -> Path:
    """The apiserver's audit log of writes (only for a cluster these tests started)."""
    path = cluster.parent.parent / "logs" / "audit.log"
    if not path.exists():
        pytest.skip("no audit log: the cluster was not started by the tests")
    return path


WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def audit_events(
    audit_log: Path, user: str, *, verbs: frozenset[str], since_line: int = 0
) -> list[dict[str, Any]]:
    """Audit events of `user` with one of `verbs` after line `since_line`: one per request
    (a watch is counted when its response starts, anything else when it completes)."""
    out = []
    with audit_log.open() as fh:
        for i, line in enumerate(fh):
            if i < since_line or not line.strip():
                continue
            event = json.loads(line)
            stage = "ResponseStarted" if event.get("verb") == "watch" else "ResponseComplete"
            if (
                event.get("user", {}).get("username") == user
                and event.get("stage") == stage
                and event.get("verb") in verbs
            ):
                out.append(event)
    return out


def writes_by(audit_log: Path, user: str, *, since_line: int = 0) -> list[dict[str, Any]]:
    """Write requests by `user` in the audit log after line `since_line`."""
    return audit_events(audit_log, user, verbs=WRITE_VERBS, since_line=since_line)


def audit_lines(audit_log: Path) -> int:
    with audit_log.open() as fh:
        return sum(1 for _ in fh)
