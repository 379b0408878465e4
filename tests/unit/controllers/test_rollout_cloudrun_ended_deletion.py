"""Deleting an ended Cloud Run Rollout (aborted or rolled back: its stable revision pinned by
name at 100 %), or a delivering one whose target runs the stable spec, routes the service's
traffic to LATEST before it goes, so a later edit of the
XynergyService (whose controller does not manage Cloud Run traffic) serves; it holds the
finalizer until then. A Rollout delivering to the same target keeps the traffic. A Rollout
whose spec cannot be read is released from its stored status the same way. (And a Rollout
waiting on another's give-back lists the target's Rollouts once per poll.) Over the fake
Cloud Run API and the real backend (`_cloudrun_world`)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from _cloudrun_world import CANARY, NAME, STABLE, STEP, T0, World, at_last_step, rollout_body
from _merge_patch import apply_merge_patch
from fakes.cloudrun import FakeCloudRun

from apis.v1alpha1.rollout import RolloutPhase, RolloutStatus
from controllers.core.status import merge_patch, with_generation
from controllers.rollout.status import needs_finalizer

pytestmark = pytest.mark.unit

NEW_IMAGE = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
UNREADABLE = {"rolling": {"maxSurge": 0, "maxUnavailable": 0}}


async def _aborted(cloud_run: FakeCloudRun) -> tuple[World, str, dt.datetime]:
    world, canary, now = await at_last_step(cloud_run)
    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase.value == "Aborted", status.message
    assert world.traffic() == [(STABLE, 100, "")], "pinned by name"
    return world, canary, now + STEP


def _deleted(world: World, now: dt.datetime) -> dict[str, Any]:
    body = copy.deepcopy(world.body)
    body["metadata"]["deletionTimestamp"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return body


async def _edit_target(world: World) -> str:
    """The XynergyService edited (a new image): its controller deploys a revision; which."""
    world.client.target["spec"]["image"] = NEW_IMAGE
    await world.target_converge()
    return world.revisions()[-1]


async def test_deleting_an_aborted_rollout_routes_its_pinned_traffic_to_latest(
    cloud_run: FakeCloudRun,
) -> None:
    world, canary, now = await _aborted(cloud_run)
    assert needs_finalizer(world.body), "the finalizer is held while the stable is pinned"
    gone, event = await world.reconciler.release(_deleted(world, now))
    assert gone
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "Released")
    assert "deleted while Aborted: all traffic goes to the latest revision" in event.message
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {STABLE: 100}, "nothing moves: LATEST is the stable revision"
    assert world.template_revision() == STABLE

    edited = await _edit_target(world)
    assert edited not in (STABLE, canary)
    assert world.served() == {edited: 100}, "the target's edit serves once the Rollout is gone"


async def test_deleting_an_aborted_rollout_leaves_a_delivering_rollouts_split(
    cloud_run: FakeCloudRun,
) -> None:
    world, _, now = await _aborted(cloud_run)
    newer = rollout_body(NAME, CANARY, deadline=60)
    newer["metadata"].update(name="ro-2", uid="uid-ro-2")
    newer["spec"]["image"] = NEW_IMAGE
    world.client.rollouts = [world.body, newer]
    status = await world.converge(now, newer)
    assert status.phase.value == "Progressing", status.message
    split = world.traffic()
    gone, event = await world.reconciler.release(_deleted(world, now + STEP))
    assert gone
    assert event is not None
    assert "its traffic is left to Rollout ro-2, delivering to XynergyService crm" in (
        event.message
    )
    assert world.traffic() == split, "the delivering Rollout's split is its own"


async def test_a_superseded_rollout_holds_no_finalizer(cloud_run: FakeCloudRun) -> None:
    """Found superseded, an ended Rollout routed its traffic to LATEST already."""
    world, _, now = await _aborted(cloud_run)
    edited = await _edit_target(world)
    status = await world.converge(now)
    assert status.message.startswith("superseded: "), status.message
    assert world.served() == {edited: 100}
    assert not needs_finalizer(world.body)


async def test_a_held_latest_deletion_says_it_routes_latest(cloud_run: FakeCloudRun) -> None:
    """Cloud Run refusing the operator holds the deletion; the status and the Event say the
    traffic goes to LATEST, not "back to the stable revision"."""
    world, _, _ = await _aborted(cloud_run)
    cloud_run.deny("the operator lost run.services.update")
    body = _deleted(world, dt.datetime.now(dt.UTC))  # the reconciler's clock: not past due
    gone, event = await world.reconciler.release(body)
    cloud_run.deny(None)
    assert not gone
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "DeletionBlocked")
    assert "waits to route all traffic of XynergyService crm to its latest revision" in (
        event.message
    )
    assert "gcloud run services update-traffic crm --to-latest" in event.message
    status = world.reconciler.deletion_status(body)
    assert status is not None
    assert status.message is not None
    assert "stable revision" not in status.message
    assert world.traffic() == [(STABLE, 100, "")]


async def test_deleting_an_unreadable_rollout_mid_split_gives_it_back(
    cloud_run: FakeCloudRun,
) -> None:
    """Review L 3: a Rollout at 20 % whose spec no longer reads (a check an upgrade added)
    stalls keeping its split on record; its deletion gave nothing back (a Warning only), so
    20 % stayed on the new revision, pinned by name. Now it is given back from what the
    stored status holds, and the traffic goes to LATEST."""
    world, canary, now = await at_last_step(cloud_run)
    world.body["spec"]["strategy"] = UNREADABLE
    status = await world.converge(now)
    assert (status.phase.value, status.canary_weight) == ("Degraded", 20)
    assert world.served() == {STABLE: 80, canary: 20}, "an unreadable spec moves nothing"
    assert needs_finalizer(world.body)
    gone, event = await world.reconciler.release(_deleted(world, now + STEP))
    assert gone
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "Released"), event.message
    assert f"its split given back to {STABLE}" in event.message
    assert world.served() == {STABLE: 100}
    assert world.traffic() == [("LATEST", 100, "")]


def _newer(**spec: Any) -> dict[str, Any]:
    body = rollout_body(NAME, CANARY, deadline=60)
    body["metadata"].update(name="ro-2", uid="uid-ro-2")
    body["spec"].update(image=NEW_IMAGE, **spec)
    return body


async def test_a_rollout_starting_before_its_status_is_stored_keeps_its_canary_tag(
    cloud_run: FakeCloudRun,
) -> None:
    """A newer Rollout's first converge has written its new revision with the `canary` tag,
    and its Progressing status is not stored yet (the write after the converge): the ended
    one's deletion must not route LATEST over it (before: only Progressing and Paused
    siblings were skipped, so the tag and the stable pin went). It waits (review S 3: it let
    go saying the traffic was left to a Rollout delivering, which none was yet); once the
    newer one's status says Progressing, it lets go, its traffic that one's."""
    world, _, now = await _aborted(cloud_run)
    newer = _newer()
    world.client.rollouts = [world.body, newer]
    result = await world.reconciler.reconcile(copy.deepcopy(newer), now=now, child=None)
    assert isinstance(result.status, RolloutStatus)
    assert result.status.phase == RolloutPhase.PROGRESSING, result.status.message
    split = world.traffic()
    assert "canary" in {tag for _, _, tag in split}, split
    assert "status" not in newer, "its status is not stored yet"
    body = _deleted(world, dt.datetime.now(dt.UTC))  # the reconciler's clock: not past due
    gone, event = await world.reconciler.release(body)
    assert not gone, "nothing delivers yet: the deletion waits"
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "DeletionWaiting")
    assert "Rollout ro-2 of the same target may be starting" in event.message
    assert world.traffic() == split
    newer["status"] = result.status.model_dump(by_alias=True, exclude_none=True, mode="json")
    gone, event = await world.reconciler.release(body)
    assert gone
    assert event is not None
    assert "its traffic is left to Rollout ro-2, delivering to XynergyService crm" in (
        event.message
    )
    assert world.traffic() == split


async def test_a_sibling_held_back_by_spec_paused_does_not_keep_the_traffic_pinned(
    cloud_run: FakeCloudRun,
) -> None:
    world, _, now = await _aborted(cloud_run)
    world.client.rollouts = [world.body, _newer(paused=True)]
    gone, _ = await world.reconciler.release(_deleted(world, now))
    assert gone
    assert world.traffic() == [("LATEST", 100, "")]


async def test_a_held_deletion_of_a_rollout_whose_target_moved_on_says_latest(
    cloud_run: FakeCloudRun,
) -> None:
    """Stalled mid-way (Cloud Run refused the operator at 20 %), then its target edited: its
    deletion routes LATEST (`_release_moved_on`); held by Cloud Run refusing again, it said
    it waited "to return all traffic to the stable revision"."""
    world, canary, now = await at_last_step(cloud_run)
    cloud_run.deny("the operator lost run.services.update")
    status = await world.converge(now)
    assert (status.phase.value, status.canary_weight) == ("Degraded", 20), status.message
    world.client.target["spec"]["image"] = NEW_IMAGE  # moved on (its controller refused too)
    body = _deleted(world, dt.datetime.now(dt.UTC))  # the reconciler's clock: not past due
    gone, event = await world.reconciler.release(body)
    cloud_run.deny(None)
    assert not gone
    assert event is not None
    assert "waits to route all traffic of XynergyService crm to its latest revision" in (
        event.message
    )
    assert "return all traffic to the stable revision" not in event.message
    assert world.served() == {STABLE: 80, canary: 20}


async def test_a_rollout_waiting_on_a_give_back_lists_its_siblings_once_per_poll(
    cloud_run: FakeCloudRun,
) -> None:
    """A newer Rollout waits (Pending) for a stalled promotion's give-back: each poll is one
    list of the target's Rollouts (`_refuse_overlap` and `_wait_for_give_back` read the same
    list; before, each listed them)."""
    world, _, now = await at_last_step(cloud_run, operation_timeout=0.2)
    status = await world.stall_mid_promotion(now)
    assert status.promoting_since is not None
    newer = _newer()
    world.client.rollouts = [world.body, newer]
    lists = 0
    listed = world.client.list

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal lists
        lists += 1
        return listed(*args, **kwargs)

    world.client.list = counted  # type: ignore[method-assign]
    status = await world.converge(now + 2 * STEP, newer)
    assert status.phase.value == "Pending", status.message
    assert "Rollout ro stalled on XynergyService crm" in status.message
    assert lists == 1


async def test_an_undone_rollout_is_not_taken_for_superseded_at_its_next_converge(
    cloud_run: FakeCloudRun,
) -> None:
    """Its status written as the core writes it (a JSON merge patch): going back to a stable
    revision with no env or args wrote stableTemplate `{}`, which changes nothing in a merge
    patch, so the promoted env and args stayed; the next converge (an ended Cloud Run
    Rollout now holds its finalizer, whose addition is one) found the target "moved on" and
    routed LATEST over the undo's pin."""
    world = World(cloud_run, strategy={"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}})
    world.body["spec"]["template"] = {"env": [{"name": "MODE", "value": "new"}]}
    await world.deploy()
    _, now = await world.until("Paused", T0)
    world.ask("promote/1")
    status, now = await world.until("Promoted", now)
    await world.target_converge()
    world.ask("undo/1")
    stored = copy.deepcopy(world.body["status"])
    result = await world.reconciler.reconcile(copy.deepcopy(world.body), now=now, child=None)
    written = with_generation(result.status, world.body)
    # as the core does: nested keys the status no longer sets are nulled
    world.body["status"] = apply_merge_patch(stored, merge_patch(written, stored))
    assert world.body["status"]["phase"] == "RolledBack"
    assert world.body["status"]["stableTemplate"] == {}, "known to be empty"
    await world.target_converge()
    status = await world.converge(now + STEP)
    assert not status.message.startswith("superseded"), status.message
    assert world.traffic() == [(STABLE, 100, "")], "the undo's pin stays while it exists"


async def test_deleting_a_delivering_rollout_routes_the_stable_revision_as_latest(
    cloud_run: FakeCloudRun,
) -> None:
    """Review O (3). Deleting a Progressing Rollout returned all traffic to the stable revision
    pinned by name and let go: once it was gone the service stayed pinned, and a later edit
    of the XynergyService made a revision that got no traffic (as for an ended one before).
    The target runs the stable spec and no other Rollout delivers: all traffic goes back as
    LATEST 100 % (the stable revision: the service's template names it), in one write."""
    world, canary, now = await at_last_step(cloud_run)
    assert world.traffic() == [(STABLE, 80, "stable"), (canary, 20, "canary")]
    writes = world.writes()
    gone, event = await world.reconciler.release(_deleted(world, now))
    assert gone
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "TrafficRestored")
    assert f"all traffic back on the stable revision {STABLE} ({canary} gets none)" in (
        event.message
    )
    assert "routed as LATEST 100 %" in event.message
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert world.writes() == writes + 1, "one write"

    edited = await _edit_target(world)
    assert edited not in (STABLE, canary)
    assert world.served() == {edited: 100}, "the target's edit serves once the Rollout is gone"


async def test_deleting_a_delivering_rollout_pins_the_stable_while_another_may_start(
    cloud_run: FakeCloudRun,
) -> None:
    """Another Rollout of the target that may start now (not started, not held back): its
    first write (the new revision with its tag) may be in before its status says so, and a
    LATEST written meanwhile would take its tag away; the stable revision is pinned by name,
    as before."""
    world, _, now = await at_last_step(cloud_run)
    newer = rollout_body(NAME, CANARY, deadline=60)
    newer["metadata"].update(name="ro-2", uid="uid-ro-2")
    newer["spec"]["image"] = NEW_IMAGE
    world.client.rollouts = [world.body, newer]
    gone, event = await world.reconciler.release(_deleted(world, now))
    assert gone
    assert event is not None
    assert event.reason == "TrafficRestored"
    assert "LATEST" not in event.message
    assert world.traffic() == [(STABLE, 100, "")]


async def test_deleting_a_superseded_rollout_waits_for_a_starting_sibling_then_routes_latest(
    cloud_run: FakeCloudRun,
) -> None:
    """Review S 3: an aborted Rollout whose target moved on, found superseded while another
    Rollout of the target may be starting (LATEST left until it has), was deleted: it let go
    saying its traffic was left to the Rollout delivering to the target, none delivering; the
    stable revision stayed pinned by name, and with that Rollout deleted without starting
    nothing ever routed LATEST. The deletion waits (DeletionWaiting); once that Rollout is
    gone, LATEST is routed and the target's edit serves."""
    world, _, now = await _aborted(cloud_run)
    world.client.rollouts = [world.body, _newer()]
    edited = await _edit_target(world)
    status = await world.converge(now)
    assert "once Rollout ro-2 has started" in (status.message or ""), status.message
    assert needs_finalizer(world.body)
    body = _deleted(world, dt.datetime.now(dt.UTC))  # the reconciler's clock: not past due
    gone, event = await world.reconciler.release(body)
    assert not gone
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "DeletionWaiting")
    assert "Rollout ro-2 of the same target may be starting" in event.message
    assert world.traffic() == [(STABLE, 100, "")], "its tag, once written, is not taken"
    world.client.rollouts = [world.body]  # deleted without starting
    gone, event = await world.reconciler.release(body)
    assert gone
    assert event is not None
    assert "all traffic goes to its latest revision (LATEST 100 %)" in event.message
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {edited: 100}, "the target's edit serves"


