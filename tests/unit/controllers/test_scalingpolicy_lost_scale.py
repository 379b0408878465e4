"""A scale whose request fails after its record (status.scaledTarget.pending) was written is
settled by ownership: a timeout or 5xx is followed by a read of the target past the watch's
cache, and counts as the last write when the target holds the count by the operator's field
manager (managedFields), whatever other spec changes came since; that count by another
manager (a person's) or a refusal or 409 puts the record back as it was; not landed yet (or
a re-read that fails) keeps the pending count for a later sync to settle the same way. Syncs are written as the
core Controller writes them: compared with the status the sync read (before the intent
write), and skipped when unchanged."""

from __future__ import annotations

import datetime as dt

from _scaling_world import World, world, written
from test_scalingpolicy_reconciler import NOW, NS, FakeTarget

from controllers.core.errors import StalledError, TransientError
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


async def _at_4(target: Failing) -> World:
    """A policy that scaled its target (unset before) to 4, recorded."""
    w = world(target, load=200, record=True)
    await w.synced(0)
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}
    return w


async def test_a_scale_that_landed_with_its_response_lost_is_the_last_write_at_once() -> None:
    target = Failing(replicas=None)
    w = await _at_4(target)
    w.prom.load = 400
    target.fail = ["landed"]
    result = await w.rec.reconcile(w.b, now=NOW + dt.timedelta(seconds=30), child=None)
    assert target.replicas == 8
    assert target.rereads == 1
    assert [e.reason for e in result.events][:1] == ["Scaled"]
    written(w.b, result.status)
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 8}
    gone, event = await w.rec.release(w.b)
    assert gone
    assert target.replicas is None
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_a_first_scale_with_its_response_lost_keeps_the_record_and_finalizer() -> None:
    target = Failing(replicas=None)
    w = world(target, load=200, record=True)
    target.fail = ["landed"]
    await w.synced(0)
    assert target.replicas == 4
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}
    assert w.rec.needs_finalizer(w.b)
    gone, _ = await w.rec.release(w.b)
    assert gone
    assert target.restored == [None]


async def test_a_timed_out_scale_that_did_not_land_is_not_given_back_over_a_hand_edit() -> None:
    """Review L 4: the scale times out without landing, the policy is paused, a person
    scales the target by hand to exactly that count: deletion leaves the person's count."""
    target = Failing(replicas=None)
    w = await _at_4(target)
    w.prom.load = 400
    target.fail = ["timeout"]
    await w.synced(30)
    assert target.replicas == 4
    # not landed (yet): the pending count stays, for a later sync to settle
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4, "pending": 8}
    w.b["spec"]["paused"] = True
    await w.synced(60)
    target.edit(8)  # kubectl scale --replicas=8: spec.replicas now owned by kubectl
    gone, event = await w.rec.release(w.b)
    assert gone
    assert target.replicas == 8
    assert target.restored == []
    assert event is not None
    assert event.reason == "TargetLeft"


async def test_a_landed_scale_with_another_spec_change_since_is_still_ours() -> None:
    """Review N 1: a concurrent spec change (a rollout's promotion patch) moves the
    generation past the scale's; spec.replicas is still the operator's."""
    target = Failing(replicas=None)
    w = await _at_4(target)
    w.prom.load = 400
    target.fail = ["landed+edited"]
    await w.synced(30)
    assert target.replicas == 8
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 8}
    gone, _ = await w.rec.release(w.b)
    assert gone
    assert target.restored == [None]


async def test_a_scale_whose_outcome_cannot_be_read_back_stays_pending_until_it_can() -> None:
    target = Failing(replicas=None)
    w = await _at_4(target)
    w.prom.load = 400
    target.fail, target.blind = ["landed"], True
    await w.synced(30)
    assert target.replicas == 8
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4, "pending": 8}
    gone, event = await w.rec.release(w.b)  # cannot tell whose the 8 is yet: retried
    assert not gone
    assert event is not None
    assert event.reason == "RestoreWaiting"
    target.blind = False
    await w.synced(60)  # read back: the operator's own write
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 8}
    gone, event = await w.rec.release(w.b)
    assert gone
    assert target.replicas is None
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_refused_scales_leave_no_pending_count_stored() -> None:
    """A 422 and a 409 applied nothing: no re-read, the record is put back as the sync read
    it even when the held status written after it reads the same as before."""
    for how in ("refused", "conflict"):
        target = Failing(replicas=None)
        w = await _at_4(target)
        w.prom.load = 400
        target.fail = [how, how, how]
        await w.synced(30, 60, 90)
        assert target.scaled == [4], how
        assert target.rereads == 0, how
        assert w.records[-2] is not None
        assert w.records[-2]["pending"] == 8, how  # announced, then put back
        assert w.records[-1] == {"name": "crm", "originalReplicas": None, "lastWritten": 4,
                                 "pending": None}, how  # fmt: skip
        assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}, how


