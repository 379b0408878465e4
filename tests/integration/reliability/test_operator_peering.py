"""Two operator replicas (`python -m controllers` twice, XYNERGY_PEERING set, as the chart's
two-replica Deployment runs them): exactly one acts at a time, counted by each process's own
reconcile counter, and when the active one dies (SIGKILL) the other takes over.

Each replica runs at its own random priority (XYNERGY_PEERING_PRIORITY), so kopf pauses all but
the highest; the paused one's core (resync scheduler, converges) follows kopf's pause.
kopf's peering object lives in a ClusterKopfPeering (its CRD is applied here, as kopf's docs
give it). kopf declares a peer dead once its `lifetime` (60 s) passes without a heartbeat, so a
handover takes up to a minute.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway.conftest import free_port
from kube_support import Kube
from test_rollout_support import Operator

from .support import Fleet, condition, items, metric_total

PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Cluster",
        "names": {"kind": "ClusterKopfPeering", "plural": "clusterkopfpeerings",
                  "singular": "clusterkopfpeering"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip
PEERINGS = "/apis/kopf.dev/v1/clusterkopfpeerings"


@pytest.fixture
def peering(kube: Kube, crds_installed: list[str]) -> Iterator[str]:
    resp = kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", PEERING_CRD)
    assert resp.status_code in (201, 409), resp.text
    kube.wait_for("the peering CRD to serve", lambda: kube.get(PEERINGS).status_code == 200)
    name = f"xynergy-{uuid.uuid4().hex[:6]}"
    resp = kube.create(PEERINGS, {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                  "metadata": {"name": name}})  # fmt: skip
    assert resp.status_code == 201, resp.text
    yield name
    kube.delete(f"{PEERINGS}/{name}")


class Replica:
    def __init__(self, cluster: Path, log: Path, peering: str) -> None:
        port = free_port()
        self.metrics, self.log = f"http://127.0.0.1:{port}/metrics", log
        env = {"XYNERGY_PEERING": peering, "XYNERGY_METRICS_PORT": str(port)}
        self.op = Operator(cluster, log, **env).start()

    def reconciles(self) -> float:
        return metric_total(self.metrics, "xynergy_reconcile_total")


def peers(kube: Kube, name: str) -> int:
    """How many operators the peering object lists (kopf keeps them in its status)."""
    return len(kube.get(f"{PEERINGS}/{name}").json().get("status") or {})


def ready(kube: Kube, ns: str, name: str) -> bool:
    found = [o for o in items(kube, f"/apis/xynergy.io/v1alpha1/namespaces/{ns}/xynergyservices")
             if o["metadata"]["name"] == name]  # fmt: skip
    return bool(found) and condition(found[0], "Ready").get("status") == "True"


def paused(log: Path) -> bool:
    """Whether kopf's last peering decision in this log paused the process. kopf logs only
    changes, and with a peering name it starts paused: a replica that finds a higher peer at
    once never logs "Pausing", so no decision at all means paused."""
    lines = [ln for ln in log.read_text().splitlines() if "kopf._core.engines.peering" in ln]
    decisions = [ln for ln in lines if " Pausing " in ln or " Resuming " in ln]
    return not decisions or " Pausing " in decisions[-1]


@pytest.mark.parametrize(
    "handover",
    [pytest.param(False, id="ci"), pytest.param(True, marks=pytest.mark.soak, id="soak")],
)
def test_one_replica_acts_and_the_other_takes_over(
    kube: Kube, cluster: Path, namespace: str, peering: str, tmp_path: Path, handover: bool
) -> None:
    a = Replica(cluster, tmp_path / "a.log", peering)
    b = Replica(cluster, tmp_path / "b.log", peering)
    try:
        kube.wait_for("both replicas to join the peering", lambda: peers(kube, peering) == 2)
        fleet = Fleet(namespace)
        fleet.add_service(kube, "first")
        kube.wait_for(
            "a replica to make it Ready", lambda: ready(kube, namespace, "first"), timeout=20
        )
        acted = [r for r in (a, b) if r.reconciles() > 0]
        assert len(acted) == 1, "both replicas reconciled"
        leader, follower = (a, b) if acted[0] is a else (b, a)
        assert not paused(leader.log), "the replica that acted is paused by peering"
        assert paused(follower.log), "the replica that did not act is not paused"
        if not handover:
            return
        leader.op.kill()
        fleet.add_service(kube, "second")
        kube.wait_for(
            "the other replica to take over", lambda: ready(kube, namespace, "second"), timeout=120
        )
        assert follower.reconciles() > 0
        assert not paused(follower.log)
    finally:
        a.op.stop()
        b.op.stop()
