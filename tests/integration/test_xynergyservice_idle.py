"""No hot loop: with 50 Ready XynergyServices and nothing changing, the operator makes zero
write requests to the apiserver over a minute (counted in the apiserver's audit log)."""

from __future__ import annotations

import time
from pathlib import Path

from kopf.testing import KopfRunner
from kube_support import Kube, audit_lines, writes_by
from test_xynergyservice import create_xs, get_xs, ready_condition, xs_url

N = 50
IDLE_SECONDS = 60


def test_no_writes_when_idle(
    kube: Kube, operator: KopfRunner, namespace: str, audit_log: Path
) -> None:
    for i in range(N):
        create_xs(kube, namespace, f"idle-{i:02d}")

    def all_ready() -> bool:
        items = kube.get(xs_url(namespace)).json()["items"]
        return len(items) == N and all(
            ready_condition(o).get("status") == "True"
            and o["status"].get("observedGeneration") == o["metadata"]["generation"]
            for o in items
        )

    kube.wait_for(f"{N} XynergyServices Ready", all_ready, timeout=240)
    assert writes_by(audit_log, "xynergy-operator"), "the operator's writes are audited"
    # let in-flight status updates and the audit batch (1 s) settle, then measure a quiet minute
    time.sleep(5)
    start_line = audit_lines(audit_log)
    time.sleep(IDLE_SECONDS)
    time.sleep(2)  # the audit backend flushes in 1 s batches
    writes = writes_by(audit_log, "xynergy-operator", since_line=start_line)
    # objects of earlier tests may still be finalizing in other namespaces: judge this one
    writes = [w for w in writes if w["objectRef"].get("namespace") in (namespace, None)]
    summary = [
        (w["verb"], w["objectRef"].get("resource"), w["objectRef"].get("name")) for w in writes
    ]
    assert writes == [], f"{len(writes)} writes while idle: {summary[:10]}"
    assert ready_condition(get_xs(kube, namespace, "idle-00"))["status"] == "True"