async def test_deleting_a_superseded_stalled_promotion_does_not_wait_for_the_rollout_waiting_on_it(
    cloud_run: FakeCloudRun,
) -> None:
    """Review S 1 on deletion: a Rollout stalled with its promotion written, its target
    edited, is deleted while a newer Rollout waits (Pending) for its give-back: the deletion
    does not wait for that one (it waits for this Rollout): LATEST is routed and it goes."""
    world, _, now = await at_last_step(cloud_run)
    stalled = await world.stall_mid_promotion(now)
    assert stalled.promoting_since is not None
    newer = _newer()
    world.client.rollouts = [world.body, newer]
    waiting = await world.converge(now + 2 * STEP, newer)
    assert waiting.phase.value == "Pending", waiting.message
    edited = await _edit_target(world)
    gone, event = await world.reconciler.release(_deleted(world, dt.datetime.now(dt.UTC)))
    assert gone
    assert event is not None
    assert "all traffic goes to its latest revision (LATEST 100 %)" in event.message
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {edited: 100}


async def test_a_held_deletions_retry_leaves_the_split_of_a_sibling_that_started_meanwhile(
    cloud_run: FakeCloudRun,
) -> None:
    """A Rollout stalled mid-way (Degraded, its 20 % split not routed back yet) is deleted
    while a newer Rollout of the target has not started: the first try gives the split back
    and the deletion waits for the newer one (`_latest_held`). The newer one starts (its own
    canary split); the deletion's next try must not route the stable revision over that
    split again, and lets go saying the traffic is left to it (review U 1)."""
    world, _, now = await at_last_step(cloud_run)
    world.body["status"]["phase"] = "Degraded"  # stalled mid-way: its split still routed
    newer = _newer()
    world.client.rollouts = [world.body, newer]
    body = _deleted(world, dt.datetime.now(dt.UTC))
    gone, _ = await world.reconciler.release(body)
    assert not gone
    started = await world.converge(now + STEP, newer)
    assert started.phase is RolloutPhase.PROGRESSING
    split = world.traffic()

    gone, event = await world.reconciler.release(body)

    assert gone
    assert world.traffic() == split
    assert event is not None
    assert "left to Rollout ro-2" in event.message


async def test_deleting_a_stalled_promotion_does_not_wait_for_the_rollout_waiting_on_it(
    cloud_run: FakeCloudRun,
) -> None:
    """A Rollout stalled with its promotion written (Degraded, promotingSince), its target
    not edited, and a newer Rollout waiting Pending for its give-back. Deleting it gives the
    promotion back and must not then wait for the newer one (which waits for it, reading its
    stored status, still Degraded with promotingSince): it routes LATEST and lets go at once,
    not after spec.progressDeadlineSeconds (review U 2)."""
    world, _, now = await at_last_step(cloud_run)
    stalled = await world.stall_mid_promotion(now)
    assert stalled.promoting_since is not None
    newer = _newer()
    world.client.rollouts = [world.body, newer]
    waiting = await world.converge(now + 2 * STEP, newer)
    assert waiting.phase is RolloutPhase.PENDING
    body = _deleted(world, dt.datetime.now(dt.UTC))

    gone, event = await world.reconciler.release(body)

    assert gone
    assert event is not None
    assert event.reason == "Released"
    assert world.traffic() == [("LATEST", 100, "")]  # not left pinned by revision name
