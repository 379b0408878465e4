"""The policy's bounds as the target moves them, said in the Ready message: a minimum of 0 on
a Kubernetes target is raised to 1 (at 0 Pods no load is reported, so nothing would scale it
up again), and a maxInstances above the target's maximum is lowered to it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from test_scalingpolicy_reconciler import NOW, FakeProm, FakeTarget, body, dumped, reconciler

from apis.conditions import get_condition
from apis.v1alpha1.scalingpolicy import ScalingPolicyStatus
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.providers.metrics import MetricsEmptyError
from controllers.scalingpolicy.target import Target


@dataclass
class ZeroTarget:
    """A target whose own minimum is 0 (Kubernetes, or Cloud Run)."""

    replicas: int | None = 1
    backend: str = "kubernetes"
    scaled: list[int] = field(default_factory=list)

    async def read(self, namespace: str, name: str) -> Target:
        spec: dict[str, Any] = {"image": "reg/crm:1", "replicas": self.replicas,
                                "backend": self.backend,
                                "scaling": {"minInstances": 0, "maxInstances": 20}}  # fmt: skip
        if self.backend == "cloudRun":
            spec["cloudRun"] = {"project": "xynergy-test", "region": "us-central1"}
        svc = XynergyService.model_validate({"metadata": {"name": name, "namespace": namespace},
                                             "spec": spec})  # fmt: skip
        return Target(svc, svc.spec.sizing())

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append(replicas)
        self.replicas = replicas


@dataclass
class PodsReport:
    """The load as the Pods report it: no series at all while the target has no Pod."""

    target: ZeroTarget
    load: float = 0.0

    async def query(self, query: str, *, at: float) -> float:
        if self.target.replicas == 0 and self.target.backend == "kubernetes":
            raise MetricsEmptyError(f"query {query!r} matched no series")
        return self.load

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Any:
        raise MetricsEmptyError("no history")


async def _run(target: ZeroTarget, prom: PodsReport, b: dict[str, Any], syncs: range) -> None:
    rec = reconciler(target, prom)  # type: ignore[arg-type]
    for i in syncs:
        result = await rec.reconcile(b, now=NOW + dt.timedelta(seconds=15 * i), child=None)
        b["status"] = dumped(result)


def _ready(b: dict[str, Any]) -> str:
    ready = get_condition(ScalingPolicyStatus.model_validate(b["status"]).conditions, "Ready")
    assert ready is not None
    return ready.message


async def test_min_zero_on_kubernetes_floors_at_one_and_says_so() -> None:
    target = ZeroTarget(replicas=1)
    prom = PodsReport(target)
    b = body(minInstances=0)
    await _run(target, prom, b, range(40))  # no load for 10 minutes
    assert target.scaled == []
    assert target.replicas == 1
    assert "minInstances 0 raised to 1 on a Kubernetes target" in _ready(b)
    prom.load = 500.0  # the load comes back: the one Pod reports it
    await _run(target, prom, b, range(40, 42))
    assert target.replicas is not None
    assert target.replicas > 1
    # Cloud Run counts requests without instances: 0 stays allowed there
    cloud_run = ZeroTarget(replicas=1, backend="cloudRun")
    b = body(minInstances=0)
    await _run(cloud_run, PodsReport(cloud_run), b, range(40))
    assert cloud_run.replicas == 0
    assert "raised to 1" not in _ready(b)


async def test_a_kubernetes_target_the_policy_left_at_zero_is_brought_back_to_one() -> None:
    target = ZeroTarget(replicas=0)  # scaled to 0 by the policy before the floor
    b = body(minInstances=0, status={"scaledTarget": {"name": "crm", "lastWritten": 0}})
    await _run(target, PodsReport(target), b, range(1))
    assert target.scaled == [1]


async def test_a_kubernetes_target_a_person_scaled_to_zero_is_left_there() -> None:
    """As HPA: ScalingActive False ScalingDisabled while the target's replicas is 0."""
    target = ZeroTarget(replicas=0)  # `kubectl scale --replicas=0`, no record of the policy
    prom = PodsReport(target)
    b = body()  # no minInstances: the target's own scaling.minInstances 0
    await _run(target, prom, b, range(3))
    assert target.scaled == []
    status = ScalingPolicyStatus.model_validate(b["status"])
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "ScalingDisabled")
    assert "spec.replicas 0" in ready.message
    assert status.scaled_target is None
    # a record of another count (a person scaled the policy's 5 down to 0): left too
    b = body(status={"scaledTarget": {"name": "crm", "lastWritten": 5}})
    await _run(target, prom, b, range(1))
    assert target.scaled == []
    # scaled up again by a person: the policy decides again
    target.replicas = 2
    await _run(target, prom, b, range(1, 2))
    assert "ScalingDisabled" not in str(b["status"]["conditions"])


async def test_a_max_above_the_targets_is_lowered_and_said() -> None:
    target = FakeTarget(replicas=20)  # the target's scaling.maxInstances is 20
    rec = reconciler(target, FakeProm(load=2000))
    result = await rec.reconcile(body(maxInstances=50), now=NOW, child=None)
    status = result.status
    assert isinstance(status, ScalingPolicyStatus)
    assert status.desired_instances == 20
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None
    assert "spec.maxInstances 50 above the target's scaling.maxInstances 20" in ready.message
    assert "ceiling is 20" in ready.message
    # a maximum within the target's adds no note
    result = await rec.reconcile(body(uid="u2", maxInstances=20), now=NOW, child=None)
    assert isinstance(result.status, ScalingPolicyStatus)
    ready = get_condition(result.status.conditions, "Ready")
    assert ready is not None
    assert "ceiling" not in ready.message
