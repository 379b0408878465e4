"""Issue 20 item 2: a XynergyService whose Pods cannot be scheduled says so, and goes Stalled
once the Deployment's progress deadline passes (instead of "RollingOut" forever). Real
apiserver, scheduler and kwok nodes; this module's operator runs with a short deadline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.cloudrun import FakeCloudRun
from kopf.testing import KopfRunner
from kube_support import Kube, run_operator
from test_xynergyservice import create_xs, deployment, get_xs, merge_patch, wait_ready, xs_url

from controllers.xynergyservice.observed import new_replica_set, rollout_pods

DEADLINE_SECONDS = 45


@pytest.fixture(scope="module")
def operator(
    cluster: Path, crds_installed: list[str], cloudrun_session: FakeCloudRun
) -> Iterator[KopfRunner]:
    env = {
        "XYNERGY_CLOUDRUN_ENDPOINT": cloudrun_session.endpoint,
        "XYNERGY_PROGRESS_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
    }
    with run_operator(cluster, **env) as runner:
        yield runner


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_unschedulable_pods_surface_then_stall(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    create_xs(kube, namespace, "huge", resources={"memory": "1000Ei"})

    def says_unschedulable() -> bool:
        conds = conditions(get_xs(kube, namespace, "huge"))
        return conds.get("Ready", {}).get("reason") == "Unschedulable"

    kube.wait_for("the scheduling failure in the conditions", says_unschedulable, timeout=60)
    conds = conditions(get_xs(kube, namespace, "huge"))
    assert conds["Ready"]["status"] != "True"
    assert conds["Reconciling"]["status"] == "True"
    assert "Insufficient memory" in conds["Ready"]["message"]
    dep = deployment(kube, namespace, "huge")
    assert dep is not None
    assert dep["spec"]["progressDeadlineSeconds"] == DEADLINE_SECONDS

    def stalled() -> bool:
        return conditions(get_xs(kube, namespace, "huge")).get("Stalled", {}).get("status") == (
            "True"
        )

    kube.wait_for("Stalled after the progress deadline", stalled, timeout=DEADLINE_SECONDS + 60)
    conds = conditions(get_xs(kube, namespace, "huge"))
    assert conds["Stalled"]["reason"] == "ProgressDeadlineExceeded"
    assert "Reconciling" not in conds
    assert conds["Ready"]["status"] == "False"
    kube.wait_for(
        "the Stalled message to say why",
        lambda: (
            "Insufficient memory"
            in conditions(get_xs(kube, namespace, "huge"))["Stalled"]["message"]
        ),
        timeout=30,
    )


def test_only_the_new_revisions_pods_are_the_rollouts(
    kube: Kube, operator: KopfRunner, namespace: str
) -> None:
    """The real deployment controller's Progressing condition names the new ReplicaSet, so
    the Pods looked at for a slow rollout are the new revision's (Pending here: it asks for
    more memory than any node has), not the old ones that keep serving meanwhile."""
    create_xs(kube, namespace, "api", replicas=2)
    wait_ready(kube, namespace, "api")
    merge_patch(kube, xs_url(namespace, "api"), {"spec": {"resources": {"memory": "1000Ei"}}})

    def says_unschedulable() -> bool:
        return conditions(get_xs(kube, namespace, "api")).get("Ready", {}).get("reason") == (
            "Unschedulable"
        )

    kube.wait_for("the new revision's Pods unschedulable", says_unschedulable, timeout=60)
    dep = deployment(kube, namespace, "api")
    assert dep is not None
    revision = dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    sets = kube.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets").json()["items"]
    (new,) = [
        rs["metadata"]["name"]
        for rs in sets
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == revision
    ]
    assert new_replica_set(dep) == new
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods").json()["items"]
    owners = {p["metadata"]["name"]: p["metadata"]["ownerReferences"][0]["name"] for p in pods}
    assert sorted(set(owners.values())) == sorted(rs["metadata"]["name"] for rs in sets)
    chosen = {p["metadata"]["name"] for p in rollout_pods(dep, pods)}
    assert chosen == {name for name, owner in owners.items() if owner == new}
    assert chosen
    assert all(p["status"]["phase"] == "Pending" for p in pods if p["metadata"]["name"] in chosen)
    assert set(owners) - chosen  # the old revision's Pods, still there
