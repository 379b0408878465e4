"""Release verification end to end: the operator (its own process) delivers a new image to a
Kubernetes-backed XynergyService (kwok Pods) and sends the Rollout's smoke checks to a small
real HTTP upstream standing in for the new revision (`XYNERGY_ROLLOUT_VERIFICATION_URL`: no
cluster DNS here). A failed check stops the rollout exactly as a failed analysis does: phase
RolledBack, `Stalled` with reason VerificationFailed, the evidence in status and in a Warning
Event; before traffic the new revision never gets any, before promotion the target keeps its
image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_support import Kube
from test_rollout_kubernetes import Upstream
from test_rollout_support import (
    Operator,
    create_rollout,
    events_of,
    operator_process,
    phase_is,
    rollout_url,
    wait_rollout,
)
from test_xynergyservice import create_xs, deployment, get_xs, merge_patch, wait_ready
from test_xynergyservice_cloudrun import unique

pytestmark = pytest.mark.integration

SMOKE = {
    "smoke": [
        {
            "name": "items",
            "path": "/items",
            "expectedStatus": 200,
            "expectedBody": [{"path": "ok", "equals": "true"}],
            "timeoutSeconds": 5,
        }
    ]
}


@pytest.fixture(scope="module")
def revision() -> Iterator[Upstream]:
    upstream = Upstream()
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture(scope="module")
def verifying_operator(
    cluster: Path,
    crds_installed: list[str],
    revision: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("rollout-verify-op") / "operator.log"
    with operator_process(cluster, log, XYNERGY_ROLLOUT_VERIFICATION_URL=revision.url) as op:
        yield op


def start(kube: Kube, ns: str) -> str:
    svc = unique("crm")
    create_xs(kube, ns, svc, backend="kubernetes", port=8080)
    wait_ready(kube, ns, svc)
    steps = [{"setWeight": 20}, {"pause": {}}]
    create_rollout(kube, ns, "ro", target=svc, image="reg.example/app:2",
                   strategy={"canary": {"steps": steps}}, verification=SMOKE)  # fmt: skip
    return svc


def stalled(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Stalled")


def test_failed_smoke_check_stops_the_rollout_before_any_traffic(
    kube: Kube, verifying_operator: Operator, namespace: str, revision: Upstream
) -> None:
    revision.behave(errors=1.0)  # every request: 500 {"ok": false}
    svc = start(kube, namespace)
    status = wait_rollout(kube, namespace, "ro", "rolled back", phase_is("RolledBack"),
                          timeout=60)["status"]  # fmt: skip
    assert stalled(status)["reason"] == "VerificationFailed"
    assert "preTraffic" in stalled(status)["message"]
    assert status["canaryWeight"] == 0
    (run,) = status["verification"]
    assert (run["stage"], run["passed"], run["revision"]) == (
        "preTraffic", False, status["canaryRevision"])  # fmt: skip
    (check,) = run["checks"]
    assert (check["check"], check["statusCode"], check["expected"]) == ("items", 500, "status 200")
    last = status["analysisRuns"][-1]
    assert (last["stage"], last["verdict"]) == ("preTraffic", "Failed")
    analysis = next(c for c in status["conditions"] if c["type"] == "Analysis")
    assert analysis["reason"] == "VerificationFailed"
    events = [(e["type"], e["reason"], e["message"]) for e in events_of(kube, namespace, "ro")]
    assert any(e[:2] == ("Warning", "VerificationFailed") for e in events), events
    shifted = [e[2] for e in events if e[1] == "TrafficShifted"]
    assert all(m == "canary weight 0%" for m in shifted), "the new revision never got traffic"
    dep = deployment(kube, namespace, status["canaryRevision"])
    assert dep is not None
    assert dep["spec"]["replicas"] == 0
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:1"


def test_failed_smoke_check_before_promotion_keeps_the_stable_revision(
    kube: Kube, verifying_operator: Operator, namespace: str, revision: Upstream
) -> None:
    revision.behave()
    svc = start(kube, namespace)
    status = wait_rollout(kube, namespace, "ro", "paused at 20%", phase_is("Paused"),
                          timeout=60)["status"]  # fmt: skip
    assert status["canaryWeight"] == 20
    (run,) = status["verification"]
    assert (run["stage"], run["passed"]) == ("preTraffic", True)
    revision.behave(errors=1.0)
    merge_patch(kube, rollout_url(namespace, "ro"),
                {"metadata": {"annotations": {"xynergy.io/rollout-action": "promote"}}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "rolled back", phase_is("RolledBack"),
                          timeout=60)["status"]  # fmt: skip
    assert stalled(status)["reason"] == "VerificationFailed"
    stages = {v["stage"]: v["passed"] for v in status["verification"]}
    assert stages == {"preTraffic": True, "prePromotion": False}
    assert status["canaryWeight"] == 0
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:1"


@pytest.mark.parametrize(
    ("verification", "says"),
    [
        ({"loadTest": {"requestsPerSecond": 200, "durationSeconds": 60, "maxP99Milliseconds": 5}},
         "requestsPerSecond x durationSeconds must be at most 6000"),
        ({"loadTest": {"durationSeconds": 600, "maxP99Milliseconds": 5}},
         "spec.verification.loadTest.durationSeconds"),
        ({}, "verification: set smoke and/or loadTest"),
    ],
)  # fmt: skip
def test_apiserver_refuses_unbounded_verification(
    kube: Kube, crds_installed: list[str], namespace: str, verification: dict[str, Any], says: str
) -> None:
    body = {"apiVersion": "xynergy.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "ro"},
            "spec": {"targetRef": {"name": "crm"}, "image": "reg.example/app:2",
                     "strategy": {"immediate": {}}, "verification": verification}}  # fmt: skip
    resp = kube.create(rollout_url(namespace), body)
    assert resp.status_code in (400, 422), resp.text
    assert says in resp.json()["message"], resp.json()["message"]
