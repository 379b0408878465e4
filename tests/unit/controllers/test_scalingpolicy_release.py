"""Deleting a ScalingPolicy gives its target back the spec.replicas it had before the policy's
first scale (status.scaledTarget), only while the target still holds the policy's last write;
the finalizer is asked for only once the policy has written the target."""

from __future__ import annotations

import datetime as dt
from typing import Any

from _merge_patch import apply_merge_patch
from test_scalingpolicy_reconciler import NOW, FakeProm, FakeTarget, body, reconciler

from apis.v1alpha1.scalingpolicy import ScaledTarget
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import TransientError
from controllers.core.status import merge_patch, status_changed
from controllers.scalingpolicy.conflicts import TargetIndex
from controllers.scalingpolicy.reconciler import ScalingPolicyReconciler
from controllers.scalingpolicy.target import Target
from controllers.xynergyservice.resources.cloudrun import desired_service


def written(b: dict[str, Any], status: Any) -> None:
    """The status stored as the StatusWriter's merge patch leaves it."""
    b["status"] = apply_merge_patch(b.get("status") or {}, merge_patch(status))


async def _synced(rec: ScalingPolicyReconciler, b: dict[str, Any], *seconds: float) -> None:
    for s in seconds:
        result = await rec.reconcile(b, now=NOW + dt.timedelta(seconds=s), child=None)
        written(b, result.status)


def recording(rec: ScalingPolicyReconciler, b: dict[str, Any]) -> list[dict[str, Any] | None]:
    """The reconciler's intent writes land in `b`'s status (as the apiserver's merge patch);
    returns the records written, in order."""
    records: list[dict[str, Any] | None] = []

    async def intend(namespace: str, name: str, record: ScaledTarget | None) -> None:
        data = record.model_dump(by_alias=True, mode="json") if record is not None else None
        records.append(data)
        b["status"] = apply_merge_patch(b.get("status") or {}, {"scaledTarget": data})

    rec.intend = intend
    return records


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


def _hpa(target: str = "crm") -> dict[str, Any]:
    return {"metadata": {"name": "h", "namespace": "ns"},
            "spec": {"scaleTargetRef": {"kind": "XynergyService", "name": target}}}  # fmt: skip


async def test_a_policy_stalled_by_an_hpa_lets_go_and_deletion_leaves_the_hpa_its_count() -> None:
    target = FakeTarget(replicas=None)
    index = TargetIndex()
    rec = reconciler(target, FakeProm(load=900), index=index)
    b = body(maxInstances=20)
    index.observe_policy(b, deleted=False)
    index.seeded = True
    await _synced(rec, b, 0)
    assert b["status"]["scaledTarget"]["lastWritten"] == 5
    index.observe_hpa(_hpa(), deleted=False)  # a person moves the target to an HPA
    await _synced(rec, b, 30)
    assert "scaledTarget" not in b["status"]  # Stalled ConflictingHPA owns nothing
    assert not rec.needs_finalizer(b)
    # even with a record kept (stored before this release), deletion leaves the HPA's count
    b["status"]["scaledTarget"] = {"name": "crm", "lastWritten": 5}
    target.replicas = 5  # the HPA's own write happens to be the policy's last
    gone, event = await rec.release(b)
    assert gone
    assert target.restored == []
    assert target.replicas == 5
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "HorizontalPodAutoscaler ns/h scales it now" in event.message


async def test_deletion_leaves_a_target_another_policy_scales_now() -> None:
    target = FakeTarget(replicas=None)
    index = TargetIndex()
    rec = reconciler(target, FakeProm(load=900), index=index)
    b = body(maxInstances=20)
    index.observe_policy(b, deleted=False)
    index.seeded = True
    await _synced(rec, b, 0)
    younger = body(uid="u2", name="crm-2", created="2024-02-01T00:00:00Z")
    index.observe_policy(younger, deleted=False)  # takes over once this one is gone
    gone, event = await rec.release(b)
    assert gone
    assert target.restored == []
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "ScalingPolicy ns/crm-2 scales it now" in event.message


async def test_a_paused_or_dry_run_policy_keeps_the_count_from_before_it() -> None:
    """Paused (or a dry run) then acting again: the next scale's record still names the
    target's count from before the policy, not the policy's own earlier write."""
    for change in ({"paused": True}, {"dryRun": True}):
        target = FakeTarget(replicas=3)
        prom = FakeProm(load=350)
        rec = reconciler(target, prom)
        b = body(maxInstances=20)
        await _synced(rec, b, 0)
        assert target.scaled == [7], change
        b["spec"].update(change)
        await _synced(rec, b, 30)
        assert b["status"]["scaledTarget"] == {
            "name": "crm", "originalReplicas": 3, "lastWritten": 7}, change  # fmt: skip
        assert rec.needs_finalizer(b), change
        b["spec"].update(dict.fromkeys(change, False))
        prom.load = 700
        await _synced(rec, b, 60)
        assert target.scaled == [7, 14], change
        assert b["status"]["scaledTarget"]["originalReplicas"] == 3, change
        gone, event = await rec.release(b)
        assert gone
        assert target.replicas == 3, change
        assert event is not None
        assert event.reason == "TargetRestored"


