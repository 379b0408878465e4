"""A Cloud Run Rollout's `undo`, and an ended one found superseded (review Q 1-3). `undo` gives
the service's template back to the previous revision with its traffic (a deletion right after
routes LATEST, which serves the template's revision); an undo to a revision with no env, args
or resources stores that template as known to be empty (the status written as the core writes
it, a JSON merge patch over the stored status), so a later edit of only the target's env
supersedes it; and an ended Rollout is marked superseded (its finalizer then goes) only once
its pinned traffic went to LATEST or a delivering Rollout owns it, not while LATEST waits for
one that may be starting. Over the fake Cloud Run API and the real backend
(`_cloudrun_world`)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from _cloudrun_world import CANARY, NAME, STABLE, STEP, T0, World, at_last_step, rollout_body
from _merge_patch import apply_merge_patch
from fakes.cloudrun import FakeCloudRun

from apis.v1alpha1.rollout import RolloutStatus
from controllers.core.status import StatusWriter
from controllers.rollout.status import needs_finalizer

pytestmark = pytest.mark.unit

CANARY_PAUSE = {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}
EDITED_IMAGE = "us-docker.pkg.dev/xynergy-test/platform/crm:9"


class _StatusStore:
    """The apiserver's status subresource as the core's StatusWriter patches it (a JSON merge
    patch applied to the stored status)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    async def patch(self, resource: Any, name: str, patch: Any, **_: Any) -> None:
        self.body["status"] = apply_merge_patch(self.body.get("status"), patch["status"])


async def _core_converge(world: World, now: dt.datetime) -> RolloutStatus:
    """A converge whose status is written by the core's StatusWriter."""
    result = await world.reconciler.reconcile(copy.deepcopy(world.body), now=now, child=None)
    writer = StatusWriter(_StatusStore(world.body), limit=asyncio.Semaphore(1))  # type: ignore[arg-type]
    await writer.write(SimpleNamespace(Status="status"), copy.deepcopy(world.body), result.status)
    return RolloutStatus.model_validate(world.body["status"])


async def _promoted(world: World) -> tuple[str, dt.datetime]:
    await world.deploy()
    _, now = await world.until("Paused", T0)
    world.ask("promote/1")
    status, now = await world.until("Promoted", now)
    await world.target_converge()
    return str(status.canary_revision), now


