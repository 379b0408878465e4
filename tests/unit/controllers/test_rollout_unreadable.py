"""A Rollout whose spec this operator cannot read (InvalidSpec: a check an upgrade added, here
rolling maxSurge and maxUnavailable both 0) and an ended Cloud Run Rollout's deletion. A
Promoted or ended Rollout keeps its phase and stored status (only its Stalled condition says
InvalidSpec), so its finalizer and a blue-green keep window stay and a spec that reads again
carries on; a delivering one stalls as `_failed` stalls it (on Kubernetes no split claimed
that the gateway, which skips an unreadable Rollout, does not route); deleting an unreadable
one says what it leaves."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from test_rollout_lifecycle import (
    STEP,
    T0,
    World,
    _converge_other,
    _edit,
    _promoted_in_keep_window,
    _second,
)

from apis.conditions import Condition, check_invariants
from controllers.rollout.status import handing_over, needs_finalizer

pytestmark = pytest.mark.unit

UNREADABLE = {"rolling": {"maxSurge": 0, "maxUnavailable": 0}}
"""A strategy the Rollout schema no longer admits (both 0)."""


def _condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


async def test_an_unreadable_spec_keeps_a_promotion_in_its_keep_window() -> None:
    """Review L: Degraded written over Promoted dropped the keep window's finalizer, and once
    the spec read again the Rollout found itself superseded and retired the promoted revision
    that served everything (the target, not patched yet, runs the old one)."""
    world, now, promoted = await _promoted_in_keep_window()
    strategy = world.body["spec"]["strategy"]
    stored = copy.deepcopy(world.body["status"])
    assert needs_finalizer(world.body)
    world.body["spec"]["strategy"] = UNREADABLE
    world.body["metadata"]["generation"] = 2
    status = await world.converge(now)
    assert status.phase.value == "Promoted", "the phase is not the spec's to rewrite"
    assert world.body["status"]["scaleDownAt"] == stored["scaleDownAt"]
    assert world.body["status"]["stableImage"] == stored["stableImage"]
    assert world.body["status"]["traffic"] == stored["traffic"]
    assert world.body["status"]["message"] == stored["message"]
    stalled, ready = _condition(world.body, "Stalled"), _condition(world.body, "Ready")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.strategy" in stalled["message"]
    assert "the gateway does not route" in stalled["message"]
    assert [reason for reason, _ in world.events] == ["InvalidSpec"]
    assert needs_finalizer(world.body), "the keep window still holds the finalizer"

    world.body["spec"]["strategy"] = strategy  # readable again
    world.body["metadata"]["generation"] = 3
    status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted"
    assert not status.message.startswith("superseded"), status.message
    assert promoted in world.provider.deployments(), "the promoted revision still serves"
    assert status.scale_down_at is not None, "the keep window goes on"
    ready = _condition(world.body, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Promoted")
    assert not any(c["type"] == "Stalled" for c in world.body["status"]["conditions"])


async def test_an_unreadable_spec_of_a_kubernetes_split_claims_no_split() -> None:
    """The gateway skips a Rollout it cannot read (the target's own Service serves): the
    status says weight 0 and no traffic, as a stall mid-way on Kubernetes does (`_failed`),
    and keeps what the next readable converge needs (the stable image)."""
    world = World([{"setWeight": 50}, {"pause": {}}])
    now = T0
    for _ in range(4):
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= set(world.provider.deployments())
    assert (status.phase.value, status.canary_weight) == ("Paused", 50)
    assert status.traffic
    world.body["spec"]["strategy"] = UNREADABLE
    status = await world.converge(now)
    assert status.phase.value == "Degraded"
    assert status.canary_weight == 0
    assert status.traffic == []
    assert status.stable_image == "crm:1"
    assert status.message.startswith("spec.strategy")
    assert status.message.endswith(f"; all traffic goes back on {status.stable_revision}")
    assert _condition(world.body, "Stalled")["reason"] == "InvalidSpec"
    assert not needs_finalizer(world.body)


async def test_an_ended_rollout_that_reads_again_keeps_the_reason_it_ended_with() -> None:
    world = World([{"setWeight": 50}, {"pause": {}}], abort=True)
    now = T0
    for _ in range(4):
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= set(world.provider.deployments())
        if status.phase.value == "Aborted":
            break
    assert status.phase.value == "Aborted", status.message
    message = status.message
    world.body["spec"]["strategy"] = UNREADABLE
    status = await world.converge(now)
    assert (status.phase.value, status.message) == ("Aborted", message)
    assert _condition(world.body, "Stalled")["reason"] == "InvalidSpec"
    world.body["spec"]["strategy"] = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
    status = await world.converge(now + STEP)
    assert status.phase.value == "Aborted"
    stalled = _condition(world.body, "Stalled")
    assert stalled["reason"] != "InvalidSpec", "no spec error named once the spec reads"
    assert stalled["message"] == message


async def test_deleting_an_unreadable_rollout_stalled_while_promoting_says_what_it_leaves() -> None:
    """Review J 6b: a blue-green preview stalled while promoting (Degraded, weight 0,
    promotingSince set) holds the finalizer; deleting it with a spec naming no readable
    target said nothing at all."""
    world = World([])
    body = copy.deepcopy(world.body)
    body["spec"] = {"targetRef": {}, "image": "crm:2", "strategy": UNREADABLE}
    body["metadata"]["deletionTimestamp"] = _stamp(T0)
    body["status"] = {"phase": "Degraded", "stableRevision": "crm-00001",
                      "canaryRevision": "crm-ro-1", "canaryWeight": 0,
                      "promotingSince": _stamp(T0 - STEP)}  # fmt: skip
    assert needs_finalizer(body)
    gone, event = await world.reconciler.release(body)
    assert gone
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "TrafficNotRestored")
    assert "cannot read (spec.targetRef.name: Field required)" in event.message
    assert "promotion, written at 2026-12-01T11:59:59Z and not finished" in event.message
    assert "template may name crm-ro-1" in event.message
    assert "back to crm-00001 by hand" in event.message


async def test_deleting_an_unreadable_promotion_in_its_keep_window_says_what_it_leaves() -> None:
    world, now, promoted = await _promoted_in_keep_window()
    world.body["spec"]["strategy"] = UNREADABLE
    await world.converge(now)
    world.body["metadata"]["deletionTimestamp"] = _stamp(now)
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert gone
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "PromotionUnfinished")
    assert (
        f"XynergyService crm is left on the old revision (not patched to the promoted "
        f"revision {promoted}" in event.message
    )
    assert "patch its image to crm:2 by hand" in event.message
    assert world.client.target["spec"]["image"] == "crm:1"


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("target_ready", [True, False])
async def test_an_unreadable_spec_during_a_handover_keeps_the_hold(target_ready: bool) -> None:
    """Review Q 4: a Promoted Kubernetes Rollout handing over to an edit of its own spec
    (Reconciling HandingOver) whose spec then cannot be read: Stalled InvalidSpec removed the
    Reconciling condition, so the finalizer went and a newer Rollout of the target started
    over the promotion (`target_ready`: the target already runs the promoted revision, the
    hold being the HandingOver condition alone). The hold stays, Ready False says
    InvalidSpec, and the conditions stay well-formed (never Reconciling and Stalled both)."""
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    if target_ready:
        world.client.target["spec"]["image"] = "crm:2"
        world.settle()
    _edit(world, "crm:4")
    await world.converge(now)
    if not target_ready:
        world.provider.ready.discard("crm")
    assert handing_over(world.body["status"])
    assert needs_finalizer(world.body)
    strategy = world.body["spec"]["strategy"]
    world.body["spec"]["strategy"] = UNREADABLE
    world.body["metadata"]["generation"] += 1
    status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted"
    assert handing_over(world.body["status"]), world.body["status"]["conditions"]
    assert needs_finalizer(world.body), "the handover still holds the finalizer"
    ready = _condition(world.body, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.strategy" in ready["message"]
    assert "spec.strategy" in _condition(world.body, "Reconciling")["message"]
    assert [reason for reason, _ in world.events] == ["InvalidSpec"]
    conditions = [Condition.model_validate(c) for c in world.body["status"]["conditions"]]
    assert not check_invariants(
        generation=world.body["metadata"]["generation"],
        observed_generation=world.body["status"]["observedGeneration"],
        conditions=conditions,
    )
    other = await _converge_other(world, second, now + STEP)
    assert other.phase.value == "Pending", other.message
    assert "crm-2" in (other.message or "")
    world.body["spec"]["strategy"] = strategy  # readable again: the handover carries on
    world.body["metadata"]["generation"] += 1
    status = await world.converge(now + 2 * STEP)
    assert not any(c["type"] == "Stalled" for c in world.body["status"]["conditions"])
    assert _condition(world.body, "Ready")["reason"] != "InvalidSpec"