async def test_deleting_a_paused_policy_gives_back_unless_edited_since() -> None:
    for edited in (False, True):
        target = FakeTarget(replicas=None)
        rec = reconciler(target, FakeProm(load=900))
        b = body(maxInstances=20)
        await _synced(rec, b, 0)
        b["spec"]["paused"] = True
        await _synced(rec, b, 30)
        if edited:
            target.replicas = 9  # a person's edit while the policy is paused
        gone, event = await rec.release(b)
        assert gone
        assert target.replicas == (9 if edited else None)
        assert event is not None
        assert event.reason == ("TargetLeft" if edited else "TargetRestored")


async def test_an_invalid_spec_keeps_the_record_and_the_finalizer() -> None:
    target = FakeTarget(replicas=None)
    rec = reconciler(target, FakeProm(load=900))
    b = body(maxInstances=20)
    await _synced(rec, b, 0)
    b["spec"]["interval"] = "1ms"  # refused by the model (stored before the CRD rule)
    await _synced(rec, b, 30)
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 5}
    assert rec.needs_finalizer(b)
    gone, _ = await rec.release(b)
    assert gone
    assert target.restored == [None]


async def test_a_changed_target_ref_drops_the_old_record_at_once() -> None:
    target = FakeTarget(replicas=3)
    rec = reconciler(target, FakeProm(load=350))
    b = body(maxInstances=20)
    await _synced(rec, b, 0)
    assert target.scaled == [7]
    b["spec"]["targetRef"] = {"name": "other"}  # already at 7 (the fake serves one count)
    await _synced(rec, b, 30)
    assert target.scaled == [7]
    assert "scaledTarget" not in b["status"]  # the old target keeps its count
    assert await rec.release(b) == (True, None)
    assert target.restored == []


async def test_a_new_targets_record_has_no_field_of_the_old_one() -> None:
    """The status is stored as the apiserver merges the writer's patch: the new record must
    not keep the old target's originalReplicas."""
    targets = {"old": FakeTarget(replicas=3), "new": FakeTarget(replicas=None)}

    class Two(FakeTarget):
        async def read(self, namespace: str, name: str) -> Any:
            return await targets[name].read(namespace, name)

        async def scale(self, namespace: str, name: str, replicas: int) -> None:
            await targets[name].scale(namespace, name, replicas)

        async def restore(
            self, namespace: str, name: str, *, expected: int, replicas: int | None
        ) -> bool:
            return await targets[name].restore(
                namespace, name, expected=expected, replicas=replicas
            )

    rec = reconciler(Two(), FakeProm(load=900))
    b = body(maxInstances=20, targetRef={"name": "old"})
    await _synced(rec, b, 0)
    assert b["status"]["scaledTarget"] == {"name": "old", "originalReplicas": 3, "lastWritten": 7}
    b["spec"]["targetRef"] = {"name": "new"}
    await _synced(rec, b, 30)
    assert b["status"]["scaledTarget"] == {"name": "new", "lastWritten": 5}
    gone, event = await rec.release(b)
    assert gone
    assert targets["new"].restored == [None]
    assert targets["new"].replicas is None
    assert event is not None
    assert "5 -> unset" in event.message


async def test_the_scale_is_recorded_before_it_is_written() -> None:
    target = FakeTarget(replicas=None)
    rec = reconciler(target, FakeProm(load=200))
    b = body(maxInstances=20)
    records = recording(rec, b)
    await rec.reconcile(b, now=NOW, child=None)  # scales to 4; its status write is lost
    assert target.scaled == [4]
    assert records == [{"name": "crm", "originalReplicas": None, "lastWritten": None, "pending": 4}]
    assert rec.needs_finalizer(b)
    gone, event = await rec.release(b)
    assert gone
    assert target.restored == [None]
    assert event is not None
    assert event.reason == "TargetRestored"
    assert "4 -> unset" in event.message


async def test_a_lost_status_write_leaves_no_stale_last_write() -> None:
    target = FakeTarget(replicas=None)
    prom = FakeProm(load=200)
    rec = reconciler(target, prom)
    b = body(maxInstances=20)
    recording(rec, b)
    await _synced(rec, b, 0)
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}  # pending cleared
    prom.load = 400
    await rec.reconcile(b, now=NOW + dt.timedelta(seconds=30), child=None)  # write lost
    assert target.scaled == [4, 8]
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4, "pending": 8}
    gone, event = await rec.release(b)
    assert gone
    assert target.restored == [None]
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_a_record_that_cannot_be_written_leaves_the_target_as_is() -> None:
    target = FakeTarget(replicas=None)
    rec = reconciler(target, FakeProm(load=200))
    b = body(maxInstances=20)

    async def refused(namespace: str, name: str, record: ScaledTarget | None) -> None:
        raise TransientError("recording the scale: 503", reason="ApiUnavailable")

    rec.intend = refused
    result = await rec.reconcile(b, now=NOW, child=None)
    assert target.scaled == []
    assert result.status.model_dump(by_alias=True).get("scaledTarget") is None


async def test_an_invalid_spec_is_not_rewritten_on_every_retry() -> None:
    """An unreadable spec keeps the stored conditions: a retry that finds the same error
    changes nothing to write (no new lastTransitionTime)."""
    target = FakeTarget(replicas=None)
    rec = reconciler(target, FakeProm(load=900))
    b = body(maxInstances=20)
    await _synced(rec, b, 0)
    b["spec"]["interval"] = "1ms"
    await _synced(rec, b, 30)
    stalled = [c for c in b["status"]["conditions"] if c["type"] == "Stalled"]
    assert [c["reason"] for c in stalled] == ["InvalidSpec"]
    again = await rec.reconcile(b, now=NOW + dt.timedelta(seconds=90), child=None)
    assert not status_changed(b["status"], again.status)
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 5}
