"""A scale whose request fails after its record (status.scaledTarget.pending) was written is
settled in the same sync: a timeout or 5xx is followed by a read of the target past the
watch's cache, and counts as the last write only when the target holds the count one
generation on (the one spec change since is the policy's); anything else (not landed, a
refusal, a 409, a re-read that fails) puts the record back as it was. Syncs are written as the
core Controller writes them: compared with the status the sync read (before the intent
write), and skipped when unchanged."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from test_scalingpolicy_reconciler import NOW, FakeProm, FakeTarget, body, reconciler
from test_scalingpolicy_release import recording, written

from controllers.core.errors import StalledError, TransientError
from controllers.core.status import status_changed
from controllers.scalingpolicy.reconciler import ScalingPolicyReconciler
from controllers.scalingpolicy.target import NotAppliedError, Target


class Failing(FakeTarget):
    """Its next scale fails: `landed` (applied, its response lost: httpx ReadTimeout),
    `timeout` (not applied), `refused` (the apiserver's 422), `conflict` (its 409) or
    `landed+edited` (applied, then another spec change before the re-read). With `blind`,
    the re-read after a failure cannot reach the apiserver either."""

    fail: list[str]
    blind: bool

    def __init__(self, replicas: int | None) -> None:
        super().__init__(replicas=replicas)
        self.fail = []
        self.blind = False
        self.rereads = 0

    async def reread(self, namespace: str, name: str) -> Target:
        self.rereads += 1
        if self.blind:
            raise TransientError(f"reading XynergyService {name}: ConnectError",
                                 reason="ApiUnreachable")  # fmt: skip
        return await super().reread(namespace, name)

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        how = self.fail.pop(0) if self.fail else None
        if how == "refused":
            raise StalledError(f"scaling XynergyService {name}: 422", reason="ApiRejected")
        if how == "conflict":
            raise NotAppliedError(f"scaling XynergyService {name}: 409", reason="Conflict")
        if how == "timeout":
            raise TransientError(f"scaling XynergyService {name}: ReadTimeout",
                                 reason="ApiUnreachable")  # fmt: skip
        await super().scale(namespace, name, replicas)
        if how == "landed+edited":
            self.generation += 1  # e.g. a new image written meanwhile
        if how in ("landed", "landed+edited"):
            raise TransientError(f"scaling XynergyService {name}: ReadTimeout",
                                 reason="ApiUnreachable")  # fmt: skip


async def _synced(rec: ScalingPolicyReconciler, b: dict[str, Any], *seconds: float) -> None:
    for s in seconds:
        read = copy.deepcopy(b.get("status") or {})  # what the sync read, before any intent
        result = await rec.reconcile(b, now=NOW + dt.timedelta(seconds=s), child=None)
        if status_changed(read, result.status):
            written(b, result.status)


async def _at_4(target: Failing) -> tuple[ScalingPolicyReconciler, dict[str, Any], FakeProm]:
    """A policy that scaled its target (unset before) to 4, recorded."""
    prom = FakeProm(load=200)
    rec = reconciler(target, prom)
    b = body(maxInstances=20)
    recording(rec, b)
    await _synced(rec, b, 0)
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}
    return rec, b, prom


async def test_a_scale_that_landed_with_its_response_lost_is_the_last_write_at_once() -> None:
    target = Failing(replicas=None)
    rec, b, prom = await _at_4(target)
    prom.load = 400
    target.fail = ["landed"]
    result = await rec.reconcile(b, now=NOW + dt.timedelta(seconds=30), child=None)
    assert target.replicas == 8
    assert target.rereads == 1
    assert [e.reason for e in result.events][:1] == ["Scaled"]
    written(b, result.status)
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 8}
    gone, event = await rec.release(b)
    assert gone
    assert target.replicas is None
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_a_first_scale_with_its_response_lost_keeps_the_record_and_finalizer() -> None:
    target = Failing(replicas=None)
    rec = reconciler(target, FakeProm(load=200))
    b = body(maxInstances=20)
    recording(rec, b)
    target.fail = ["landed"]
    await _synced(rec, b, 0)
    assert target.replicas == 4
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}
    assert rec.needs_finalizer(b)
    gone, _ = await rec.release(b)
    assert gone
    assert target.restored == [None]


async def test_a_timed_out_scale_that_did_not_land_is_not_given_back_over_a_hand_edit() -> None:
    """Review L 4: the scale times out without landing, the policy is paused, a person
    scales the target by hand to exactly that count: deletion leaves the person's count."""
    target = Failing(replicas=None)
    rec, b, prom = await _at_4(target)
    prom.load = 400
    target.fail = ["timeout"]
    await _synced(rec, b, 30)
    assert target.replicas == 4
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}  # pending settled
    b["spec"]["paused"] = True
    await _synced(rec, b, 60)
    target.edit(8)  # kubectl scale --replicas=8
    gone, event = await rec.release(b)
    assert gone
    assert target.replicas == 8
    assert target.restored == []
    assert event is not None
    assert event.reason == "TargetLeft"


async def test_a_landed_scale_with_another_spec_change_since_is_not_taken_as_ours() -> None:
    target = Failing(replicas=None)
    rec, b, prom = await _at_4(target)
    prom.load = 400
    target.fail = ["landed+edited"]
    await _synced(rec, b, 30)
    assert target.replicas == 8
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}


async def test_a_scale_whose_outcome_cannot_be_read_back_is_taken_as_not_landed() -> None:
    target = Failing(replicas=None)
    rec, b, prom = await _at_4(target)
    prom.load = 400
    target.fail, target.blind = ["landed"], True
    await _synced(rec, b, 30)
    assert target.replicas == 8
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}
    gone, event = await rec.release(b)
    assert gone
    assert target.replicas == 8  # left as is: it might be a person's
    assert event is not None
    assert event.reason == "TargetLeft"


async def test_refused_scales_leave_no_pending_count_stored() -> None:
    """A 422 and a 409 applied nothing: no re-read, the record is put back as the sync read
    it even when the held status written after it reads the same as before."""
    for how in ("refused", "conflict"):
        target = Failing(replicas=None)
        rec, b, prom = await _at_4(target)
        records = recording(rec, b)
        prom.load = 400
        target.fail = [how, how, how]
        await _synced(rec, b, 30, 60, 90)
        assert target.scaled == [4], how
        assert target.rereads == 0, how
        assert records[-2] is not None
        assert records[-2]["pending"] == 8, how  # announced, then put back
        assert records[-1] == {"name": "crm", "originalReplicas": None, "lastWritten": 4,
                               "pending": None}, how  # fmt: skip
        assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}, how


async def test_a_refused_first_scale_leaves_no_record() -> None:
    target = Failing(replicas=None)
    rec = reconciler(target, FakeProm(load=200))
    b = body(maxInstances=20)
    recording(rec, b)
    target.fail = ["refused", "refused"]
    await _synced(rec, b, 0, 30)
    assert target.scaled == []
    assert "scaledTarget" not in b["status"]
    assert not rec.needs_finalizer(b)
