"""Deleting a ScalingPolicy gives its target back the spec.replicas it had before the policy's
first scale (status.scaledTarget), only while the target still holds the policy's last write;
the finalizer is asked for only once the policy has written the target."""

from __future__ import annotations

import datetime as dt
from typing import Any

from _scaling_world import world
from test_scalingpolicy_reconciler import NOW, FakeTarget, body

from apis.v1alpha1.scalingpolicy import ScaledTarget
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import TransientError
from controllers.core.status import status_changed
from controllers.scalingpolicy.conflicts import TargetIndex
from controllers.scalingpolicy.target import Target
from controllers.xynergyservice.resources.cloudrun import desired_service


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
    w = world()
    assert not w.rec.needs_finalizer(w.b)  # nothing written yet: no finalizer
    await w.synced(0)
    assert w.target.scaled == [5]  # HPA's step limit: +4 per 15 s from 1
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 5}
    assert w.rec.needs_finalizer(w.b)
    gone, event = await w.rec.release(w.b)
    assert gone
    assert w.target.restored == [None]
    assert w.target.replicas is None
    assert event is not None
    assert event.reason == "TargetRestored"
    assert "5 -> unset" in event.message
    # on Cloud Run the policy's last count no longer stays the service's minimum
    assert _cloud_run_min(w.target.replicas) == 0


async def test_the_original_count_is_kept_across_later_scales() -> None:
    w = world(FakeTarget(replicas=3))
    await w.synced(0)
    await w.synced(30)
    assert w.target.scaled == [7, 14]
    assert w.b["status"]["scaledTarget"] == {
        "name": "crm",
        "originalReplicas": 3,
        "lastWritten": 14,
    }
    gone, event = await w.rec.release(w.b)
    assert gone
    assert w.target.replicas == 3
    assert w.target.restored == [3]
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_a_later_edit_is_never_overwritten() -> None:
    w = world()
    await w.synced(0)
    w.target.replicas = 7  # a person's edit after the policy's last write
    gone, event = await w.rec.release(w.b)
    assert gone
    assert w.target.replicas == 7
    assert w.target.restored == []
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "changed since" in event.message


async def test_a_scale_without_the_metric_is_recorded_too() -> None:
    w = world(load=None, minInstances=4, maxInstances=10)  # target at its resolved default 1
    await w.synced(0)
    assert w.target.scaled == [4]
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}


async def test_dry_run_and_untouched_targets_need_no_finalizer() -> None:
    w = world(FakeTarget(replicas=2), dryRun=True)
    await w.synced(0)
    assert w.target.scaled == []
    assert "scaledTarget" not in w.b["status"]
    assert not w.rec.needs_finalizer(w.b)
    assert await w.rec.release(w.b) == (True, None)


class _Unreachable(FakeTarget):
    async def read(self, namespace: str, name: str) -> Target:
        raise TransientError("apiserver unreachable", reason="ApiUnreachable")


async def test_an_unreachable_apiserver_holds_the_deletion_then_lets_go() -> None:
    w = world()
    await w.synced(0)
    down = _Unreachable(replicas=5)
    w.rec.target = down
    now = dt.datetime.now(dt.UTC)
    w.b["metadata"]["deletionTimestamp"] = now.isoformat()
    gone, event = await w.rec.release(w.b)
    assert not gone
    assert event is not None
    assert event.reason == "RestoreWaiting"
    w.b["metadata"]["deletionTimestamp"] = (now - dt.timedelta(seconds=301)).isoformat()
    gone, event = await w.rec.release(w.b)
    assert gone
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "not given back to unset" in event.message
    # a target that is gone has nothing pinned: the policy goes quietly
    w.target.exists = False
    w.rec.target = w.target
    assert await w.rec.release(w.b) == (True, None)


def _hpa(target: str = "crm") -> dict[str, Any]:
    return {"metadata": {"name": "h", "namespace": "ns"},
            "spec": {"scaleTargetRef": {"kind": "XynergyService", "name": target}}}  # fmt: skip


async def test_a_policy_stalled_by_an_hpa_lets_go_and_deletion_leaves_the_hpa_its_count() -> None:
    index = TargetIndex()
    w = world(index=index)
    index.observe_policy(w.b, deleted=False)
    index.seeded = True
    await w.synced(0)
    assert w.b["status"]["scaledTarget"]["lastWritten"] == 5
    index.observe_hpa(_hpa(), deleted=False)  # a person moves the target to an HPA
    await w.synced(30)
    assert "scaledTarget" not in w.b["status"]  # Stalled ConflictingHPA owns nothing
    assert not w.rec.needs_finalizer(w.b)
    # even with a record kept (stored before this release), deletion leaves the HPA's count
    w.b["status"]["scaledTarget"] = {"name": "crm", "lastWritten": 5}
    w.target.replicas = 5  # the HPA's own write happens to be the policy's last
    gone, event = await w.rec.release(w.b)
    assert gone
    assert w.target.restored == []
    assert w.target.replicas == 5
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "HorizontalPodAutoscaler ns/h scales it now" in event.message


async def test_deletion_leaves_a_target_another_policy_scales_now() -> None:
    index = TargetIndex()
    w = world(index=index)
    index.observe_policy(w.b, deleted=False)
    index.seeded = True
    await w.synced(0)
    younger = body(uid="u2", name="crm-2", created="2024-02-01T00:00:00Z")
    index.observe_policy(younger, deleted=False)  # takes over once this one is gone
    gone, event = await w.rec.release(w.b)
    assert gone
    assert w.target.restored == []
    assert event is not None
    assert event.reason == "TargetLeft"
    assert "ScalingPolicy ns/crm-2 scales it now" in event.message