async def test_a_refused_first_scale_leaves_no_record() -> None:
    target = Failing(replicas=None)
    w = world(target, load=200, record=True)
    target.fail = ["refused", "refused"]
    await w.synced(0, 30)
    assert target.scaled == []
    assert "scaledTarget" not in w.b["status"]
    assert not w.rec.needs_finalizer(w.b)


class Slow(Failing):
    """Its next scale times out before the apiserver commits it (slow etcd): `commit` lands
    it later, as the operator's write."""

    late: int | None = None

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        if self.fail and self.fail[0] == "late":
            self.fail.pop(0)
            self.late = replicas
            raise TransientError(f"scaling XynergyService {name}: ReadTimeout",
                                 reason="ApiUnreachable")  # fmt: skip
        await super().scale(namespace, name, replicas)

    async def commit(self) -> None:
        assert self.late is not None
        await FakeTarget.scale(self, NS, "crm", self.late)


async def test_a_timed_out_scale_that_lands_after_the_re_read_is_learned_and_given_back() -> None:
    """Review N 1: the re-read sees 4, the write lands afterwards; the next sync learns the 8
    as the policy's own write (owned by its field manager), and deletion gives the target
    back its unset spec.replicas (on Cloud Run the 8 would stay a paid minimum)."""
    target = Slow(replicas=None)
    w = await _at_4(target)
    w.prom.load = 400
    target.fail = ["late"]
    await w.synced(30)
    assert (target.replicas, target.rereads) == (4, 1)
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4, "pending": 8}
    await target.commit()
    await w.synced(60)
    assert target.scaled == [4, 8]  # no second write: 8 is what the load asks
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 8}
    gone, event = await w.rec.release(w.b)
    assert gone
    assert target.replicas is None
    assert event is not None
    assert event.reason == "TargetRestored"


async def test_a_pending_count_a_person_set_by_hand_is_dropped_not_learned() -> None:
    """The write never lands; a person sets that very count: spec.replicas is kubectl's, so
    the next sync drops the pending count and deletion leaves the person's 8."""
    target = Slow(replicas=None)
    w = await _at_4(target)
    w.prom.load = 400
    target.fail = ["late"]
    await w.synced(30)
    target.edit(8)  # kubectl scale --replicas=8
    await w.synced(60)
    assert w.b["status"]["scaledTarget"] == {"name": "crm", "lastWritten": 4}
    gone, event = await w.rec.release(w.b)
    assert gone
    assert target.replicas == 8
    assert event is not None
    assert event.reason == "TargetLeft"


async def test_a_refused_scale_is_retried_with_a_backoff_not_written_twice_every_sync() -> None:
    """Review N 2: a scale refused at every try (403 RBAC) is tried again after 2, 4, then 8
    intervals while the count and the target stay the same; the syncs between write no
    intent and no withdrawal, and the held status says the refusal and the backoff."""
    target = Failing(replicas=None)
    w = await _at_4(target)
    w.prom.load = 400
    w.b["spec"]["interval"] = "30s"  # synced every 30 s below
    tries: list[int] = []
    before = len(w.records)
    for k in range(1, 17):
        target.fail = ["refused"]
        await w.synced(30 * k)
        if not target.fail:  # popped: the scale was tried
            tries.append(k)
    assert tries == [1, 3, 7, 15]
    assert len(w.records) - before == 2 * len(tries)  # an intent and its withdrawal per try
    ready = next(c for c in w.b["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert "422" in ready["message"]
    assert "tried again after 2 intervals" in ready["message"]
    # a changed target (e.g. RBAC fixed and the target edited) is tried at once
    target.fail = []
    target.edit(5)
    await w.synced(30 * 17)
    assert target.replicas == 8
