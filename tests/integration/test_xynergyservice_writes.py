"""The write budget: one XynergyService from creation to Ready costs the apiserver at most 5
writes by the operator (Deployment, Service, two status patches, one Event), counted in the
apiserver's audit log; and the first status is still written while it progresses (kstatus
reads an object without status as Current, so that write is kept)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kopf.testing import KopfRunner
from kube_support import Kube, audit_lines, writes_by
from test_xynergyservice import watch_ready, xs_url

WRITE_BUDGET = 5
ADMIN = "xynergy-admin"  # the tests' own identity (controllers/devcluster/cluster.py)


def _marker_logged(audit_log: Path, ns: str, since_line: int) -> bool:
    return any(
        w["objectRef"].get("resource") == "configmaps"
        and w["objectRef"].get("namespace") == ns
        and w["objectRef"].get("name") == "marker"
        for w in writes_by(audit_log, ADMIN, since_line=since_line)
    )


def test_create_to_ready_within_the_write_budget(
    kube: Kube, operator: KopfRunner, namespace: str, audit_log: Path
) -> None:
    start = audit_lines(audit_log)
    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": "budget"},
        "spec": {"image": "reg.example/app:1"},
    }
    resp = kube.create(xs_url(namespace), body)
    assert resp.status_code == 201, resp.text
    since = resp.json()["metadata"]["resourceVersion"]
    seen = watch_ready(kube, namespace, "budget", since, until="Ready", timeout=90)
    assert seen[-1] == ("True", "Ready"), seen
    assert seen[0][0] != "True", f"a status was written while it progressed: {seen}"

    # The operator posts its events right after the status write that made it Ready; a write
    # of ours made after Ready was seen, once in the audit log, closes the window behind them.
    marker = {"metadata": {"name": "marker"}, "data": {}}
    assert kube.create(f"/api/v1/namespaces/{namespace}/configmaps", marker).status_code == 201
    kube.wait_for(
        "the marker in the audit log",
        lambda: _marker_logged(audit_log, namespace, start),
        timeout=30,
    )
    writes = [
        w
        for w in writes_by(audit_log, "xynergy-operator", since_line=start)
        if w["objectRef"].get("namespace") == namespace
    ]
    by_kind = Counter(
        f"{w['verb']} {w['objectRef'].get('resource')}"
        + (f"/{w['objectRef']['subresource']}" if w["objectRef"].get("subresource") else "")
        for w in writes
    )
    assert len(writes) <= WRITE_BUDGET, dict(by_kind)
    assert by_kind["patch xynergyservices/status"] >= 1, dict(by_kind)