async def test_a_paused_or_dry_run_policy_keeps_the_count_from_before_it() -> None:
    """Paused (or a dry run) then acting again: the next scale's record still names the
    target's count from before the policy, not the policy's own earlier write."""
    for change in ({"paused": True}, {"dryRun": True}):
        w = world(FakeTarget(replicas=3), load=350)
        await w.synced(0)
        assert w.target.scaled == [7], change
        w.b["spec"].update(change)
        await w.synced(30)
        assert w.b["status"]["scaledTarget"] == {
            "name": "crm", "originalReplicas": 3, "lastWritten": 7}, change  # fmt: skip
        assert w.rec.needs_finalizer(w.b), change
        w.b["spec"].update(dict.fromkeys(change, False))
        w.prom.load = 700
        await w.synced(60)
        assert w.target.scaled == [7, 14], change
        assert w.b["status"]["scaledTarget"]["originalReplicas"] == 3, change
        gone, event = await w.rec.release(w.b)
        assert gone
        assert w.target.replicas == 3, change
        assert event is not None
        assert event.reason == "TargetRestored"


async def test_deleting_a_paused_policy_gives_back_unless_edited_since() -> None:
    for edited in (False, True):
        w = world()
        await w.synced(0)
        w.b["spec"]["paused"] = True
        await w.synced(30)
        if edited:
            w.target.replicas = 9  # a person's edit while the policy is paused
        gone, event = await w.rec.release(w.b)
        assert gone
        assert w.target.replicas == (9 if edited else None)
        assert event is not None
        assert event.reason == ("TargetLeft" if edited else "TargetRestored")


async def test_an_invalid_spec_keeps_the_record_and_the_finalizer() -> None:
    w = world()
    await w.synced(0)
    w.b["spec"]["interval"] = "1ms"  # refused by the model (stored before the CRD rule)
    await w.synced(30)
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 5}
    assert w.rec.needs_finalizer(w.b)
    gone, _ = await w.rec.release(w.b)
    assert gone
    assert w.target.restored == [None]


async def test_a_changed_target_ref_drops_the_old_record_at_once() -> None:
    w = world(FakeTarget(replicas=3), load=350)
    await w.synced(0)
    assert w.target.scaled == [7]
    w.b["spec"]["targetRef"] = {"name": "other"}  # already at 7 (the fake serves one count)
    await w.synced(30)
    assert w.target.scaled == [7]
    assert "scaledTarget" not in w.b["status"]  # the old target keeps its count
    assert await w.rec.release(w.b) == (True, None)
    assert w.target.restored == []


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

    w = world(Two(), targetRef={"name": "old"})
    await w.synced(0)
    assert w.b["status"]["scaledTarget"] == {"name": "old", "originalReplicas": 3, "lastWritten": 7}
    w.b["spec"]["targetRef"] = {"name": "new"}
    await w.synced(30)
    assert w.b["status"]["scaledTarget"] == {"name": "new", "lastWritten": 5}
    gone, event = await w.rec.release(w.b)
    assert gone
    assert targets["new"].restored == [None]
    assert targets["new"].replicas is None
    assert event is not None
    assert "5 -> unset" in event.message


async def test_the_scale_is_recorded_before_it_is_written() -> None:
    w = world(load=200, record=True)
    await w.rec.reconcile(w.b, now=NOW, child=None)  # scales to 4; its status write is lost
    assert w.target.scaled == [4]
    assert w.records == [
        {"name": "crm", "originalReplicas": None, "lastWritten": None, "pending": 4}
    ]
    assert w.rec.needs_finalizer(w.b)
    gone, event = await w.rec.release(w.b)
    assert gone
    assert w.target.restored == [None]
    assert event is not None
    assert event.reason == "TargetRestored"
    assert "4 -> unset" in event.message


async def test_a_lost_status_write_leaves_no_stale_last_write() -> None:
    w = world(load=200, record=True)
    await w.synced(0)
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}  # pending cleared
    w.prom.load = 400
    await w.rec.reconcile(w.b, now=NOW + dt.timedelta(seconds=30), child=None)  # write lost
    assert w.target.scaled == [4, 8]
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4, "pending": 8}
    gone, event = await w.rec.release(w.b)
    assert gone
    assert w.target.restored == [None]
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_a_record_that_cannot_be_written_leaves_the_target_as_is() -> None:
    w = world(load=200)

    async def refused(namespace: str, name: str, record: ScaledTarget | None) -> None:
        raise TransientError("recording the scale: 503", reason="ApiUnavailable")

    w.rec.intend = refused
    result = await w.rec.reconcile(w.b, now=NOW, child=None)
    assert w.target.scaled == []
    assert result.status.model_dump(by_alias=True).get("scaledTarget") is None


async def test_an_invalid_spec_is_not_rewritten_on_every_retry() -> None:
    """An unreadable spec keeps the stored conditions: a retry that finds the same error
    changes nothing to write (no new lastTransitionTime)."""
    w = world()
    await w.synced(0)
    w.b["spec"]["interval"] = "1ms"
    await w.synced(30)
    stalled = [c for c in w.b["status"]["conditions"] if c["type"] == "Stalled"]
    assert [c["reason"] for c in stalled] == ["InvalidSpec"]
    again = await w.rec.reconcile(w.b, now=NOW + dt.timedelta(seconds=90), child=None)
    assert not status_changed(w.b["status"], again.status)
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 5}
