"""The conflict index's seed (one list of policies and of HPAs at the first sync): an HPA or
policy deleted while those lists were in flight is not added back from their answer, and two
syncs waiting for the seed list once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_scalingpolicy_reconciler import FakeProm, FakeTarget, body, reconciler, status_of, sync

from apis.conditions import get_condition
from controllers.scalingpolicy.conflicts import TargetIndex

pytestmark = pytest.mark.unit


def _hpa(name: str = "h", uid: str = "hpa-1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"scaleTargetRef": {"kind": "XynergyService", "name": "crm"}}}  # fmt: skip


class SlowLists:
    """The seed's lists: answered with `policies` and `hpas` once `answer` is set."""

    def __init__(self, policies: list[dict[str, Any]], hpas: list[dict[str, Any]]) -> None:
        self.policies, self.hpas = policies, hpas
        self.answer = asyncio.Event()
        self.sent = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.calls += 1
        self.sent.set()
        await self.answer.wait()
        return self.policies, self.hpas


async def test_an_hpa_deleted_while_the_seed_lists_were_in_flight_stays_deleted() -> None:
    index = TargetIndex()
    rec = reconciler(FakeTarget(replicas=2), FakeProm(load=300), index=index)
    b = body()
    lists = SlowLists([b], [_hpa()])  # answered before the HPA's deletion
    rec.seed = lists
    syncing = asyncio.create_task(sync(rec, b))
    await lists.sent.wait()
    index.observe_hpa(_hpa(), deleted=True)  # its DELETED event, while the list is out
    lists.answer.set()
    status = status_of(await syncing)
    stalled = get_condition(status.conditions, "Stalled")
    assert stalled is None or stalled.status != "True", stalled
    assert index.conflict(("ns", "crm"), "u1") is None


async def test_a_policy_deleted_while_the_seed_lists_were_in_flight_claims_nothing() -> None:
    index = TargetIndex()
    rec = reconciler(FakeTarget(replicas=2), FakeProm(load=300), index=index)
    older = body(uid="u0", name="crm-old", created="2023-01-01T00:00:00Z")
    b = body()
    lists = SlowLists([older, b], [])
    rec.seed = lists
    syncing = asyncio.create_task(sync(rec, b))
    await lists.sent.wait()
    index.observe_policy(older, deleted=True)
    lists.answer.set()
    await syncing
    assert index.claims(("ns", "crm"))[0].uid == "u1"
    assert index.conflict(("ns", "crm"), "u1") is None


async def test_a_recreated_hpa_of_the_same_name_is_seeded() -> None:
    """Deletions are kept by uid: an HPA created again under the name is another object."""
    index = TargetIndex()
    index.begin_seed()
    index.observe_hpa(_hpa(uid="hpa-1"), deleted=True)
    index.seed([], [_hpa(uid="hpa-2")])
    conflict = index.conflict(("ns", "crm"), "u1")
    assert conflict is not None
    assert conflict.reason == "ConflictingHPA"


async def test_two_syncs_waiting_for_the_seed_list_once() -> None:
    index = TargetIndex()
    rec = reconciler(FakeTarget(replicas=2), FakeProm(load=300), index=index)
    one, two = body(), body(uid="u2", name="crm-2", created="2024-02-01T00:00:00Z")
    lists = SlowLists([one, two], [])
    rec.seed = lists
    syncs = [asyncio.create_task(sync(rec, b)) for b in (one, two)]
    await lists.sent.wait()
    lists.answer.set()
    results = await asyncio.gather(*syncs)
    assert lists.calls == 1
    stalled = get_condition(status_of(results[1]).conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "ConflictingPolicy"


class FailingLists(SlowLists):
    """The seed's lists fail (the apiserver refuses them) once `answer` is set."""

    async def __call__(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.calls += 1
        self.sent.set()
        await self.answer.wait()
        raise RuntimeError("listing scalingpolicies: 503")


async def test_syncs_waiting_for_a_failing_seed_share_it_and_fail_together() -> None:
    """Review N 3: the syncs that come while a seed is in flight wait for that one (not for
    seeds of their own, one after another); it fails them all at once, deletions seen
    meanwhile are no longer kept, and a later sync seeds again."""
    index = TargetIndex()
    rec = reconciler(FakeTarget(replicas=2), FakeProm(load=300), index=index)
    bodies = [body(uid=f"u{i}", name=f"crm-{i}") for i in range(3)]
    lists = FailingLists([], [])
    rec.seed = lists
    syncs = [asyncio.create_task(sync(rec, b)) for b in bodies]
    await lists.sent.wait()
    index.observe_hpa(_hpa(), deleted=True)
    lists.answer.set()
    results = await asyncio.gather(*syncs, return_exceptions=True)
    assert lists.calls == 1
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert not index.seeded
    # listed with the uid whose deletion the failed seed saw: that deletion is not kept
    # past the failure (a later list is answered after it), so the HPA is indexed
    again = SlowLists([], [_hpa()])
    again.answer.set()
    rec.seed = again
    await sync(rec, bodies[0])
    assert again.calls == 1
    assert index.seeded
    conflict = index.conflict(("ns", "crm"), "u0")
    assert conflict is not None
    assert conflict.reason == "ConflictingHPA"
