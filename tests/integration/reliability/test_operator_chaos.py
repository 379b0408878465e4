"""Operator chaos: XynergyServices, ScalingPolicies and Rollouts in flight while the operator
process (`python -m controllers`, its own process group) is SIGKILLed at random points and
restarted. Afterwards every object has converged at its generation, each XynergyService has
exactly one Deployment and one Service (no orphan, no duplicate), no Rollout recorded a
revision twice, and one more crash after convergence loses no status.

The kill points are random (seeded: XYNERGY_CHAOS_SEED replays a run; the seed is in the
failure message). Each kill waits until the restarted operator has reconciled something, so it
lands mid-work rather than during its imports.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gateway.conftest import free_port
from kube_support import Kube
from test_rollout_support import Operator

from .support import (
    CANARY_STEPS,
    Fleet,
    RolloutSteps,
    children_problems,
    condition,
    converge,
    history_repeats,
    items,
    metric_total,
    rollout_done,
    statuses,
)


@dataclass(frozen=True)
class Size:
    services: int
    policies: int
    rollouts: int
    kills: int


SIZES = [
    pytest.param(Size(services=30, policies=3, rollouts=2, kills=3), id="ci"),
    pytest.param(Size(services=200, policies=50, rollouts=20, kills=10), id="soak",
                 marks=pytest.mark.soak),
]  # fmt: skip


class Crashing:
    """One operator process at a time, killed and restarted on demand; each start has its
    own metrics port, so `working()` sees this process's reconciles only."""

    def __init__(self, kube: Kube, cluster: Path, logs: Path) -> None:
        self.kube, self.cluster, self.logs = kube, cluster, logs
        self.starts = 0
        self.op: Operator | None = None
        self.metrics = ""

    def start(self) -> None:
        self.starts += 1
        port = free_port()
        self.metrics = f"http://127.0.0.1:{port}/metrics"
        log = self.logs / f"operator-{self.starts}.log"
        self.op = Operator(self.cluster, log, XYNERGY_METRICS_PORT=str(port)).start()

    def working(self) -> bool:
        try:
            return metric_total(self.metrics, "xynergy_reconcile_total") > 0
        except httpx.HTTPError:  # not listening yet
            return False

    def kill_mid_work(self, rng: random.Random) -> None:
        """Wait until this process reconciles, then SIGKILL it within the next second."""
        self.kube.wait_for("the operator to reconcile", self.working, timeout=60)
        assert self.op is not None
        time.sleep(rng.uniform(0.0, 1.0))  # the random kill point itself, not a wait
        self.op.kill()

    def stop(self) -> None:
        if self.op is not None:
            self.op.stop()


def put_in_flight(kube: Kube, fleet: Fleet, size: Size) -> list[str]:
    """Create the fleet; return the services no Rollout or policy targets (free to bump)."""
    for i in range(size.services):
        fleet.add_service(kube, f"svc-{i:03d}")
    for i in range(size.policies):
        fleet.add_policy(kube, f"sp-{i:03d}", target=fleet.services[i])
    targeted = size.policies + size.rollouts
    return fleet.services[targeted:]


@pytest.mark.parametrize("size", SIZES)
def test_operator_killed_at_random_points_converges_without_loss(
    kube: Kube,
    cluster: Path,
    crds_installed: list[str],
    namespace: str,
    tmp_path: Path,
    size: Size,
) -> None:
    seed = int(os.environ.get("XYNERGY_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    fleet, ops = Fleet(namespace), Crashing(kube, cluster, tmp_path)
    with RolloutSteps(kube, namespace) as steps:
        ops.start()
        try:
            free = put_in_flight(kube, fleet, size)
            for kill in range(size.kills):
                ops.kill_mid_work(rng)
                # while it is down: spec changes, and the Rollouts (created during the first outage)
                for name in rng.sample(free, k=max(1, len(free) // 5)):
                    fleet.bump(kube, name, f"reg.example/app:k{kill}")
                if kill == 0:
                    for i in range(size.rollouts):
                        fleet.add_rollout(
                            kube, f"ro-{i:03d}", target=fleet.services[size.policies + i]
                        )
                ops.start()
            converge(kube, fleet, 60 + size.services, more=rollouts_not_done)
            check_children(kube, fleet)
            before = statuses(kube, fleet)
            ops.kill_mid_work(rng)
            ops.start()
            # a spec change after the crash converging shows the new process is at work
            fleet.bump(kube, free[0], "reg.example/app:after")
            converge(kube, fleet, 60 + size.services, more=rollouts_not_done)
            after = statuses(kube, fleet)
        except BaseException as exc:
            raise AssertionError(
                f"chaos seed {seed} (XYNERGY_CHAOS_SEED replays it): {exc}"
            ) from exc
        finally:
            ops.stop()
    # every status the Rollouts went through: no step repeated or skipped across the crashes
    assert steps.problems(CANARY_STEPS) == [], f"chaos seed {seed}"
    assert sorted(steps.seen) == sorted(fleet.rollouts)
    marker = f"xynergyservices/{free[0]}"
    changed = {
        (key, field): (before[key].get(field), after.get(key, {}).get(field))
        for key in before
        if key != marker
        for field in set(before[key]) | set(after.get(key, {}))
        if before[key].get(field) != after.get(key, {}).get(field)
    }
    assert changed == {}, f"status changed across a crash (seed {seed})"


def rollouts_not_done(kube: Kube, fleet: Fleet) -> list[str]:
    return [f"rollouts/{r} (phase)" for r in rollout_done(kube, fleet)]


def check_children(kube: Kube, fleet: Fleet) -> None:
    assert children_problems(kube, fleet) == []
    assert history_repeats(kube, fleet) == []
    deployments = {
        d["metadata"]["name"]: d
        for d in items(kube, f"/apis/apps/v1/namespaces/{fleet.ns}/deployments")
    }
    for obj in items(kube, f"/apis/xynergy.io/v1alpha1/namespaces/{fleet.ns}/xynergyservices"):
        name, gen = obj["metadata"]["name"], obj["metadata"]["generation"]
        assert obj["status"]["latestReadyRevision"] == f"{name}-{gen:05d}"
        image = deployments[name]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == obj["spec"]["image"], name
    for obj in items(kube, f"/apis/xynergy.io/v1alpha1/namespaces/{fleet.ns}/scalingpolicies"):
        ready = condition(obj, "Ready")  # no metrics: not Ready, and it says why
        assert ready.get("reason"), obj["status"]
        assert ready.get("message"), obj["status"]
