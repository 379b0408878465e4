"""Helpers of the Rollout integration tests: the operator as a real process (`python -m
controllers`, so a test can kill it), Rollout objects read with the status invariants checked
on every read, and the fake Cloud Run service's traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.cloudrun import FakeCloudRun
from kube_support import Kube, track_operator
from reaper import reap_with_parent
from test_xynergyservice_cloudrun import PROJECT, REGION

from apis.conditions import Condition, check_invariants
from controllers.devcluster import repo_root

GROUP_PATH = "/apis/xynergy.io/v1alpha1"


def rollout_url(ns: str, name: str = "") -> str:
    return f"{GROUP_PATH}/namespaces/{ns}/rollouts" + (f"/{name}" if name else "")


class Operator:
    """`python -m controllers` in its own process group, logging to a file."""

    def __init__(self, cluster: Path, log: Path, **env: str) -> None:
        kubeconfig = cluster.with_name("operator.kubeconfig")
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig if kubeconfig.exists() else cluster),
            "XYNERGY_ROLLOUT_POLL_SECONDS": "0.5",
            **env,
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controllers"],
                cwd=repo_root(),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        reap_with_parent(self.proc.pid)
        track_operator(lambda proc=self.proc: proc.poll() is None)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last status write (a crash)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def operator_process(cluster: Path, log: Path, **env: str) -> Iterator[Operator]:
    op = Operator(cluster, log, **env).start()
    try:
        yield op
    finally:
        op.stop()


def create_rollout(
    kube: Kube, ns: str, name: str, *, target: str, strategy: dict[str, Any], **spec: Any
) -> None:
    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {"targetRef": {"name": target}, "strategy": strategy, **spec},
    }
    resp = kube.create(rollout_url(ns), body)
    assert resp.status_code == 201, resp.text


def delete_and_wait_gone(kube: Kube, ns: str) -> None:
    """Delete the namespace's Rollouts and XynergyServices and wait until their finalizers
    have run: for a test whose operator stops before the namespace fixture cleans up."""
    urls = [rollout_url(ns), f"{GROUP_PATH}/namespaces/{ns}/xynergyservices"]
    for url in urls:
        kube.delete(url)
    kube.wait_for(
        f"the Rollouts and XynergyServices of {ns} to be gone",
        lambda: not any(kube.get(url).json().get("items") for url in urls),
    )


def get_rollout(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    resp = kube.get(rollout_url(ns, name))
    assert resp.status_code == 200, resp.text
    obj: dict[str, Any] = resp.json()
    status = obj.get("status") or {}
    if status.get("conditions"):
        conditions = [Condition.model_validate(c) for c in status["conditions"]]
        problems = check_invariants(
            generation=obj["metadata"].get("generation"),
            observed_generation=status.get("observedGeneration"),
            conditions=conditions,
        )
        assert not problems, problems
    return obj


def wait_rollout(
    kube: Kube,
    ns: str,
    name: str,
    what: str,
    check: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 90,
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ok() -> bool:
        found.update(get_rollout(kube, ns, name))
        return check(found.get("status") or {})

    kube.wait_for(f"Rollout {ns}/{name}: {what}", ok, timeout=timeout)
    return found


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("phase") == phase


def service_path(name: str) -> str:
    return f"projects/{PROJECT}/locations/{REGION}/services/{name}"


def served(fake: FakeCloudRun, name: str) -> list[tuple[str, int, str]]:
    """The traffic Cloud Run serves (trafficStatuses): (revision or LATEST, percent, tag)."""
    with fake.state.lock:
        svc = fake.state.services[service_path(name)]
        if svc.reconciling:
            return []
        return [
            (t.revision.rpartition("/")[2] or "LATEST", t.percent, t.tag)
            for t in svc.traffic_statuses
        ]


def revisions(fake: FakeCloudRun, name: str) -> list[str]:
    return fake.revisions_of(PROJECT, REGION, name)


def events_of(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    resp = kube.get(
        f"/api/v1/namespaces/{ns}/events",
        fieldSelector=f"involvedObject.kind=Rollout,involvedObject.name={name}",
    )
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items
