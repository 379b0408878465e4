"""A Rollout's promotion on Cloud Run says the truth: Promoted (target patched) only once Cloud
Run serves the new revision alone. Its write is one UpdateService (template and traffic: both
move or neither); one whose operation fails gives the service back and is tried again after a
backoff, up to spec.progressDeadlineSeconds, then Degraded; one whose operation still runs
stays Progressing; a person's `promote` survives a transient failure. Once promoted, the
ended Rollout's hold never writes the promotion again because some operation (the target's own
controller writes the same service) failed, and gives nothing back. Through the reconciler,
the real Cloud Run backend, provider and client library, against the in-process fake Cloud
Run API (what is served is read from the fake's `trafficStatuses`)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from _cloudrun_world import (
    CANARY,
    FAST,
    NAME,
    PATH,
    STABLE,
    STEP,
    T0,
    World,
    at_last_step,
    previewing,
    rollout_body,
)
from fakes.cloudrun import FakeCloudRun
from google.cloud import run_v2

from controllers.core.controller import Requeue
from controllers.core.errors import TransientError
from controllers.rollout.reconciler import ACTION_ANNOTATION as ACTION
from controllers.rollout.settings import RolloutSettings
from controllers.rollout.status import needs_finalizer
from controllers.xynergyservice.resources import cloudrun

pytestmark = pytest.mark.unit


async def test_a_failed_promotion_operation_is_not_promoted_and_is_tried_again(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect 1. Cloud Run accepts the promotion's write but its operation fails: nothing of
    it is served. The Rollout stays Progressing at the weight served (before: Promoted, its
    target patched, while Cloud Run served 20 % of the new revision), the service has its
    template and traffic back (the target's controller makes no revision meanwhile), a
    Warning says what failed and what is served, the retry is after the core's backoff, and
    the next converge promotes."""
    world, canary, now = await at_last_step(cloud_run)
    cloud_run.fail_updates(message="could not program the route")

    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert status.canary_weight == 20
    assert status.promoting_since == now
    assert world.served() == {STABLE: 80, canary: 20}
    assert f"Cloud Run did not promote revision {canary}: could not program the route" in (
        status.message
    )
    assert f"it serves {STABLE} 80%, {canary} 20%" in status.message
    assert "template and traffic are back as they were" in status.message
    assert ("Warning", "PromotionFailed", status.message) in world.events
    assert world.condition("Reconciling")["reason"] == "PromotionFailed"
    assert world.requeue() is Requeue.BACKOFF
    assert world.template_revision() == STABLE
    assert world.client.patches == [], "the target is not patched"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"

    status = await world.converge(now + STEP)  # tried again
    assert status.phase.value == "Promoted", status.message
    assert status.promoting_since is None
    assert status.canary_weight == 100
    assert world.served() == {canary: 100}
    assert world.template_revision() == canary
    assert world.client.patches[-1]["spec"]["image"].endswith(":2")
    assert await world.target_converge() == 0, "the promoted template is the target's own"
    assert world.revisions() == [STABLE, canary]


