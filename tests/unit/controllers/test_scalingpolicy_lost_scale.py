"""A scale whose request fails after its record (status.scaledTarget.pending) was written: a
failure that may have applied it (a timeout, a 5xx) keeps the pending count in the status
written after it; a refusal (nothing applied) puts the record back as it was. Syncs are
written as the core Controller writes them: compared with the status the sync read (before
the intent write), and skipped when unchanged."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from test_scalingpolicy_reconciler import NOW, FakeProm, FakeTarget, body, reconciler
from test_scalingpolicy_release import recording, written

from controllers.core.errors import StalledError, TransientError
from controllers.core.status import status_changed
from controllers.scalingpolicy.reconciler import ScalingPolicyReconciler


class Failing(FakeTarget):
    """Its next scale fails: `landed` (applied, its response lost: httpx ReadTimeout),
    `timeout` (not applied), or `refused` (the apiserver's 422)."""

    fail: list[str]

    def __init__(self, replicas: int | None) -> None:
        super().__init__(replicas=replicas)
        self.fail = []

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        how = self.fail.pop(0) if self.fail else None
        if how == "refused":
            raise StalledError(f"scaling XynergyService {name}: 422", reason="ApiRejected")
        if how == "timeout":
            raise TransientError(f"scaling XynergyService {name}: ReadTimeout",
                                 reason="ApiUnreachable")  # fmt: skip
        await super().scale(namespace, name, replicas)
        if how == "landed":
            raise TransientError(f"scaling XynergyService {name}: ReadTimeout",
                                 reason="ApiUnreachable")  # fmt: skip


async def _synced(rec: ScalingPolicyReconciler, b: dict[str, Any], *seconds: float) -> None:
    for s in seconds:
        read = copy.deepcopy(b.get("status") or {})  # what the sync read, before any intent
        result = await rec.reconcile(b, now=NOW + dt.timedelta(seconds=s), child=None)
        if status_changed(read, result.status):
            written(b, result.status)


async def test_a_scale_that_landed_with_its_response_lost_is_given_back() -> None:
    target = Failing(replicas=None)
    prom = FakeProm(load=200)
    rec = reconciler(target, prom)
    b = body(maxInstances=20)
    recording(rec, b)
    await _synced(rec, b, 0)
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}
    prom.load = 400
    target.fail = ["landed"]
    await _synced(rec, b, 30)
    assert target.replicas == 8
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4, "pending": 8}
    await _synced(rec, b, 60, 90)  # steady at 8: nothing scaled, the record stays
    assert target.scaled == [4, 8]
    assert b["status"]["scaledTarget"]["pending"] == 8
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
    assert b["status"]["scaledTarget"] == {"name": "crm", "pending": 4}
    await _synced(rec, b, 30)
    assert rec.needs_finalizer(b)
    gone, _ = await rec.release(b)
    assert gone
    assert target.restored == [None]


async def test_a_lost_scale_that_landed_counts_as_the_last_write_of_the_next_record() -> None:
    target = Failing(replicas=None)
    prom = FakeProm(load=200)
    rec = reconciler(target, prom)
    b = body(maxInstances=20)
    recording(rec, b)
    await _synced(rec, b, 0)
    prom.load = 400
    target.fail = ["landed"]
    await _synced(rec, b, 30)  # 8 landed, its response lost
    prom.load = 600
    target.fail = ["timeout"]
    await _synced(rec, b, 60)  # 12 did not land
    assert target.replicas == 8
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 8, "pending": 12}
    gone, event = await rec.release(b)
    assert gone
    assert target.replicas is None
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_refused_scales_leave_no_pending_count_stored() -> None:
    target = Failing(replicas=None)
    prom = FakeProm(load=200)
    rec = reconciler(target, prom)
    b = body(maxInstances=20)
    records = recording(rec, b)
    await _synced(rec, b, 0)
    prom.load = 400
    target.fail = ["refused", "refused"]
    await _synced(rec, b, 30, 60)
    assert target.scaled == [4]
    assert records[-1]["pending"] == 8  # announced, then refused: the held status nulls it
    assert b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}


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
