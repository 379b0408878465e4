"""Helpers of the integration tests that test modules import by name (`from kube_support import
Kube`): a thin apiserver client, the operator under KopfRunner, and audit-log readers.

They live here, not in conftest.py: several folders have a conftest.py of their own, and
`from conftest import ...` resolves to whichever was imported last.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kopf.testing import KopfRunner


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


ALL_KINDS = ("xynergyservice", "scalingpolicy", "rollout", "oauthconnection")
OUR_PLURALS = ("xynergyservices", "rollouts", "oauthconnections", "scalingpolicies")
"""Our kinds that may carry the operator's finalizer."""

_operators: list[Callable[[], bool]] = []
"""Per operator this test process started: whether it still runs."""


def track_operator(alive: Callable[[], bool]) -> None:
    """Count an operator this test process started until `alive()` turns False."""
    _operators.append(alive)


def operator_running() -> bool:
    """Whether an operator this test process started still runs (one to run finalizers)."""
    _operators[:] = [alive for alive in _operators if alive()]
    return bool(_operators)


def delete_namespace(kube: Kube, name: str, *, timeout: float = 60.0) -> None:
    """Delete a test namespace: our kinds first, so their finalizers run while an operator
    of this test process is still up (waited for at most `timeout`, not an assertion), then
    the namespace. What of ours is left then (no operator runs any more: a Rollout deleted
    mid-rollout, a Cloud Run XynergyService; or one still held at `timeout`) loses its
    finalizers, so the namespace never stays Terminating and teardown never waits for an
    operator that is gone. The rest of the namespace (pods, events) goes on without us: the
    namespace controller takes ~10 s to reach custom resources, so it is not waited for."""
    base = f"/apis/xynergy.io/v1alpha1/namespaces/{name}"
    for plural in OUR_PLURALS:
        kube.delete(f"{base}/{plural}")
    kube.delete(f"/api/v1/namespaces/{name}")
    deadline = time.monotonic() + timeout
    while operator_running() and time.monotonic() < deadline and _listed(kube, base):
        time.sleep(0.2)
    for path in _listed(kube, base):
        kube.http.patch(
            path,
            json={"metadata": {"finalizers": None}},
            headers={"Content-Type": "application/merge-patch+json"},
        )


def _listed(kube: Kube, base: str) -> list[str]:
    """Paths of our objects left under `base` (a namespace) that carry a finalizer."""
    paths = []
    for plural in OUR_PLURALS:
        r = kube.get(f"{base}/{plural}")
        if r.status_code != 200:
            continue
        for item in r.json().get("items") or []:
            if item["metadata"].get("finalizers"):
                paths.append(f"{base}/{plural}/{item['metadata']['name']}")
    return paths


@contextmanager
def run_operator(
    cluster: Path, *, kinds: Sequence[str] = ("xynergyservice",), **env: str
) -> Iterator[KopfRunner]:
    """The operator as `python -m controllers` runs it (its own identity), under KopfRunner,
    with the handlers of `kinds` (ALL_KINDS for the whole operator) and `env` set meanwhile."""
    kubeconfig = cluster.with_name("operator.kubeconfig")
    env = {"KUBECONFIG": str(kubeconfig if kubeconfig.exists() else cluster), **env}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    args = ["run", "-A", "--standalone", "-m", "controllers.runtime"]
    for kind in kinds:
        args += ["-m", f"controllers.{kind}.handlers"]
    up = [True]
    track_operator(lambda: up[0])
    try:
        with KopfRunner(args, timeout=60) as runner:
            yield runner
    finally:
        up[0] = False
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert runner.exception is None, runner.exception


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