async def test_a_refused_promotion_moves_nothing_and_its_rollback_leaves_the_template(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect 2. Cloud Run refuses the promotion's traffic (400): the template must not have
    moved, so when the Rollout rolls back (Degraded, then all traffic on stable) the target's
    own controller finds the service as it left it and deploys no revision of its own.
    Before, the template moved in a first write and only the traffic write was refused."""
    world, canary, now = await at_last_step(cloud_run)
    cloud_run.inject(  # the write that moves all traffic to the new revision
        400,
        rpc="services.patch",
        message="traffic refused",
        status="INVALID_ARGUMENT",
        when=lambda svc: [(t.revision, t.percent) for t in svc.traffic] == [("", 100)],
    )

    status = await world.converge(now)
    assert status.phase.value == "Degraded"
    assert "traffic refused" in status.message
    assert world.template_revision() == STABLE, "the template did not move"
    assert world.served() == {STABLE: 80, canary: 20}
    assert status.canary_weight == 20, "the status says what is served until it moved"
    assert world.client.patches == [], "the target is not patched"

    status = await world.converge(now + STEP)  # the rollback routes everything to stable
    assert status.canary_weight == 0
    assert status.message.endswith(f"all traffic back on {STABLE}")
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_a_promote_action_is_not_lost_to_a_transient_failure(cloud_run: FakeCloudRun) -> None:
    """Defect 3. A blue-green preview waits for a person's `promote`; the promotion's write
    fails transiently (503 past the client's retries). The action stays pending (not in
    status.handledAction), so the next converge promotes; before, it was marked handled and
    the preview waited for another `promote`."""
    world, canary, now = await previewing(cloud_run)
    world.ask("promote/1")
    cloud_run.inject(503, rpc="services.patch", count=FAST.max_attempts)

    status = await world.converge(now)
    assert status.phase.value == "Paused", status.message
    assert status.handled_action is None, "the promote was not carried out"
    assert world.served() == {STABLE: 100}
    assert world.client.patches == []

    status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted", status.message
    assert status.handled_action == "promote/1"
    assert world.served() == {canary: 100}


async def test_a_promote_action_whose_operation_failed_is_still_pending(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect 3, the failed operation: the action is not handled while the promotion is
    retried, and is once it is carried out."""
    world, _, now = await previewing(cloud_run)
    world.ask("promote/1")
    cloud_run.fail_updates(message="could not program the route")

    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert status.handled_action is None
    status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted", status.message
    assert status.handled_action == "promote/1"


async def test_a_promotion_whose_answer_was_lost_is_read_back_as_done(
    cloud_run: FakeCloudRun,
) -> None:
    """The write is carried out but every answer to it is lost (503 after the fact, then the
    client's retries answered 503): Cloud Run serves the new revision, so the Rollout is
    Promoted (read back now, or at the next converge while the operation still runs) and
    the write is neither given back nor made twice."""
    world, canary, now = await at_last_step(cloud_run)
    before = world.writes()
    cloud_run.inject(503, rpc="services.patch", after=True, count=1)
    cloud_run.inject(503, rpc="services.patch", count=FAST.max_attempts)  # the client's retries

    status = await world.converge(now)
    if status.phase.value != "Promoted":  # the operation was still running: read again
        assert status.phase.value == "Progressing", status.message
        cloud_run.state.complete_operations()  # done by the next converge (not timing-bound)
        status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted", status.message
    assert world.writes() - before == 1, "one write: not given back, not redone"
    assert world.served() == {canary: 100}
    assert world.template_revision() == canary
    assert world.revisions() == [STABLE, canary]


async def test_a_promotion_still_running_is_progressing_not_promoted(
    cloud_run: FakeCloudRun,
) -> None:
    """Regression c. The promotion's operation outlasts the provider's wait: the Rollout
    stays Progressing (reason Promoting, the weight served), its target not patched, and
    later converges read it back without writing it again; Promoted once Cloud Run serves
    the new revision."""
    world, canary, now = await at_last_step(cloud_run, operation_timeout=0.2)
    cloud_run.state.hold_operations()
    before = world.writes()

    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert world.condition("Reconciling")["reason"] == "Promoting"
    assert status.canary_weight == 20
    assert "still carrying out the promotion" in status.message
    assert world.client.patches == [], "the target is not patched while it runs"
    assert world.writes() - before == 1

    status = await world.converge(now + STEP)  # still running: read, not written again
    assert status.phase.value == "Progressing", status.message
    assert world.writes() - before == 1
    assert world.client.patches == []

    cloud_run.state.hold_operations(False)
    status = await world.converge(now + 2 * STEP)
    assert status.phase.value == "Promoted", status.message
    assert world.served() == {canary: 100}
    assert world.writes() - before == 1, "one write in all"
    assert world.client.patches[-1]["spec"]["image"].endswith(":2")


async def test_a_running_promotion_asked_by_a_person_is_finished_not_paused_again(
    cloud_run: FakeCloudRun,
) -> None:
    """Regression c, the person's `promote` of a blue-green preview: its promotion still runs
    after the converge that acted on it. The next converges finish that promotion
    (status.promotingSince) instead of the strategy's next move, which would pause the
    preview again and route all traffic back to stable under the running promotion."""
    world, canary, now = await previewing(cloud_run, operation_timeout=0.2)
    world.ask("promote/1")
    cloud_run.state.hold_operations()
    before = world.writes()

    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert status.promoting_since == now
    status = await world.converge(now + STEP)
    assert status.phase.value == "Progressing", status.message
    assert world.writes() - before == 1, "read back, not routed back"

    cloud_run.state.hold_operations(False)
    status = await world.converge(now + 2 * STEP)
    assert status.phase.value == "Promoted", status.message
    assert world.served() == {canary: 100}
    assert world.writes() - before == 1


async def test_an_abort_while_the_promotion_runs_gives_the_template_back(
    cloud_run: FakeCloudRun,
) -> None:
    """An abort while the promotion's operation still runs: all traffic back on stable and
    the template the stable revision's again (`restore`), so the target's own controller,
    never patched, has nothing to write."""
    world, _, now = await at_last_step(cloud_run, operation_timeout=0.2)
    cloud_run.state.hold_operations()
    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message

    world.ask("abort/1")
    status = await world.converge(now + STEP)
    cloud_run.state.hold_operations(False)
    cloud_run.state.complete_operations()
    assert status.phase.value == "Aborted", status.message
    assert status.promoting_since is None
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert world.client.patches == []
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_deletion_while_the_promotion_runs_gives_the_template_back(
    cloud_run: FakeCloudRun,
) -> None:
    """Deleting the Rollout while its promotion's operation still runs returns all traffic
    to stable and the template to the stable revision's, as an abort does."""
    world, _, now = await at_last_step(cloud_run, operation_timeout=0.2)
    cloud_run.state.hold_operations()
    status = await world.converge(now)
    assert status.promoting_since is not None, status.message

    done, event = await world.reconciler.release(copy.deepcopy(world.body))
    cloud_run.state.hold_operations(False)
    cloud_run.state.complete_operations()
    assert done
    assert event is not None
    assert event.reason == "TrafficRestored"
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    # the template given back names the stable revision: then LATEST, not pinned by name
    assert world.traffic() == [("LATEST", 100, "")], "a later edit of the target serves"
    assert "routed as LATEST 100 %" in event.message
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_rollout_stalled_while_its_promotion_runs_gives_the_template_back(
    cloud_run: FakeCloudRun,
) -> None:
    """The promotion's operation still runs when Cloud Run starts refusing the operator (403):
    the Rollout is Degraded ("all traffic goes back on <stable>"); its next converge restores
    the stable revision's template with the traffic, so the target's own controller, never
    patched, has nothing to write."""
    world, _, now = await at_last_step(cloud_run, operation_timeout=0.2)
    status = await world.stall_mid_promotion(now)
    assert status.phase.value == "Degraded", status.message

    status = await world.converge(now + 2 * STEP)
    cloud_run.state.complete_operations()
    assert status.promoting_since is None
    assert status.canary_weight == 0
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_promoted_rollout_leaves_a_failed_operation_of_the_target_alone(
    cloud_run: FakeCloudRun,
) -> None:
    """Regression a. After the promotion, the target's own controller writes the service (an
    ingress change) and that operation fails. The ended Rollout's hold neither writes the
    promotion again nor raises PromotionFailed for a revision served at 100 %."""
    world, _, now = await at_last_step(cloud_run)
    canary, now = await world.promoted(now)
    world.client.target["spec"]["cloudRun"]["ingress"] = "internal"
    cloud_run.fail_updates(2, message="the target's own write failed")
    assert await world.target_converge() == 1
    assert world.service().terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED
    before = world.writes()

    for _ in range(2):
        status = await world.converge(now)
        now += STEP
        assert status.phase.value == "Promoted", status.message
        assert not [e for e in world.events if e[0] == "Warning"], world.events
    assert world.writes() == before, "the promotion is not written again"
    assert world.served() == {canary: 100}


async def test_the_end_of_a_keep_window_gives_nothing_back(cloud_run: FakeCloudRun) -> None:
    """Regression b. A blue-green promotion keeps the old revision at `previous`; at the
    window's end the write dropping the tag fails (its operation). The Rollout stays
    Promoted and makes that one write: nothing given back, nothing re-issued later."""
    world = World(
        cloud_run, strategy={"blueGreen": {"autoPromotionSeconds": 0, "scaleDownDelaySeconds": 30}}
    )
    await world.deploy()
    canary, now = await world.promoted(T0)
    tags = {t.tag: t.revision.rpartition("/")[2] for t in world.service().traffic if t.tag}
    assert tags == {"previous": STABLE}
    cloud_run.fail_updates(2, message="could not drop the tag")
    before = world.writes()

    now += dt.timedelta(seconds=31)
    status = await world.converge(now)
    assert status.phase.value == "Promoted", status.message
    assert status.scale_down_at is None
    assert world.writes() - before == 1, "the drop, and nothing given back"
    status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted", status.message
    assert world.writes() - before == 1, "not re-issued once promoted"
    assert world.served() == {canary: 100}


async def test_a_drifted_configuration_pins_the_revision_with_its_own_reason(
    cloud_run: FakeCloudRun,
) -> None:
    """Regression d, the Rollout's half. Someone deployed a template label by hand (a
    revision with no traffic): the promotion's template, named after the new revision, now
    differs from it and Cloud Run answers 409 ALREADY_EXISTS. That is final for a template
    naming one revision (`RevisionConflict` in the provider's `set_service`): the revision is
    pinned at 100 % by name in one write, and Promoted."""
    world, canary, now = await at_last_step(cloud_run)

    def by_hand(existing: run_v2.Service | None) -> tuple[run_v2.Service, None]:
        assert existing is not None
        service = run_v2.Service(existing)
        service.template.labels["deployed-by"] = "console"
        service.template.revision = f"{NAME}-manual"
        return service, None

    await world.provider.apply(PATH, by_hand)
    assert world.served() == {STABLE: 80, canary: 20}
    before = world.writes()

    status = await world.converge(now)
    assert status.phase.value == "Promoted", status.message
    assert world.served() == {canary: 100}
    assert [(t.revision, t.percent) for t in world.service().traffic] == [(canary, 100)]
    assert world.writes() - before == 1


async def test_already_exists_is_still_a_race_for_the_xynergyservice(
    cloud_run: FakeCloudRun,
) -> None:
    """Regression d, the shared provider's half: for the XynergyService's `apply` (which picks
    its revision names) a 409 ALREADY_EXISTS stays a race to re-read, never the ownership
    reason `AlreadyExists` its controller stalls with."""
    world = World(cloud_run)
    await world.deploy()
    world.client.target["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    cloud_run.inject(409, rpc="services.patch", status="ALREADY_EXISTS", message="taken", count=4)
    target = world.target()

    with pytest.raises(TransientError) as raised:
        await world.provider.apply(PATH, lambda found: cloudrun.plan(target, found))
    assert raised.value.reason == "Conflict"
    assert await world.target_converge() == 1, "the next converge deploys it"


async def test_a_failing_promotion_is_retried_with_a_backoff_then_degraded(
    cloud_run: FakeCloudRun,
) -> None:
    """Regression e. Every promotion operation fails: each converge makes the write and gives
    the service back (two writes), asks the core for its backoff (never an immediate
    requeue), and spec.progressDeadlineSeconds (60 s) after the first try the Rollout is
    Degraded, its Stalled condition naming Cloud Run's error, all traffic back on stable with
    the template the target's own, and it writes nothing more."""
    world, canary, now = await at_last_step(cloud_run)
    # every promotion and give-back of 4 converges fails (Cloud Run recovers after)
    cloud_run.fail_updates(8, message="could not program the route")
    first = now

    for _ in range(3):
        before = world.writes()
        status = await world.converge(now)
        assert status.phase.value == "Progressing", status.message
        assert world.requeue() is Requeue.BACKOFF
        assert world.writes() - before == 2, "the promotion, then given back"
        assert "could not be given back (its operation failed" in status.message
        assert world.served() == {STABLE: 80, canary: 20}
        now += dt.timedelta(seconds=20)

    status = await world.converge(first + dt.timedelta(seconds=60))  # tried, then given up
    assert status.phase.value == "Degraded", status.message
    assert status.message.endswith(f"all traffic back on {STABLE}")
    stalled = world.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "PromotionFailed"
    assert "could not program the route" in stalled["message"]
    assert status.promoting_since is None
    assert status.canary_weight == 0
    before = world.writes()
    status = await world.converge(first + dt.timedelta(seconds=61))
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert world.client.patches == []
    assert world.writes() == before, "nothing more to write"
    assert await world.target_converge() == 0


class Killed(BaseException):
    """The operator process dies (nothing after it runs, no status is written)."""


async def test_a_promotion_carried_out_whose_target_patch_failed_is_on_record(
    cloud_run: FakeCloudRun,
) -> None:
    """Review 1. Cloud Run carries the promotion out (the new revision serves 100 %, the
    template names it) but the target patch fails once (500). The status written says a
    promotion is pending (status.promotingSince; before, it was cleared before the patch and
    the Rollout looked like any Progressing one at 20 %), so a person's abort gives the
    template back with the traffic: the target's own controller, never patched, then has
    nothing to write (before, it deployed an unexpected revision)."""
    world, canary, now = await at_last_step(cloud_run)
    world.client.fail_next_patch("etcd timeout")
    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert status.promoting_since == now
    assert world.served() == {canary: 100}
    assert world.template_revision() == canary

    world.ask("abort/1")
    status = await world.converge(now + STEP)
    assert status.phase.value == "Aborted", status.message
    assert status.promoting_since is None
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_a_promotion_carried_out_before_a_restart_is_given_back_by_an_abort(
    cloud_run: FakeCloudRun,
) -> None:
    """Review 1, the restart: the operator dies after the promotion's write was carried out,
    before the target patch and any status write (the stored status says Progressing at
    20 %, no promotingSince). An abort reads the service itself: its template names the new
    revision, so the template is given back with the traffic."""
    world, canary, now = await at_last_step(cloud_run)
    stored = copy.deepcopy(world.body)

    async def dies(*_: Any, **__: Any) -> None:
        raise Killed

    world.client.patch = dies  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await world.converge(now)
    assert world.body == stored, "nothing was written"
    assert world.template_revision() == canary

    world.ask("abort/1")
    status = await world.converge(now + STEP)
    assert status.phase.value == "Aborted", status.message
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_spec_edit_while_a_promotion_is_pending_gives_it_back_first(
    cloud_run: FakeCloudRun,
) -> None:
    """Review 2. The Rollout's image is edited while its promotion's operation still runs.
    The pending promotion is given back (template and traffic on the stable revision, its
    target never patched) before the new delivery starts, which starts from the stable
    revision with its own image (before: Pending "the target has no serving revision yet",
    then a delivery whose stableRevision ran :2 while stableImage said :1)."""
    world, _, now = await at_last_step(cloud_run, operation_timeout=0.2)
    cloud_run.state.hold_operations()
    status = await world.converge(now)
    assert status.promoting_since is not None, status.message

    world.body["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    world.body["metadata"]["generation"] = 2
    status = await world.converge(now + STEP)
    assert status.phase.value == "Progressing", status.message
    assert "no serving revision" not in (status.message or "")
    assert status.promoting_since is None
    assert status.stable_revision == STABLE
    assert status.stable_image.endswith(":1")
    new = str(status.canary_revision)
    cloud_run.state.hold_operations(False)
    cloud_run.state.complete_operations()
    assert world.template_revision() == STABLE

    now += 2 * STEP
    for _ in range(6):
        status = await world.converge(now)
        now += STEP
        if status.phase.value == "Promoted":
            break
        assert (status.stable_revision, status.stable_image[-2:]) == (STABLE, ":1")
    assert status.phase.value == "Promoted", status.message
    assert status.history[0].revision == STABLE
    assert status.history[0].image.endswith(":1")
    assert world.served() == {new: 100}
    assert world.client.target["spec"]["image"].endswith(":3")
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_blue_green_stalled_while_promoting_keeps_its_finalizer(
    cloud_run: FakeCloudRun,
) -> None:
    """Review 3. A blue-green preview (weight 0) is promoted by a person; while the promotion's
    operation runs, Cloud Run refuses the operator (403): Degraded with canaryWeight 0 and
    promotingSince set. It keeps its finalizer (before: none, weight 0), and deleting it
    gives the template back with the traffic, then routes it to LATEST (the stable revision
    then; no longer pinned by name)."""
    world, _, now = await previewing(cloud_run, operation_timeout=0.2)
    world.ask("promote/1")
    status = await world.stall_mid_promotion(now)
    assert status.phase.value == "Degraded", status.message
    assert not status.canary_weight
    assert status.promoting_since is not None
    assert needs_finalizer(world.body)

    done, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert done
    assert event is not None
    assert event.reason == "Released", event
    assert world.served() == {STABLE: 100}
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_stale_action_is_not_replayed_nor_the_promotion_run_twice(
    cloud_run: FakeCloudRun,
) -> None:
    """Review 4. An ended Rollout (its `abort/1` handled) is edited and starts a delivery of
    the revision its target already serves, which `_begin` promotes at once; that promotion
    fails. The status keeps `abort/1` handled (before: handledAction None, so the old abort
    looked pending and the next converge aborted), and the converge does not run the
    promotion a second time after `_begin` (before: it re-issued it in the same converge)."""
    world, _, now = await at_last_step(cloud_run)
    canary, now = await world.promoted(now)
    await world.provider.set_traffic(PATH, ((canary, 100, "stable"),))  # not the promotion's
    world.ask("abort/1")
    world.body["status"].update(
        phase="Aborted",
        handledAction="abort/1",
        canaryRevision=f"{NAME}-ro-00000000",
        deliveredSpec="0" * 16,
    )
    cloud_run.fail_updates(2, message="could not program the route")
    before = world.writes()

    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert status.canary_revision == canary
    assert world.condition("Reconciling")["reason"] == "PromotionFailed"
    assert status.handled_action == "abort/1", "the handled abort stays handled"
    assert world.writes() - before == 2, "the promotion and its give-back, once"

    status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted", status.message
    assert world.served() == {canary: 100}


async def test_a_failed_promotion_leaves_a_concurrent_write_of_the_target_alone(
    cloud_run: FakeCloudRun,
) -> None:
    """Review 5. The promotion's operation fails, and before it is given back the
    XynergyService controller writes the service (its target was edited meanwhile). The
    give-back does not overwrite that write (before: it wrote the template and traffic read
    before the promotion over it)."""
    world, _, now = await at_last_step(cloud_run)
    cloud_run.fail_updates(1, message="could not program the route")
    set_service = world.provider.set_service
    calls: list[str] = []

    async def then_the_target(*args: Any, **kwargs: Any) -> Any:
        answer = await set_service(*args, **kwargs)
        if not calls:  # right after the promotion's (failed) write
            calls.append("promotion")
            world.client.target["spec"]["cloudRun"]["ingress"] = "internal"
            assert await world.target_converge() == 1
        return answer

    world.provider.set_service = then_the_target  # type: ignore[method-assign]
    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert "left as it is" in status.message
    now_service = world.service()
    assert now_service.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
    assert await world.target_converge() == 0, "the target's write stands"


async def test_a_refused_reissue_of_the_promotion_is_stalled_not_retried(
    cloud_run: FakeCloudRun,
) -> None:
    """Review 6. The promotion's operation outlasts the provider's wait, then fails: the
    service's spec is still the promotion's own write. The next converge re-issues it and
    Cloud Run refuses (403) while reads still work: Degraded with the refusal (before: read
    back, the spec the promotion's own, and reported as a failed promotion, PromotionFailed,
    retried until the deadline); the next converge gives the template and traffic back."""
    world, canary, now = await at_last_step(cloud_run, operation_timeout=0.2)
    cloud_run.state.hold_operations()
    status = await world.converge(now)
    assert world.condition("Reconciling")["reason"] == "Promoting", status.message
    cloud_run.fail_updates(1, message="could not program the route")
    cloud_run.state.hold_operations(False)
    cloud_run.state.complete_operations()
    assert world.template_revision() == canary, "the spec is the promotion's, its operation failed"

    cloud_run.deny("the operator lost run.services.update", rpc="services.patch")
    status = await world.converge(now + STEP)
    assert status.phase.value == "Degraded", status.message
    assert "the operator lost run.services.update" in status.message
    assert world.condition("Stalled")["reason"] == "PermissionDenied"
    cloud_run.deny(None)

    status = await world.converge(now + 2 * STEP)
    assert status.canary_weight == 0
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def _stalled_while_promoting_then_target_edited(
    cloud_run: FakeCloudRun,
) -> tuple[World, dt.datetime, dict[str, int], str]:
    """A blue-green preview promoted by a person whose promotion Cloud Run refuses mid-way
    (403): Degraded with promotingSince. Then a person edits the target to :3 and its
    controller deploys a revision of its own with all the traffic."""
    world, _, now = await previewing(cloud_run, operation_timeout=0.2)
    world.ask("promote/1")
    status = await world.stall_mid_promotion(now)
    assert status.phase.value == "Degraded", status.message
    assert status.promoting_since is not None
    world.client.target["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    assert await world.target_converge() == 1
    served, template = world.served(), world.template_revision()
    assert template != STABLE, (served, template)
    assert served == {template: 100}, (served, template)
    return world, now + 2 * STEP, served, template


async def test_a_stalled_promotion_superseded_by_a_target_edit_lets_go(
    cloud_run: FakeCloudRun,
) -> None:
    """Review D1. A Rollout stalled mid-promotion whose target was edited meanwhile (its own
    controller serves a new revision) is Superseded without promotingSince, and so without
    its finalizer (before: promotingSince kept, the finalizer stayed, and its deletion
    pinned all traffic and the template to the old stable revision for good)."""
    world, now, served, template = await _stalled_while_promoting_then_target_edited(cloud_run)
    status = await world.converge(now)
    assert status.message.startswith("superseded"), status.message
    assert status.promoting_since is None
    assert not status.canary_weight
    assert not needs_finalizer(world.body)
    assert world.served() == served
    assert world.template_revision() == template


async def test_deleting_a_stalled_promotion_whose_target_moved_on_leaves_it(
    cloud_run: FakeCloudRun,
) -> None:
    """Review D1. Deleted before a converge found it superseded: the deletion lets go with an
    Event saying so, and leaves what the target's own controller serves (before: `restore`
    wrote the old template and pinned all traffic on the old stable revision)."""
    world, _, served, template = await _stalled_while_promoting_then_target_edited(cloud_run)
    assert needs_finalizer(world.body)
    done, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert done
    assert event is not None
    assert event.reason == "Released", event
    assert "crm:3" in event.message
    assert world.served() == served
    assert world.template_revision() == template
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_retry_of_a_rollout_stalled_mid_promotion_gives_the_template_back(
    cloud_run: FakeCloudRun,
) -> None:
    """Review D4. A promotion's operation fails and its re-issue is refused (403): Degraded,
    promotingSince set, the service's template naming the new revision. `retry` gives the
    template back to the stable revision before the new delivery starts, so the target's
    own controller finds the service as it left it (before: promotingSince was dropped with
    the template left on the new revision, and the target's controller deployed a revision
    of its own)."""
    world, canary, now = await at_last_step(cloud_run, operation_timeout=0.2)
    cloud_run.state.hold_operations()
    await world.converge(now)
    cloud_run.fail_updates(1, message="could not program the route")
    cloud_run.state.hold_operations(False)
    cloud_run.state.complete_operations()
    cloud_run.deny("the operator lost run.services.update", rpc="services.patch")
    status = await world.converge(now + STEP)
    assert status.phase.value == "Degraded", status.message
    assert status.promoting_since is not None
    assert world.template_revision() == canary
    cloud_run.deny(None)
    revisions = world.revisions()

    world.ask("retry/1")
    status = await world.converge(now + 2 * STEP)
    assert status.phase.value == "Progressing", status.message
    assert status.promoting_since is None
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == revisions, "no revision of the target's own"


async def test_an_error_after_a_pending_promotion_writes_no_half_done_keep_window(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect C. A blue-green promotion (keep window 30 s) asked by a person is still running
    at one converge; at the next, Cloud Run has carried it out, but the target patch fails.
    The error is reported on the status as stored (Progressing, promotingSince carried over
    on purpose) without the keep window (status.scaleDownAt) the working copy had set before
    the patch: before, a Progressing Rollout was written with a keep window of a promotion
    not finished. The next converge finishes it, its window counted from then."""
    world, canary, now = await previewing(
        cloud_run, strategy={"blueGreen": {"scaleDownDelaySeconds": 30}}, operation_timeout=0.2
    )
    world.ask("promote/1")
    cloud_run.state.hold_operations()
    status = await world.converge(now)
    first = now
    assert world.condition("Reconciling")["reason"] == "Promoting", status.message
    stored = copy.deepcopy(world.body["status"])
    cloud_run.state.hold_operations(False)
    cloud_run.state.complete_operations()
    world.client.fail_next_patch("etcd timeout")
    status = await world.converge(now + STEP)
    assert world.served() == {canary: 100}, "carried out"
    assert status.phase.value == "Progressing", status.message
    assert "etcd timeout" in status.message
    assert status.promoting_since == first, "carried over on purpose"
    written = world.body["status"]
    assert "scaleDownAt" not in written, "no keep window of a promotion not finished"
    for field in ("canaryWeight", "currentStepIndex", "history", "stableRevision"):
        assert written.get(field) == stored.get(field), field

    status = await world.converge(now + 2 * STEP)
    assert status.phase.value == "Promoted", status.message
    assert status.scale_down_at == now + 2 * STEP + dt.timedelta(seconds=30)
    assert world.client.target["spec"]["image"].endswith(":2")


async def _died_after_the_target_patch(
    cloud_run: FakeCloudRun, prepare: Callable[[World], None] | None = None
) -> tuple[World, str, dt.datetime]:
    """The promotion is carried out and the target patched, then the operator dies before the
    status write: the stored status says Progressing at 20 %, no promotingSince, while Cloud
    Run serves the new revision and the target's spec is the new revision's. `prepare`
    changes the world (the target, the Rollout's spec) before it is deployed."""
    world = World(cloud_run)
    if prepare is not None:
        prepare(world)
    await world.deploy()
    canary, now = await world.at_last_step()
    stored = copy.deepcopy(world.body)
    patch = world.client.patch

    async def patched_then_dies(*args: Any, **kwargs: Any) -> None:
        await patch(*args, **kwargs)
        raise Killed

    world.client.patch = patched_then_dies  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await world.converge(now)
    world.client.patch = patch  # type: ignore[method-assign]
    assert world.body == stored, "no status was written"
    assert world.client.target["spec"]["image"].endswith(":2")
    assert world.served() == {canary: 100}
    return world, canary, now + STEP


async def test_an_abort_after_a_lost_promotion_status_patches_the_target_back(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect B. After the target patch of a promotion whose status was never written, an
    abort gives the template and traffic back and patches the target back to the stable
    spec the status recorded (before: the target kept the new image, and its own controller
    deployed it over the rollback as a revision of its own)."""
    world, canary, now = await _died_after_the_target_patch(cloud_run)

    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase.value == "Aborted", status.message
    assert status.message.endswith(
        f"all traffic back on {STABLE}; XynergyService crm patched back to the stable spec "
        "(image us-docker.pkg.dev/xynergy-test/platform/crm:1) over the promotion's patch"
    )
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert world.client.target["spec"]["image"].endswith(":1"), "patched back"
    assert world.client.patches[-1] == {
        "spec": {
            "image": "us-docker.pkg.dev/xynergy-test/platform/crm:1",
            "env": None,
            "args": None,
            "resources": None,
        }
    }
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_a_deletion_after_a_lost_promotion_status_patches_the_target_back(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect B, the deletion: it gives back as an abort does, the target patched back too."""
    world, _, _ = await _died_after_the_target_patch(cloud_run)

    done, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert done
    assert event is not None
    assert event.reason == "TrafficRestored", event
    assert "XynergyService crm patched back to the stable spec (image " in event.message
    assert world.served() == {STABLE: 100}
    assert world.traffic() == [("LATEST", 100, "")], "the target patched back runs it"
    assert world.client.target["spec"]["image"].endswith(":1"), "patched back"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_an_abort_leaves_a_person_s_edit_of_the_target_alone(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect B: the target is patched back only while it holds the promotion's patch. A
    person who set the target to another image meanwhile keeps it."""
    world, _, now = await _died_after_the_target_patch(cloud_run)
    world.client.target["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    patches = len(world.client.patches)

    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase.value == "Aborted", status.message
    assert world.served() == {STABLE: 100}
    assert len(world.client.patches) == patches, "the target is not patched"
    assert world.client.target["spec"]["image"].endswith(":3")


async def test_an_abort_after_a_lost_promotion_status_gives_back_a_changed_env(
    cloud_run: FakeCloudRun,
) -> None:
    """Review H 2. As above, the Rollout also setting env (a template change): the template
    given back is the stable revision's as the status recorded it (stableImage,
    stableTemplate), not the patched target's env under the stable revision's name, which
    Cloud Run refused (before: the template stayed on the new revision, and the target's
    controller then deployed the patched-back spec as a revision of its own)."""

    def with_env(world: World) -> None:
        world.body["spec"]["template"] = {"env": [{"name": "FEATURE", "value": "on"}]}

    world, canary, now = await _died_after_the_target_patch(cloud_run, with_env)
    assert world.client.target["spec"]["env"] == [{"name": "FEATURE", "value": "on"}]
    assert world.template_revision() == canary

    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase.value == "Aborted", status.message
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE, "the template given back"
    assert "env" not in world.client.target["spec"], "patched back (removed)"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_an_abort_after_a_lost_promotion_status_removes_a_resource_the_promotion_added(
    cloud_run: FakeCloudRun,
) -> None:
    """Review J 2. The stable revision sets cpu only; the Rollout's template sets cpu and
    memory. After the lost promotion status, the abort's patch-back leaves the target's
    resources the stable revision's, memory removed (before: the merge patch sent {cpu: 1},
    the apiserver merged it into {cpu: 2, memory: 1Gi} and kept memory, so the target's
    controller deployed a revision of its own next to the stable one given back)."""

    def with_resources(world: World) -> None:
        world.client.target["spec"]["resources"] = {"cpu": "1"}
        world.body["spec"]["template"] = {"resources": {"cpu": "2", "memory": "1Gi"}}

    world, canary, now = await _died_after_the_target_patch(cloud_run, with_resources)
    assert world.client.target["spec"]["resources"] == {"cpu": "2", "memory": "1Gi"}

    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase.value == "Aborted", status.message
    assert world.template_revision() == STABLE, "the template given back"
    assert world.client.target["spec"]["resources"] == {"cpu": "1"}, "memory removed"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_a_promotion_removes_a_resource_the_new_revision_does_not_set(
    cloud_run: FakeCloudRun,
) -> None:
    """Review J 2, the promotion: the target sets cpu and memory, the Rollout's template cpu
    only (its revision has the profile's memory). The promotion leaves the target's resources
    the new revision's, memory removed, so the target is settled on it and its controller
    has nothing to deploy (before: the merge patch kept memory: 1Gi, a revision Cloud Run
    was not promoted to, and the target never read as settled)."""
    world = World(cloud_run)
    world.client.target["spec"]["resources"] = {"cpu": "1", "memory": "1Gi"}
    world.body["spec"]["template"] = {"resources": {"cpu": "2"}}
    await world.deploy()
    canary, now = await world.at_last_step()

    status = await world.converge(now)
    assert status.phase.value == "Promoted", status.message
    assert world.served() == {canary: 100}
    assert world.client.target["spec"]["resources"] == {"cpu": "2"}, "memory removed"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_a_failed_patch_back_moves_nothing_and_the_abort_is_asked_again(
    cloud_run: FakeCloudRun,
) -> None:
    """Review H 3. After a lost promotion status, an abort whose target patch-back fails
    (500) moves nothing: the target is patched back before the template and traffic are
    given back, so the status written as stored (Progressing at 20 %, the abort not handled)
    is still true, and the next converge carries the abort out (before: template and traffic
    went back first, the status then said 20 % while 100 % was on stable, and the target's
    controller deployed the unpatched new spec over it)."""
    world, canary, now = await _died_after_the_target_patch(cloud_run)
    writes = cloud_run.total_writes

    world.ask("abort/1")
    world.client.fail_next_patch("etcd timeout")
    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert status.canary_weight == 20
    assert status.handled_action is None, "the abort stays pending"
    assert cloud_run.total_writes == writes, "nothing moved on Cloud Run"
    assert world.served() == {canary: 100}
    assert world.template_revision() == canary
    assert await world.target_converge() == 0, "the target's spec still is the new revision's"

    status = await world.converge(now + STEP)
    assert status.phase.value == "Aborted", status.message
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert world.client.target["spec"]["image"].endswith(":1"), "patched back"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_an_abort_mid_canary_leaves_a_person_s_bump_to_the_new_image_alone(
    cloud_run: FakeCloudRun,
) -> None:
    """Review H 1. Mid-canary, no promotion ever written, a person (or GitOps) sets the
    target's image to the release the Rollout delivers, then aborts: the target looks like
    it holds the promotion's patch, but nothing promoted, so it is the person's edit and is
    kept (before: patched back to crm:1, env, args and resources nulled, and the Event said
    nothing of it)."""
    world, _, now = await at_last_step(cloud_run)
    world.client.target["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:2"
    patches = len(world.client.patches)

    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase.value == "Aborted", status.message
    assert status.message == f"aborted by a person; all traffic back on {STABLE}"
    assert world.served() == {STABLE: 100}
    assert len(world.client.patches) == patches, "the target is not patched"
    assert world.client.target["spec"]["image"].endswith(":2")


async def test_a_deletion_mid_canary_leaves_a_person_s_bump_to_the_new_image_alone(
    cloud_run: FakeCloudRun,
) -> None:
    """Review H 1, the deletion: a person bumps the target to crm:2 by hand and deletes the
    Rollout mid-canary. The traffic goes back to the stable revision, the bump is kept and
    the Event says nothing was patched."""
    world, canary, _ = await at_last_step(cloud_run)
    world.client.target["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:2"

    done, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert done
    assert event is not None
    assert event.message == (
        f"deleted while Progressing: all traffic back on the stable revision {STABLE} "
        f"({canary} gets none)"
    )
    assert world.served() == {STABLE: 100}
    assert world.client.patches == [], "the target is not patched"
    assert world.client.target["spec"]["image"].endswith(":2")


async def test_a_stalled_promotion_holds_the_target_until_it_is_given_back(
    cloud_run: FakeCloudRun,
) -> None:
    """Defect A. A Rollout stalls with its promotion written and not finished (Degraded,
    promotingSince, the service's template naming its new revision). A newer Rollout of the
    target waits (Pending, Reconciling RolloutConflict, nothing written) until the stalled
    one's next converge has given the template and traffic back, then starts from the stable
    revision (before: it started at once from the half-promoted service, and the stalled one
    then left it the traffic with the template never given back)."""
    world, canary, now = await at_last_step(cloud_run, operation_timeout=0.2)
    status = await world.stall_mid_promotion(now)
    assert status.phase.value == "Degraded", status.message
    assert status.promoting_since is not None
    assert world.template_revision() == canary

    newer = rollout_body(NAME, CANARY, deadline=60)
    newer["metadata"].update(name="ro-2", uid="uid-ro-2")
    newer["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    world.client.rollouts = [world.body, newer]
    writes = cloud_run.total_writes
    status = await world.converge(now + 2 * STEP, newer)
    assert status.phase.value == "Pending", status.message
    assert "Rollout ro stalled on XynergyService crm" in status.message
    assert f"back to its stable revision {STABLE}" in status.message
    assert world.result is not None
    assert world.result.requeue_after == RolloutSettings().poll_seconds
    reconciling = [c for c in newer["status"]["conditions"] if c["type"] == "Reconciling"]
    assert reconciling[0]["reason"] == "RolloutConflict"
    assert cloud_run.total_writes == writes, "nothing written while it waits"

    # a `retry` of an ended Rollout of the target is refused meanwhile, and stays pending
    ended = rollout_body(NAME, CANARY, deadline=60)
    ended["metadata"].update(name="ro-0", uid="uid-ro-0", annotations={ACTION: "retry/1"})
    ended["status"] = {
        "phase": "Aborted",
        "observedGeneration": 1,
        "stableRevision": STABLE,
        "canaryRevision": f"{NAME}-ro-00000000",
        "stableImage": "us-docker.pkg.dev/xynergy-test/platform/crm:1",
    }
    world.client.rollouts.append(ended)
    status = await world.converge(now + 2 * STEP, ended)
    assert status.phase.value == "Aborted", status.message
    assert status.handled_action is None, "the retry stays pending"
    stalled = [c for c in ended["status"]["conditions"] if c["type"] == "Stalled"]
    assert (stalled[0]["status"], stalled[0]["reason"]) == ("True", "RolloutConflict")
    assert "Rollout ro stalled on XynergyService crm" in status.message
    assert cloud_run.total_writes == writes
    world.client.rollouts.remove(ended)

    status = await world.converge(now + 3 * STEP)  # the stalled one gives it back
    assert status.promoting_since is None
    assert world.template_revision() == STABLE
    assert world.served() == {STABLE: 100}

    status = await world.converge(now + 4 * STEP, newer)
    assert status.phase.value == "Progressing", status.message
    assert status.stable_revision == STABLE
    assert status.stable_image.endswith(":1")
    assert world.template_revision() == STABLE, "the new revision is created with no traffic"
    assert world.served()[STABLE] >= 80


async def test_an_error_in_a_delivery_s_first_converge_is_reported_on_its_start(
    cloud_run: FakeCloudRun,
) -> None:
    """Review H 6. A blue-green Rollout (keep window 30 s) of the image a promoted one left
    the target on starts and finishes in the same converge (its new revision is the one
    served); the target patch fails (500). The status written is the started delivery's as
    it began, promotingSince carried over, not the working status with the keep window
    (scaleDownAt) of a promotion not finished (before: the error was reported on the
    working status, as `work` was known only once `_begin` returned)."""
    world, canary, now = await at_last_step(cloud_run)
    status = await world.converge(now)
    assert status.phase.value == "Promoted", status.message
    newer = rollout_body(NAME, {"blueGreen": {"scaleDownDelaySeconds": 30}}, deadline=60)
    newer["metadata"].update(name="ro-2", uid="uid-ro-2")
    world.client.rollouts = [world.body, newer]

    world.client.fail_next_patch("etcd timeout")
    status = await world.converge(now + STEP, newer)
    assert status.phase.value == "Progressing", status.message
    assert status.message == "patching XynergyService crm: etcd timeout"
    assert status.canary_revision == status.stable_revision == canary
    assert status.promoting_since == now + STEP, "the promotion written is on record"
    assert status.scale_down_at is None, "no keep window of a promotion not finished"
    assert world.requeue() == Requeue.BACKOFF


async def test_a_stalled_promotion_whose_edit_is_refused_still_gives_back(
    cloud_run: FakeCloudRun,
) -> None:
    """Review H 4. A Rollout stalls mid-promotion (Degraded, promotingSince, the template on
    its new revision), then a person edits it so its new delivery is refused (blue-green with
    a keep window on a service whose name leaves no room for the `previous` tag:
    InvalidTarget). The promotion is given back before the refusal (template and traffic on
    the stable revision, promotingSince cleared), so a newer Rollout of the target no longer
    waits on it (before: the edit was refused at every converge, the target held for good and
    the newer Rollout waited with no deadline)."""
    name = "svc-" + "a" * 35  # 39 characters: 'canary' fits, 'previous' does not
    world = World(cloud_run, name=name, operation_timeout=0.2)
    await world.deploy()
    stable = f"{name}-00001"
    status, now = await world.until("Progressing", T0)
    while status.canary_weight != 20:
        status = await world.converge(now)
        now += STEP
    canary = str(status.canary_revision)
    status = await world.stall_mid_promotion(now)
    assert status.phase.value == "Degraded"
    assert status.promoting_since is not None
    assert world.template_revision() == canary

    world.body["metadata"]["generation"] = 2
    world.body["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    world.body["spec"]["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 30}}
    status = await world.converge(now + 2 * STEP)
    assert status.phase.value == "Degraded", status.message
    assert world.condition("Stalled")["reason"] == "InvalidTarget"
    assert world.template_revision() == stable, "the template given back"
    assert world.served() == {stable: 100}
    assert status.promoting_since is None
    assert status.canary_weight == 0

    newer = rollout_body(name, CANARY, deadline=60)
    newer["metadata"].update(name="ro-2", uid="uid-ro-2")
    world.client.rollouts = [world.body, newer]
    status = await world.converge(now + 3 * STEP, newer)
    assert status.phase.value == "Progressing", status.message
    assert status.stable_revision == stable


async def test_an_invalid_spec_keeps_a_stalled_promotion_on_record(
    cloud_run: FakeCloudRun,
) -> None:
    """Review H 5. A Rollout stalled mid-promotion whose spec no longer validates (a check
    an upgrade added) keeps promotingSince with the split: it still holds the target, so a
    newer Rollout waits rather than starting on the half-promoted revision (before: the hold
    was dropped with no give-back, and the newer one started from it)."""
    world, canary, now = await at_last_step(cloud_run, operation_timeout=0.2)
    status = await world.stall_mid_promotion(now)
    assert status.promoting_since is not None
    since = status.promoting_since
    world.body["spec"]["strategy"] = {"rolling": {"maxSurge": 0, "maxUnavailable": 0}}
    status = await world.converge(now + 2 * STEP)
    assert world.condition("Stalled")["reason"] == "InvalidSpec"
    assert status.promoting_since == since

    newer = rollout_body(NAME, CANARY, deadline=60)
    newer["metadata"].update(name="ro-2", uid="uid-ro-2")
    newer["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    world.client.rollouts = [world.body, newer]
    status = await world.converge(now + 3 * STEP, newer)
    assert status.phase.value == "Pending", status.message
    assert "Rollout ro stalled on XynergyService crm" in status.message
    assert world.template_revision() == canary, "nothing started on the half-promotion"


NEW_IMAGE = "us-docker.pkg.dev/xynergy-test/platform/crm:3"


async def _split_stalled_then_target_edited(
    cloud_run: FakeCloudRun,
) -> tuple[World, str, dt.datetime]:
    """Review G1. A canary at 20 % stalls (403 on every Cloud Run call): Degraded with
    canaryWeight 20, the split {stable: 80, canary: 20} pinned by revision name. The 403 goes,
    a person edits the target to :3, and its controller deploys a revision of its own (its
    template), leaving the traffic as it finds it: the new revision gets nothing."""
    world, canary, now = await at_last_step(cloud_run)
    cloud_run.deny("the operator lost run.services.update")
    status = await world.converge(now)
    assert status.phase.value == "Degraded", status.message
    assert status.canary_weight == 20
    cloud_run.deny(None)
    world.client.target["spec"]["image"] = NEW_IMAGE
    await world.target_converge()
    assert world.served() == {STABLE: 80, canary: 20}, "the target's controller leaves traffic"
    assert world.template_revision() not in (STABLE, canary)
    return world, canary, now + STEP


async def test_a_split_stalled_mid_way_superseded_by_a_target_edit_goes_to_latest(
    cloud_run: FakeCloudRun,
) -> None:
    """Review G1. Found superseded, the split it pinned goes to LATEST 100 % (the target's own
    new revision), and only then the weight and finalizer go; once: a later converge writes
    nothing (before: the weight went with the split left pinned, so the edit never served
    and a deletion touched nothing)."""
    world, _canary, now = await _split_stalled_then_target_edited(cloud_run)
    template = world.template_revision()
    status = await world.converge(now)
    assert status.message.startswith("superseded"), status.message
    assert world.served() == {template: 100}
    assert not status.canary_weight
    assert not needs_finalizer(world.body)
    writes = world.writes()
    await world.converge(now + STEP)
    assert world.writes() == writes, "routed once, when found superseded"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"


async def test_a_superseded_split_whose_latest_write_fails_keeps_its_weight(
    cloud_run: FakeCloudRun,
) -> None:
    """Review G1. The write to LATEST refused (403): the status stays as it was (Degraded,
    weight 20, the finalizer kept), and the next converge routes it."""
    world, canary, now = await _split_stalled_then_target_edited(cloud_run)
    template = world.template_revision()
    cloud_run.deny("the operator lost run.services.update", rpc="services.patch")
    status = await world.converge(now)
    assert status.canary_weight == 20, status.message
    assert not status.message.startswith("superseded"), status.message
    assert needs_finalizer(world.body)
    assert canary in world.served()
    cloud_run.deny(None)
    status = await world.converge(now + STEP)
    assert status.message.startswith("superseded"), status.message
    assert world.served() == {template: 100}
    assert not needs_finalizer(world.body)


async def test_deleting_a_split_whose_target_moved_on_routes_it_to_latest(
    cloud_run: FakeCloudRun,
) -> None:
    """Review G1. Deleted before a converge found it superseded: its split goes to LATEST
    (before: the deletion let go with the old canary keeping its 20 % for good)."""
    world, _canary, _ = await _split_stalled_then_target_edited(cloud_run)
    template = world.template_revision()
    assert needs_finalizer(world.body)
    done, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert done
    assert event is not None
    assert event.reason == "Released", event
    assert "LATEST 100 %" in event.message, event.message
    assert world.served() == {template: 100}


async def test_a_superseded_split_is_left_to_a_delivering_rollout(
    cloud_run: FakeCloudRun,
) -> None:
    """Review G1. Another Rollout of the target delivering: its split is its own, not routed
    to LATEST under it."""
    world, _canary, now = await _split_stalled_then_target_edited(cloud_run)
    other = rollout_body(NAME, CANARY)
    other["metadata"].update(name="ro-2", uid="uid-ro-2")
    other["status"] = {"phase": "Progressing"}
    world.client.rollouts.append(other)
    served = world.served()
    status = await world.converge(now)
    assert status.message.startswith("superseded"), status.message
    assert world.served() == served


async def test_a_rollback_whose_target_is_then_edited_serves_the_edit(
    cloud_run: FakeCloudRun,
) -> None:
    """Review G1. An abort pins the stable revision (100 %) while the target still runs it
    (kept so for `retry`); once a person edits the target, the Rollout is superseded and the
    pin goes to LATEST, so the target's new revision serves (before: never)."""
    world, _canary, now = await at_last_step(cloud_run)
    world.ask("abort/1")
    status = await world.converge(now)
    assert status.phase.value == "Aborted", status.message
    assert world.served() == {STABLE: 100}
    status = await world.converge(now + STEP)
    assert world.served() == {STABLE: 100}, "pinned while the target is unchanged"
    world.client.target["spec"]["image"] = NEW_IMAGE
    await world.target_converge()
    status = await world.converge(now + 2 * STEP)
    assert status.message.startswith("superseded"), status.message
    assert world.served() == {world.template_revision(): 100}