def _deleted(world: World, now: dt.datetime) -> dict[str, Any]:
    body = copy.deepcopy(world.body)
    body["metadata"]["deletionTimestamp"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return body


async def test_undo_gives_the_template_back_so_a_deletion_right_after_serves_the_stable(
    cloud_run: FakeCloudRun,
) -> None:
    """Review Q 1: undo routed the previous revision by name and left the template naming the
    promoted one; a deletion before the target's controller converged routed LATEST, which is
    the template's revision: all traffic to the release just undone."""
    world = World(cloud_run, strategy=CANARY_PAUSE)
    promoted, now = await _promoted(world)
    assert world.template_revision() == promoted
    world.ask("undo/1")
    status = await _core_converge(world, now)
    assert status.phase is not None
    assert status.phase.value == "RolledBack", status.message
    assert world.template_revision() == STABLE, "the template names the previous revision"
    assert world.traffic() == [(STABLE, 100, "")]
    assert len(world.revisions()) == 2, "no new revision for the undo"
    assert needs_finalizer(world.body)
    gone, event = await world.reconciler.release(_deleted(world, now + STEP))
    assert gone
    assert event is not None
    assert event.reason == "Released", event
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {STABLE: 100}, "LATEST is the stable revision, not the undone one"


async def test_an_env_only_edit_after_undo_to_a_revision_without_env_supersedes_it(
    cloud_run: FakeCloudRun,
) -> None:
    """Review Q 2: the undo stored no stableTemplate (unknown: the image alone compared), so
    an edit of only the target's env (same image) never superseded the Rollout, which kept
    the stable revision pinned by name: the edit's revision got no traffic."""
    world = World(cloud_run, strategy=CANARY_PAUSE)
    world.body["spec"]["template"] = {"env": [{"name": "MODE", "value": "new"}]}
    _, now = await _promoted(world)
    assert world.body["status"]["stableTemplate"]["env"], "the promoted env is stored"
    world.ask("undo/1")
    await _core_converge(world, now)
    # known empty, not unknown: the promoted env removed from the stored status
    assert world.body["status"]["stableTemplate"] == {}
    await world.target_converge()
    status = await _core_converge(world, now + STEP)
    assert not (status.message or "").startswith("superseded"), status.message
    assert world.traffic() == [(STABLE, 100, "")], "the undo's pin stays while it exists"
    world.client.target["spec"]["env"] = [{"name": "FLAG", "value": "on"}]  # same image
    await world.target_converge()
    edited = world.revisions()[-1]
    status = await _core_converge(world, now + 2 * STEP)
    assert (status.message or "").startswith("superseded"), status.message
    assert "with another env, args or resources" in (status.message or "")
    assert world.served() == {edited: 100}, "the env edit serves"
    assert not needs_finalizer(world.body)


async def test_superseded_is_not_marked_while_latest_waits_for_a_sibling_that_never_starts(
    cloud_run: FakeCloudRun,
) -> None:
    """Review Q 3: found superseded while another Rollout of the target might be starting,
    LATEST was skipped but the superseded marker written: never retried, `pinned` false, the
    finalizer gone, the target's edit never served once that Rollout went without starting."""
    world, _, now = await at_last_step(cloud_run)
    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase is not None
    assert status.phase.value == "Aborted"
    newer = rollout_body(NAME, CANARY, deadline=60)
    newer["metadata"].update(name="ro-2", uid="uid-ro-2")
    newer["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    world.client.rollouts = [world.body, newer]  # created, not started
    world.client.target["spec"]["image"] = EDITED_IMAGE
    await world.target_converge()
    edited = world.revisions()[-1]
    status = await world.converge(now + STEP)
    assert world.traffic() == [(STABLE, 100, "")], "the starting Rollout's tag is not taken"
    assert not (status.message or "").startswith("superseded"), status.message
    assert "goes to LATEST" in (status.message or "")
    assert "once Rollout ro-2 has started" in (status.message or "")
    assert world.result is not None
    assert world.result.requeue_after == world.reconciler.settings.poll_seconds, "tried again"
    assert needs_finalizer(world.body), "its traffic is still pinned: the finalizer stays"
    world.client.rollouts = [world.body]  # deleted without ever starting
    status = await world.converge(now + 2 * STEP)
    assert (status.message or "").startswith("superseded"), status.message
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {edited: 100}, "the target's edit serves"
    assert not needs_finalizer(world.body)


async def test_superseded_leaves_latest_to_a_sibling_still_holding_the_service(
    cloud_run: FakeCloudRun,
) -> None:
    """Review Q 3 (a sibling stalled mid-way, Degraded with its canaryWeight: its next
    converge gives its split back): LATEST is not written over its split meanwhile."""
    world, _, now = await at_last_step(cloud_run)
    world.ask("abort/1")
    await world.converge(now)
    holding = rollout_body(NAME, CANARY, deadline=60)
    holding["metadata"].update(name="ro-2", uid="uid-ro-2")
    holding["status"] = {
        "phase": "Degraded",
        "canaryWeight": 25,
        "stableRevision": STABLE,
        "canaryRevision": "crm-ro-other",
    }
    world.client.rollouts = [world.body, holding]
    world.client.target["spec"]["image"] = EDITED_IMAGE
    await world.target_converge()
    status = await world.converge(now + STEP)
    assert world.traffic() == [(STABLE, 100, "")]
    assert not (status.message or "").startswith("superseded"), status.message
    holding["status"]["canaryWeight"] = 0  # given back
    status = await world.converge(now + 2 * STEP)
    assert (status.message or "").startswith("superseded"), status.message
    assert world.traffic() == [("LATEST", 100, "")]


def _sibling(image: str | None = None) -> dict[str, Any]:
    other = rollout_body(NAME, CANARY, deadline=60)
    other["metadata"].update(name="ro-2", uid="uid-ro-2")
    if image is not None:
        other["spec"]["image"] = image
    return other


async def test_a_stalled_promotion_superseded_does_not_wait_for_the_rollout_waiting_on_it(
    cloud_run: FakeCloudRun,
) -> None:
    """Review S 1: a Rollout stalled with its promotion written (Degraded, promotingSince) is
    what a newer Rollout not started yet waits for (Pending, `_wait_for_give_back`). Found
    superseded (the XynergyService edited), it waited for that newer one to start and kept
    promotingSince, while the newer one waited for it: forever, the target's edit never
    served. It routes LATEST and lets go now; the newer one then starts."""
    world, _, now = await at_last_step(cloud_run)
    stalled = await world.stall_mid_promotion(now)
    assert stalled.phase is not None
    assert stalled.phase.value == "Degraded"
    assert stalled.promoting_since is not None
    now += 2 * STEP
    newer = _sibling("us-docker.pkg.dev/xynergy-test/platform/crm:3")
    world.client.rollouts = [world.body, newer]
    waiting = await world.converge(now, body=newer)
    assert waiting.phase is not None
    assert waiting.phase.value == "Pending", waiting.message
    assert "Rollout ro stalled" in (waiting.message or "")
    world.client.target["spec"]["image"] = EDITED_IMAGE
    await world.target_converge()
    edited = world.revisions()[-1]
    status = await world.converge(now + STEP)
    assert (status.message or "").startswith("superseded"), status.message
    assert status.promoting_since is None, "it no longer holds the service"
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {edited: 100}, "the target's edit serves"
    assert not needs_finalizer(world.body)
    started = await world.converge(now + 2 * STEP, body=newer)
    assert started.phase is not None
    assert started.phase.value == "Progressing", started.message
    assert started.stable_revision == edited, "it starts from what the target serves"


async def test_two_superseded_rollouts_holding_the_service_do_not_wait_for_each_other(
    cloud_run: FakeCloudRun,
) -> None:
    """Review S 2: two ended Rollouts of the target both still holding the service (Degraded
    with canaryWeight), the XynergyService edited: each waited for the other
    (`_holding_sibling`), both finalizers stayed and the split between old revisions served
    for good. Each routes LATEST and is marked superseded."""
    world, canary, now = await at_last_step(cloud_run)
    world.body["status"]["phase"] = "Degraded"  # stalled mid-way, its 20 % split held
    other = copy.deepcopy(world.body)
    other["metadata"].update(name="ro-2", uid="uid-ro-2")
    world.client.rollouts = [world.body, other]
    assert world.served() == {STABLE: 80, canary: 20}
    world.client.target["spec"]["image"] = EDITED_IMAGE
    await world.target_converge()
    edited = world.revisions()[-1]
    status = await world.converge(now + STEP)
    assert (status.message or "").startswith("superseded"), status.message
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.served() == {edited: 100}, "the target's edit serves"
    status = await world.converge(now + 2 * STEP, body=other)
    assert (status.message or "").startswith("superseded"), status.message
    assert not needs_finalizer(world.body)
    assert not needs_finalizer(other)
    assert world.served() == {edited: 100}


async def test_a_superseded_split_still_waits_for_a_starting_rollout_that_does_not_wait_on_it(
    cloud_run: FakeCloudRun,
) -> None:
    """A Rollout holding only a split (no promotion written) is not what a newer Rollout
    waits for: found superseded, it still leaves LATEST until the newer one has started (its
    tagged split is not taken), and that one starts."""
    world, canary, now = await at_last_step(cloud_run)
    world.body["status"]["phase"] = "Degraded"
    newer = _sibling("us-docker.pkg.dev/xynergy-test/platform/crm:3")
    world.client.rollouts = [world.body, newer]
    world.client.target["spec"]["image"] = EDITED_IMAGE
    await world.target_converge()
    status = await world.converge(now + STEP)
    assert not (status.message or "").startswith("superseded"), status.message
    assert "once Rollout ro-2 has started" in (status.message or "")
    assert world.served() == {STABLE: 80, canary: 20}
    started = await world.converge(now + 2 * STEP, body=newer)
    assert started.phase is not None
    assert started.phase.value == "Progressing", started.message


async def test_the_wait_for_latest_keeps_the_message_it_follows_and_goes_with_it(
    cloud_run: FakeCloudRun,
) -> None:
    """Review S 4: the wait for a starting Rollout before LATEST replaced the status message
    (an abort's or a stall's reason was lost); it is appended, and removed once the target
    runs what the Rollout left again."""
    world, _, now = await at_last_step(cloud_run)
    world.ask("abort/1")
    aborted = await world.converge(now)
    said = aborted.message or ""
    assert said
    world.client.rollouts = [world.body, _sibling("us-docker.pkg.dev/xynergy-test/platform/crm:3")]
    stable_image = world.client.target["spec"]["image"]
    world.client.target["spec"]["image"] = EDITED_IMAGE
    await world.target_converge()
    status = await world.converge(now + STEP)
    assert (status.message or "").startswith(f"{said}; found superseded, waiting: "), status.message
    assert "once Rollout ro-2 has started" in (status.message or "")
    world.client.target["spec"]["image"] = stable_image  # edited back
    await world.target_converge()
    status = await world.converge(now + 2 * STEP)
    assert status.message == said
