"""Deleting a ScalingPolicy gives its target back the spec.replicas it had before the policy's
first scale (status.scaledTarget), only while the target still holds the policy's last write;
the finalizer is asked for only once the policy has written the target."""

from __future__ import annotations

import datetime as dt
from typing import Any

from test_scalingpolicy_reconciler import NOW, FakeProm, FakeTarget, body, dumped, reconciler

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import TransientError
from controllers.scalingpolicy.reconciler import ScalingPolicyReconciler
from controllers.scalingpolicy.target import Target
from controllers.xynergyservice.resources.cloudrun import desired_service


async def _synced(rec: ScalingPolicyReconciler, b: dict[str, Any], *seconds: float) -> None:
    for s in seconds:
        result = await rec.reconcile(b, now=NOW + dt.timedelta(seconds=s), child=None)
        b["status"] = dumped(result)


def _cloud_run_min(replicas: int | None) -> int | None:
    spec: dict[str, Any] = {
        "image": "img:1", "backend": "cloudRun",
        "cloudRun": {"project": "xynergy-test", "region": "us-central1"},
        "scaling": {"minInstances": 0, "maxInstances": 20},
    }  # fmt: skip
    if replicas is not None:
        spec["replicas"] = replicas
    svc = XynergyService.model_validate({"metadata": {"name": "crm", "namespace": "ns"},
                                         "spec": spec})  # fmt: skip
    return desired_service(svc, None).scaling.min_instance_count


async def test_deleting_the_policy_unsets_replicas_it_found_unset() -> None:
    target = FakeTarget(replicas=None)
    rec = reconciler(target, FakeProm(load=900))
    b = body(maxInstances=20)
    assert not rec.needs_finalizer(b)  # nothing written yet: no finalizer
    await _synced(rec, b, 0)
    assert target.scaled == [5]  # HPA's step limit: +4 per 15 s from 1
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 5}
    assert rec.needs_finalizer(b)
    gone, event = await rec.release(b)
    assert gone
    assert target.restored == [None]
    assert target.replicas is None
    assert event is not None
    assert event.reason == "TargetRestored"
    assert "5 -> unset" in event.message
    # on Cloud Run the policy's last count no longer stays the service's minimum
    assert _cloud_run_min(target.replicas) == 0


async def test_the_original_count_is_kept_across_later_scales() -> None:
    target = FakeTarget(replicas=3)
    prom = FakeProm(load=900)
    rec = reconciler(target, prom)
    b = body(maxInstances=20)
    await _synced(rec, b, 0)
    await _synced(rec, b, 30)
    assert target.scaled == [7, 14]
    assert b["status"]["scaledTarget"] == {"name": "crm", "originalReplicas": 3, "lastWritten": 14}
    gone, event = await rec.release(b)
    assert gone
    assert target.replicas == 3
    assert target.restored == [3]
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_a_later_edit_is_never_overwritten() -> None:
    target = FakeTarget(replicas=None)
    rec = reconciler(target, FakeProm(load=900))
    b = body(maxInstances=20)
    await _synced(rec, b, 0)
    target.replicas = 7  # a person's edit after the policy's last write
    gone, event = await rec.release(b)
    assert gone
    assert target.replicas == 7
    assert target.restored == []
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "changed since" in event.message


async def test_a_scale_without_the_metric_is_recorded_too() -> None:
    target = FakeTarget(replicas=None)  # resolved default 1 (target's minimum)
    rec = reconciler(target, FakeProm(load=None))
    b = body(minInstances=4)
    await _synced(rec, b, 0)
    assert target.scaled == [4]
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}


async def test_dry_run_and_untouched_targets_need_no_finalizer() -> None:
    target = FakeTarget(replicas=2)
    rec = reconciler(target, FakeProm(load=900))
    b = body(maxInstances=20, dryRun=True)
    await _synced(rec, b, 0)
    assert target.scaled == []
    assert "scaledTarget" not in b["status"]
    assert not rec.needs_finalizer(b)
    assert await rec.release(b) == (True, None)


class _Unreachable(FakeTarget):
    async def read(self, namespace: str, name: str) -> Target:
        raise TransientError("apiserver unreachable", reason="ApiUnreachable")


async def test_an_unreachable_apiserver_holds_the_deletion_then_lets_go() -> None:
    target = FakeTarget(replicas=None)
    rec = reconciler(target, FakeProm(load=900))
    b = body(maxInstances=20)
    await _synced(rec, b, 0)
    down = _Unreachable(replicas=5)
    rec.target = down
    now = dt.datetime.now(dt.UTC)
    b["metadata"]["deletionTimestamp"] = now.isoformat()
    gone, event = await rec.release(b)
    assert not gone
    assert event is not None
    assert event.reason == "RestoreWaiting"
    b["metadata"]["deletionTimestamp"] = (now - dt.timedelta(seconds=301)).isoformat()
    gone, event = await rec.release(b)
    assert gone
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "not given back to unset" in event.message
    # a target that is gone has nothing pinned: the policy goes quietly
    target.exists = False
    rec.target = target
    assert await rec.release(b) == (True, None)
