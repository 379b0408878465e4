"""Level-based converge of one Rollout: read the target XynergyService, make sure the new
revision exists (with no traffic), let the strategy decide the next move, move the traffic
through the target's backend, and say where the rollout stands in one `Result`.

Everything a restart needs is in the status (phase, step, weight, the step's clock, look and
run counts, the stable and new revisions), and every write is idempotent (the new revision is
named after its configuration; a traffic split is written only when it differs), so an
operator killed at any point resumes where it was: no second revision, no lost step.

People and GitOps act through `spec.abort`, `spec.paused` and the annotation
`xynergy.io/rollout-action` = `promote`, `promote-full`, `abort`, `retry` or `undo`
(optionally `<verb>/<anything unique>`, so the same verb can be asked again); the value acted
upon is kept in `status.handledAction`. Within a blue-green promotion's keep window
(`status.scaleDownAt`), `undo` and abort switch all traffic back to the kept old revision at
once (the backend's `restore`: no new revision, no analysis; reason `SwitchedBack`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType
from pydantic import ValidationError

from apis.conditions import (
    READY,
    RECONCILING,
    get_condition,
    mark_reconciling,
    mark_stalled,
    set_condition,
)
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.rollout import (
    AnalysisMetric,
    AnalysisRunSummary,
    CanaryStrategy,
    RevisionRecord,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Verdict,
    VerificationRun,
    VerificationSpec,
    VerificationStage,
)
from apis.v1alpha1.xynergyservice import Backend as BackendKind
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.context import OperatorContext
from controllers.core.controller import FINALIZER, ChildEvent, Kind, Requeue, Result
from controllers.core.errors import ProviderError, StalledError, TransientError
from controllers.core.events import Event
from controllers.core.status import spec_error
from controllers.metrics import RECONCILE_DURATION, RECONCILE_TOTAL
from controllers.providers.prometheus import MetricsProvider
from controllers.rollout.analysis import RunResult, collect, judge_run
from controllers.rollout.backends import (
    CANARY_TAG,
    MAX_TAGGED_NAME,
    PREVIEW_TAG,
    PREVIOUS_TAG,
    PROMOTION_FAILED,
    STABLE_TAG,
    CloudRunRollout,
    RolloutBackend,
    Routed,
    tag_fits,
)
from controllers.rollout.bluegreen import BlueGreen
from controllers.rollout.canary import Canary
from controllers.rollout.immediate import Immediate
from controllers.rollout.resources import (
    promotion_patch,
    restore_patch,
    restored,
    settled_on,
    spec_template,
    with_overrides,
)
from controllers.rollout.rolling import Rolling
from controllers.rollout.settings import RolloutSettings
from controllers.rollout.status import (
    ACTION_ANNOTATION,
    DELETING,
    HANDING_OVER,
    SUPERSEDED,
    conditions_for,
    events_for,
    handing_over,
    has_condition,
    holds_promotion,
    needs_finalizer,
    pending_action,
    pinned,
    record_run,
)
from controllers.rollout.strategy import (
    AnalysisRequest,
    Move,
    MoveKind,
    Progress,
    StepContext,
    Strategy,
)
from controllers.rollout.verification import Verify, evidence, verify

log = logging.getLogger(__name__)

__all__ = [
    "ACTION_ANNOTATION",
    "KIND",
    "RolloutReconciler",
    "check_tags",
    "cloud_run_tags",
    "from_context",
    "pending_action",
    "strategy_of",
]

KIND = Kind(GROUP, VERSION, "Rollout", "rollouts")
TARGET = Kind(GROUP, VERSION, "XynergyService", "xynergyservices")
ACTIONS = frozenset({"promote", "promote-full", "abort", "retry", "undo"})
_ACTIVE = (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED)
_ENDED = (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED, RolloutPhase.DEGRADED)
_DONE = (RolloutPhase.PROMOTED, *_ENDED)
_GONE = ("TargetNotFound", "NotFound")
"""Reasons of a StalledError saying the target (or its Cloud Run service) is gone: its
traffic went with it."""
_GOES_BACK = "; all traffic goes back on "
"""How a Rollout stalled mid-way says where its next converge routes the traffic."""
SPEC_PAUSED = "SpecPaused"
"""status.pauseReason of a rollout paused by spec.paused (lifting it resumes the rollout)."""
INVALID_SPEC = "InvalidSpec"
"""The reason of a Rollout whose spec this operator cannot read (`_invalid`)."""
_LEFT_TO = "; the traffic is left to Rollout "
# appended while a Rollout found superseded waits to route LATEST (`_superseded`); removed once
# it is marked superseded or its target runs what it left again (`_hold_ended`)
_LATEST_WAITS = "; found superseded, waiting: "
"""How an ended Rollout says another one delivering to its target has the traffic
(`_leave_to`); removed once that one has ended."""
CONFLICT = "RolloutConflict"
"""The reason of a Rollout that waits for another one of its target."""
_WAITING_FOR = "waiting for Rollout "
"""The start of the message of a Rollout waiting for another one's promotion to finish."""
TARGET_FIELD = "spec.targetRef.name"
"""The field selector of a target's Rollouts (the CRD's selectableFields)."""

Backends = Callable[[Rollout, XynergyService, XynergyService], RolloutBackend | None]
"""(rollout, target, new revision) -> the target's backend for this converge."""
MetricSource = Callable[[AnalysisMetric, XynergyService | None], MetricsProvider]
"""(metric, the rollout's target) -> where the metric is read (a cloudMonitoring metric from
the target's Cloud Run project)."""


def strategy_of(rollout: Rollout) -> Strategy:
    """The strategy object for spec.strategy (admission guarantees exactly one is set)."""
    chosen = rollout.spec.strategy
    if chosen.canary is not None:
        return Canary()
    if chosen.blue_green is not None:
        return BlueGreen()
    if chosen.rolling is not None:
        return Rolling()
    return Immediate()


@dataclass
class Converge:
    """One converge's working state."""

    rollout: Rollout
    target: XynergyService
    canary: XynergyService
    backend: RolloutBackend
    status: RolloutStatus
    now: dt.datetime
    reason: str = "Progressing"
    wait: float | None = None
    ran: bool = False
    verified: bool = False
    """A verification passed in this converge (pre-promotion then need not run again)."""
    interrupted: bool = False
    """The new revision's rollout was interrupted, or Cloud Run did not carry the promotion
    out: come back after the core's backoff (a Warning Event each time)."""
    handled_before: str | None = None
    """status.handledAction as read (set when the converge starts, before anything acts): an
    action whose promotion failed is asked again, and no older one looks pending."""
    promoted: bool = False
    """A promotion was tried in this converge (`_finish`): it is not tried twice."""
    name: str = ""
    """The revision the target with this Rollout's overrides makes now."""
    superseded: bool = False
    """The target was found moved on without this ended Rollout in this converge."""
    started: bool = False
    """A delivery started in this converge."""
    refused: str | None = None
    """Why an action was refused in this converge (a Warning Event says it)."""
    refused_reason: str = "UndoRefused"
    """The reason of that Event."""
    window_ended: str | None = None
    """Why a blue-green keep window was ended early in this converge (a Normal Event)."""
    siblings: list[dict[str, Any]] | None = None
    """The other Rollouts of the target as this converge listed them (`_others`)."""
    handover: bool = False
    """A Kubernetes Promoted Rollout whose own spec was edited while its promotion holds the
    target (`_hand_over`): this converge finishes that promotion; `canary`, `backend` and
    `name` are the promoted revision's, not the edited spec's."""
    held: RolloutStatus | None = None
    """The status as stored, when a give-back in this converge (a deletion's `_to_stable`)
    changed `status`: whether this Rollout holds the service is read there, as its siblings
    read it (`_latest_waits_for`), so that none waits for one waiting on it."""
    reverted: RevisionRecord | None = None
    """The revision a blue-green keep window keeps, when the Rollout's own spec was edited
    back to it within the window (`_hand_over`): `_act` switches back to it, as `undo`
    does; `canary`, `backend` and `name` are the promoted revision's."""
    base: RolloutStatus | None = None
    """The status an error of this converge is reported on (`_failed`): a copy of the stored
    one taken before anything acts, or of the status a delivery started in this converge
    begins with (its new revision then is on record). Not the working status, whose fields
    may be half-changed when the error is raised (a step and weight advanced whose traffic
    write then failed)."""


@dataclass(frozen=True)
class Waiting:
    """A Rollout that cannot start yet and is not stuck: Pending, Reconciling with `reason`,
    checked again in `after` seconds (`requeue` when None: the core's SOON by default)."""

    message: str
    reason: str = "TargetNotReady"
    after: float | None = None
    requeue: Requeue = Requeue.SOON
    """When `after` is None."""


def _progress(status: RolloutStatus, now: dt.datetime) -> Progress:
    return Progress(
        step=status.current_step_index or 0,
        weight=status.canary_weight or 0,
        started=status.step_started_at or now,
        looks=status.analysis_looks or 0,
        extended=status.extended_looks or 0,
        failed=status.failed_runs or 0,
        inconclusive=status.inconclusive_runs or 0,
    )


def _with_progress(status: RolloutStatus, p: Progress) -> RolloutStatus:
    return status.model_copy(
        update={
            "current_step_index": p.step,
            "canary_weight": p.weight,
            "step_started_at": p.started,
            "analysis_looks": p.looks,
            "extended_looks": p.extended,
            "failed_runs": p.failed,
            "inconclusive_runs": p.inconclusive,
        }
    )


def _fresh(rollout: Rollout, stable: str, canary: str, now: dt.datetime) -> RolloutStatus:
    old = rollout.status or RolloutStatus()
    status = RolloutStatus(
        conditions=old.conditions,
        phase=RolloutPhase.PROGRESSING,
        stable_revision=stable,
        canary_revision=canary,
        history=old.history,
        handled_action=old.handled_action,
        stable_image=old.stable_image if old.stable_revision == stable else None,
        stable_template=old.stable_template if old.stable_revision == stable else None,
        canary_image=old.canary_image if old.canary_revision == canary else None,
        message=f"delivering revision {canary} (stable: {stable})",
        delivered_spec=_spec_digest(rollout),
    )
    return _with_progress(status, Progress(step=0, weight=0, started=now))


class RolloutReconciler:
    """The kind's `KindReconciler`."""

    kind = KIND
    trigger_annotations = frozenset({ACTION_ANNOTATION})
    """The core converges on a change of these (an annotation does not move the generation)."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        backends: Backends,
        metrics: MetricSource,
        settings: RolloutSettings,
        verifier: Verify = verify,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.client = client
        self.backends = backends
        self.metrics = metrics
        self.settings = settings
        self.verifier = verifier
        self.clock = clock
        self._unselectable = False
        self._pruned = False
        """A waiting Rollout was found without status.waitingSince (`_wait_began`): warned."""
        """The API server refused a field selector on spec.targetRef.name (`_siblings`)."""
        self._holding: dict[str, str] = {}
        """Per Rollout whose deletion the last release held: what it waits for, until the
        core asks for the status that says so (`deletion_status`)."""

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        started = time.perf_counter()
        result, outcome = await self._converge(body, now)
        RECONCILE_TOTAL.labels(KIND.kind, outcome).inc()
        RECONCILE_DURATION.labels(KIND.kind, outcome).observe(time.perf_counter() - started)
        return result

    async def _converge(self, body: Mapping[str, Any], now: dt.datetime) -> tuple[Result, str]:
        try:
            rollout = Rollout.model_validate(dict(body))
        except ValidationError as exc:
            return self._invalid(body, exc, now), "stalled"
        action = pending_action(body)
        # the status as read: a converge changes the Rollout's own status object in place
        before = rollout.status.model_copy(deep=True) if rollout.status else None
        work: Converge | None = None
        setup: list[Converge] = []  # `_begin`'s converge, for an error raised within it too
        try:
            begun = await self._begin(rollout, now, setup)
            if isinstance(begun, Waiting):
                return self._waiting(rollout, now, begun), "ok"
            work = begun
            await self._act(work, action)
        except (StalledError, TransientError) as exc:
            outcome = "stalled" if isinstance(exc, StalledError) else "retry"
            # a delivery `_begin` started: reported on its base (before it starts, on the
            # status as `_begin` leaves it, `_give_up_waiting`'s Degraded, say)
            work = work or next((w for w in setup if w.started), None)
            base = work.base if work is not None and work.base is not None else rollout.status
            failed = self._failed(rollout, base, exc, now)
            waits = isinstance(exc, TransientError) or exc.reason == CONFLICT
            if waits and isinstance(failed.status, RolloutStatus):
                # not carried out: a person's action stays pending, tried again with the retry
                # (a conflict: once the other Rollout of the target has ended)
                failed.status.handled_action = before.handled_action if before else None
            if work is not None and isinstance(failed.status, RolloutStatus):
                if not waits:  # stalled on it: the action was acted upon (not replayed)
                    failed.status.handled_action = work.status.handled_action
                # the one working field carried over on purpose: a promotion written (maybe
                # carried out) whose converge failed after it is finished by the next
                # converge, or given back by a rollback
                failed.status.promoting_since = work.status.promoting_since
            if work is not None and work.started:
                # the status written names the new delivery: no later converge starts it, so
                # what is said once when a delivery starts is said now or never
                failed = replace(failed, events=[*failed.events, *_ignored(work)])
            return failed, outcome
        return self._result(work, before, action), "ok"

    def needs_finalizer(self, body: Mapping[str, Any]) -> bool:
        """While it may hold its target's traffic split on Cloud Run (status.py)."""
        return needs_finalizer(body)

    def deletion_status(self, body: Mapping[str, Any]) -> RolloutStatus | None:
        """The status while the deletion the last `release` held waits: Reconciling (reason
        `Deleting`; Ready False), its message saying what the deletion waits for, why, and
        when the Rollout goes anyway. The phase and the rest stay as they were. Written by
        the core only when it changed: once per reason, not per try."""
        meta = body.get("metadata") or {}
        message = self._holding.pop(str(meta.get("uid") or ""), None)
        if message is None:
            return None
        try:
            status = RolloutStatus.model_validate(body.get("status") or {})
        except ValidationError:
            return None
        status.message = message
        status.conditions = mark_reconciling(
            status.conditions,
            reason=DELETING,
            message=message,
            generation=meta.get("generation"),
            now=self.clock(),
        )
        return status

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:
        """Deletion of a Rollout that holds the finalizer: a Progressing or Paused one (or, on
        Cloud Run, one stalled mid-way whose converge has not routed the split back yet:
        Degraded with canaryWeight above 0) sends all traffic back to the stable revision before
        it goes, as a rollback does (Flagger's revertOnDeletion; with a promotion written and
        not carried out, status.promotingSince, the template too: `restore`); a Kubernetes
        blue-green promotion still in its keep window, or handing over to an edit of its own
        spec (the window ended, the target rolling), finishes (the target patched and ready on
        the promoted revision as the status recorded it, `_finish_kept`: without it the target
        would serve the old revision again once the Rollout is gone); an ended one on Cloud Run
        (its stable revision pinned by name, `pinned`; one stalled mid-way once its split is
        back) routes all traffic to LATEST (`_to_latest`: the service's latest ready revision,
        which is the target's own), so that a later edit of the XynergyService serves, unless
        another Rollout of the target delivers (its split is its own); so does one whose target
        moved on, without giving its split back first; any other lets go touching nothing. A
        Rollout whose spec cannot be read acts the same on Cloud Run from its stored status
        (`_stand_in`); else an Event says what it leaves (`_unreadable_release`). It never waits
        for good: a target that is gone, or an operator without the backend, lets go at once (an
        Event says what was left); otherwise it is retried until spec.progressDeadlineSeconds
        after the deletion was asked for (an Event per reason saying why and how to delete at
        once), then it lets go saying what it left."""
        try:
            rollout = Rollout.model_validate(dict(body))
        except ValidationError as exc:  # e.g. stored before a check this operator adds
            stand_in = _stand_in(body)
            if stand_in is None:
                return True, _unreadable_release(body, exc)
            rollout = stand_in
        status = rollout.status or RolloutStatus()
        stable, canary = status.stable_revision, status.canary_revision
        # a Kubernetes blue-green promotion whose target is not patched yet, or is still
        # rolling to it: handing over to an edit of its own spec (`_hand_over`)
        keeping = holds_promotion(status.model_dump(by_alias=True, mode="json"))
        # mid-rollout, or stalled mid-way on Cloud Run (the split stays until a converge
        # routes it back: the weight is kept until then, _failed)
        # (a blue-green preview stalled while promoting: weight 0, promotingSince set)
        split = status.phase in _ACTIVE or (
            status.phase in _ENDED
            and (bool(status.canary_weight) or status.promoting_since is not None)
        )
        ended = pinned(status.model_dump(by_alias=True, mode="json"))  # Cloud Run: by name
        if not keeping and ((not split and not ended) or not stable or not canary):
            return True, None  # nothing split yet, or ended: left as it is
        latest = False  # whether the traffic was going to LATEST (`_restore_held`)
        try:
            target = await self._target(rollout)
            # a promotion finishes with the revision it promoted (as stored), never with an
            # edit of the spec that no converge has delivered yet
            new = _promoted(target, rollout) if keeping else with_overrides(target, rollout.spec)
            backend = self.backends(rollout, target, new)
            if backend is None:
                return True, Event(
                    "Warning",
                    "TrafficNotRestored",
                    f"deleted while {status.phase}: the {target.spec.backend.value} backend is "
                    f"not available in this operator, so the traffic is left as it was "
                    f"({_left(status)}); route it to {stable} by hand",
                )
            work = Converge(rollout, target, new, backend, status, self.clock())
            if keeping:
                work.name = canary or backend.revision_name(new)
                return await self._finish_kept(work, body)
            if backend.routing is not None:
                # Kubernetes: the new revision's children go with the Rollout (owner
                # references) and the gateway serves the target's own Service once it is gone
                return True, None
            if status.phase in _ENDED:
                work.name = backend.revision_name(new)
                if (runs := _moved_on(work)) is not None:  # superseded: the target's own now
                    latest = True
                    if (waits := await self._latest_held(work, body)) is not None:
                        return waits
                    return True, await self._release_moved_on(work, runs)
            if status.phase in _ACTIVE and await self._latest_is_stable(work):
                latest = True  # one write: LATEST is the stable revision
                await work.backend.route(work.target, ((None, 100, None),))
                return True, _restored(rollout, status, patched=False, latest=True)
            # the template too if a promotion was written; an ended Rollout's split is not
            # given back over a sibling that started delivering since (a held deletion's
            # retry, `_latest_held`, would route the stable over that sibling's canary)
            if split and status.phase in _ENDED and await self._active_sibling(work):
                split = False
            work.held = status.model_copy(deep=True)  # as stored: before any give-back
            patched = await self._to_stable(work) if split else False
            if status.phase in _ENDED:
                latest = True
                if (waits := await self._latest_held(work, body)) is not None:
                    return waits
                return True, await self._release_ended(work, gave_back=split, patched=patched)
            if await self._latest_is_stable(work):  # a promotion given back: LATEST is stable
                latest = True
                await work.backend.route(work.target, ((None, 100, None),))
                return True, _restored(rollout, status, patched=patched, latest=True)
        except StalledError as exc:
            if exc.reason not in _GONE:
                return self._restore_held(rollout, body, exc, latest=latest)
            return True, Event(
                "Normal",
                "Released",
                f"deleted while {status.phase}: {exc.message}; nothing left to route",
            )
        except ProviderError as exc:
            return self._restore_held(rollout, body, exc, latest=latest)
        return True, _restored(rollout, status, patched=patched, latest=False)

    async def _latest_is_stable(self, work: Converge) -> bool:
        """The deletion of a delivering Cloud Run Rollout (`release`): whether all traffic can
        go back on the stable revision as LATEST 100 % (the service's latest ready revision)
        rather than pinned by name, in one write. Pinned by name, it stayed so once the
        Rollout was gone (the target's own controller does not manage Cloud Run traffic), and
        a later edit of the XynergyService made a revision that got no traffic. So when no
        promotion is written (its template to give back first: `_to_stable`, after which
        this is asked again), the service's template names the stable revision (LATEST is it:
        the new revision was made with the template given back, `ensure_canary`), the target
        runs the stable spec the status recorded, and no other Rollout of the target
        delivers or may be starting (`_to_latest`: a split of its own)."""
        status, target = work.status, work.target
        stable = status.stable_revision
        if work.backend.routing is not None or not stable or not status.stable_image:
            return False
        if not _runs(target, status.stable_image, status.stable_template):
            return False  # the target moved on (a person's edit): left pinned, as before
        if await _promotion_written(work.backend, target, status):
            return False
        if (await work.backend.serving(target)).template != stable:
            return False
        return (
            await self._active_sibling(work) is None and await self._starting_sibling(work) is None
        )

    async def _latest_held(
        self, work: Converge, body: Mapping[str, Any]
    ) -> tuple[bool, Event | None] | None:
        """The deletion of an ended Cloud Run Rollout whose traffic goes to LATEST
        (`_release_ended`, `_release_moved_on`) while no other Rollout of the target delivers
        but one may be starting or still holds the service (`_latest_waits_for`, which never
        names one waiting for this Rollout): LATEST written now would take its traffic, and
        letting go without it would leave the traffic pinned by revision name for good (the
        other one may never start). The deletion waits (a Normal `DeletionWaiting`), retried
        until spec.progressDeadlineSeconds after it was asked for (`_hold`): once the other
        one delivers its traffic is its own; once it is gone or has let go of the service,
        LATEST is written. None when the deletion need not wait."""
        status = work.status
        if work.backend.routing is not None or status.phase == RolloutPhase.PROMOTED:
            return None
        if not status.stable_revision or await self._active_sibling(work) is not None:
            return None
        waits_for = await self._latest_waits_for(work)
        if waits_for is None:
            return None
        name = work.rollout.spec.target_ref.name
        return self._hold(
            work.rollout,
            body,
            key="WaitingForSibling",
            waits=f"to route all traffic of XynergyService {name} to its latest revision "
            "(LATEST 100 %)",
            why=f"Rollout {waits_for} of the same target may be starting or still holds the "
            "service, and LATEST written now would take its traffic; it is routed once that "
            "Rollout delivers (its traffic is then its own), lets go of the service or is gone",
            left=f"the traffic is left as it was ({_left(status)}, pinned by revision name): "
            f"route it to LATEST by hand (gcloud run services update-traffic {name} "
            "--to-latest)",
            timeout_reason="TrafficNotRestored",
            warning=False,
        )

    async def _release_ended(self, work: Converge, *, gave_back: bool, patched: bool) -> Event:
        """The deletion of an ended Cloud Run Rollout whose target runs what it left there
        (its split given back first when it stalled mid-way, `patched`: the target patched
        back with it): its stable revision is pinned by name, and the target's own controller
        does not manage Cloud Run traffic, so all traffic goes to LATEST (`_to_latest`) unless
        another Rollout of the target delivers. The Event says which."""
        status, name = work.status, work.rollout.spec.target_ref.name
        stable = status.stable_revision
        back = f"its split given back to {stable}, " if gave_back else ""
        back += _patched_back(work.rollout, status)[2:] + ", " if patched else ""
        if await self._to_latest(work):
            routed = (
                f"{back}all traffic goes to the latest revision of XynergyService {name} "
                f"(LATEST 100 %: {stable}, which it runs), no longer pinned by name, so a later "
                "edit of the XynergyService serves"
            )
        elif (active := await self._active_sibling(work)) is not None:
            routed = (
                f"{back}its traffic is left to Rollout {active}, delivering to XynergyService "
                f"{name}"
            )
        else:
            routed = f"{back}its traffic is left as it was ({_left(status)})"
        return Event("Normal", "Released", f"deleted while {status.phase}: {routed}")

    async def _release_moved_on(self, work: Converge, runs: str) -> Event:
        """The deletion of a Cloud Run Rollout stalled mid-way whose target moved on (it runs
        `runs`): its split goes to LATEST (the target's own revision), as a converge finding it
        superseded routes it (`_superseded`); the template is left. The Event says which."""
        if await self._to_latest(work):
            left = "all traffic goes to its latest revision (LATEST 100 %)"
        elif (active := await self._active_sibling(work)) is not None:
            left = f"its traffic is left to Rollout {active}, delivering to it"
        else:
            left = f"its traffic is left as it was ({_left(work.status)})"
        return Event(
            "Normal",
            "Released",
            f"deleted while {work.status.phase}: XynergyService "
            f"{work.rollout.spec.target_ref.name} now runs {runs}, not what this Rollout left "
            f"it on; {left}, its template as it is",
        )

    async def _finish_kept(
        self, work: Converge, body: Mapping[str, Any]
    ) -> tuple[bool, Event | None]:
        """A Kubernetes blue-green promotion deleted within its keep window, or while it hands
        over to an edit of its own spec (Reconciling `HandingOver`: the window ended, the
        target patched and rolling): the target is patched to the promoted revision now (it
        would be at the window's end; `work.canary` is that revision as the status recorded
        it, `_promoted`, never an edit of the spec not delivered yet), and the Rollout, whose
        promoted revision serves meanwhile, goes once the target runs it and is ready. A
        target that moved on without it (superseded) is left alone, and so is one another
        Rollout delivers to (patching it would move that one's stable revision under its
        analysis): the Rollout lets go, an Event saying what it left. Within the window, a
        spec edited back to the revision the window keeps (a revert of the release, not
        converged yet) is a switch back (`_hand_over`): the target, never patched, keeps
        running it and the Rollout lets go."""
        rollout, status, target = work.rollout, work.status, work.target
        name = rollout.spec.target_ref.name
        promoted = status.canary_revision
        if _moved_on(work) is not None:
            return True, None
        during = (
            "within the blue-green keep window"
            if status.scale_down_at is not None
            else "while handing over to an edit of its own spec"
        )
        kept = _kept(status, work.now)
        if (
            kept is not None
            and _runs(with_overrides(target, rollout.spec), kept.image, kept.template)
            and _runs(target, kept.image, kept.template)
        ):
            return True, Event(
                "Normal",
                "Released",
                f"deleted {during} after its spec was edited back to the revision the window "
                f"keeps, {kept.revision} (image {kept.image}): XynergyService {name} still "
                f"runs it and is not patched; the promoted revision {promoted} goes with this "
                "Rollout",
            )
        edit = (
            f"; the edit of its spec (image {rollout.spec.image}) is not delivered: the "
            "Rollout is deleted before its delivery started"
            if _asked_anew(work)
            else ""
        )
        if not settled_on(target, work.canary) and (active := await self._active_sibling(work)):
            return True, Event(
                "Normal",
                "Released",
                f"deleted {during} while Rollout {active} delivers to XynergyService {name}: "
                f"the target is not patched under it and keeps running image "
                f"{target.spec.image}; the promoted revision {promoted} goes with this "
                f"Rollout{edit}",
            )
        if not settled_on(target, work.canary):
            await self._patch_target(work, promotion_patch(work.canary))
        elif (await work.backend.serving(target)).ready:
            return True, Event(
                "Normal",
                "Released",
                f"deleted {during}: XynergyService {name} runs the promoted revision "
                f"{promoted} (image {work.canary.spec.image}) and is ready; the old revision is "
                f"no longer kept{edit}",
            )
        why = (
            "the keep window ended early with the deletion, so the target was patched and is "
            "rolling (until it is ready the new revision serves)"
            if status.scale_down_at is not None
            else "the keep window ended for an edit of the Rollout's own spec, so the target "
            "was patched and is rolling (until it is ready the promoted revision serves)"
        )
        return self._hold(
            rollout,
            body,
            key="TargetUpdating",
            waits=f"for XynergyService {name} to run the promoted revision {promoted} (image "
            f"{work.canary.spec.image})",
            why=why + edit,
            left="the target goes on rolling to it without this Rollout; until its Pods are "
            "ready the old revision serves again",
            timeout_reason="PromotionUnfinished",
            warning=False,
        )

    def _restore_held(
        self, rollout: Rollout, body: Mapping[str, Any], exc: ProviderError, *, latest: bool
    ) -> tuple[bool, Event | None]:
        """Hold a deletion whose routing failed (`_hold`), saying what it waits for: the
        target patched (a keep window), the traffic going to LATEST (`latest`: an ended
        Cloud Run Rollout, `_release_ended`, `_release_moved_on`), or back to the stable
        revision."""
        status = rollout.status or RolloutStatus()
        stable = status.stable_revision
        if latest:
            name = rollout.spec.target_ref.name
            return self._hold(
                rollout,
                body,
                key=exc.reason,
                waits=f"to route all traffic of XynergyService {name} to its latest revision "
                "(LATEST 100 %)",
                why=exc.message,
                left=f"the traffic is left as it was ({_left(status)}, pinned by revision "
                f"name): route it to LATEST by hand (gcloud run services update-traffic {name} "
                "--to-latest)",
                timeout_reason="TrafficNotRestored",
            )
        if status.phase == RolloutPhase.PROMOTED:  # the keep window: the target not patched
            name = rollout.spec.target_ref.name
            return self._hold(
                rollout,
                body,
                key=exc.reason,
                waits=f"for XynergyService {name} to run the promoted revision "
                f"{status.canary_revision}",
                why=exc.message,
                left=f"XynergyService {name} may be left on the old revision: patch its image "
                "by hand",
                timeout_reason="PromotionUnfinished",
            )
        return self._hold(
            rollout,
            body,
            key=exc.reason,
            waits=f"to return all traffic to the stable revision {stable}",
            why=exc.message,
            left=f"the traffic is left as it was ({_left(status)}): route it to {stable} by hand",
            timeout_reason="TrafficNotRestored",
        )

    def _hold(
        self,
        rollout: Rollout,
        body: Mapping[str, Any],
        *,
        key: str,
        waits: str,
        why: str,
        left: str,
        timeout_reason: str,
        warning: bool = True,
    ) -> tuple[bool, Event | None]:
        """Keep the finalizer (an Event: what the deletion waits for, why, until when, how to
        delete at once; said once per Reconciling `Deleting` message, which the core keys on,
        `key` only standing in when no status is written) until
        spec.progressDeadlineSeconds after the deletion was asked for; then let go with a
        Warning `timeout_reason` saying what was left."""
        uid, now = rollout.metadata.uid or "", self.clock()
        asked = _deletion_time((body.get("metadata") or {}).get("deletionTimestamp")) or now
        limit = rollout.spec.progress_deadline_seconds
        deadline = asked + dt.timedelta(seconds=limit)
        if now >= deadline:
            return True, Event(
                "Warning",
                timeout_reason,
                f"deleted after waiting {limit}s (spec.progressDeadlineSeconds) {waits}: {why}; "
                f"{left}",
            )
        self._holding[uid] = (
            f"being deleted: the deletion waits {waits}: {why}; the Rollout goes anyway at "
            f"{_stamp(deadline)} (spec.progressDeadlineSeconds after the deletion)"
        )
        name, ns = rollout.metadata.name, rollout.metadata.namespace
        return False, Event(
            "Warning" if warning else "Normal",
            "DeletionBlocked" if warning else "DeletionWaiting",
            f"the deletion waits {waits}: {why}; retried until {_stamp(deadline)} "
            "(spec.progressDeadlineSeconds after the deletion), then the Rollout goes anyway. "
            f"To delete it now ({left}), remove its finalizer {FINALIZER}: kubectl patch "
            f"rollouts.xynergy.io {name} -n {ns} --type=json "
            '-p \'[{"op":"remove","path":"/metadata/finalizers"}]\'',
            key=key,
        )

    # ---- reading -----------------------------------------------------------------------------

    async def _target(self, rollout: Rollout) -> XynergyService:
        name, ns = rollout.spec.target_ref.name, rollout.metadata.namespace
        try:
            obj: Any = await self.client.get(TARGET.resource, name, namespace=ns)
        except ApiError as exc:
            if exc.status.code == 404:
                raise StalledError(
                    f"spec.targetRef: XynergyService {name!r} not found in namespace {ns}",
                    reason="TargetNotFound",
                ) from exc
            raise TransientError(
                f"reading XynergyService {name}: {exc}", reason="ApiError"
            ) from exc
        return XynergyService.model_validate(obj.to_dict())

    async def _begin(
        self, rollout: Rollout, now: dt.datetime, setup: list[Converge] | None = None
    ) -> Converge | Waiting:
        """The converge's facts; a new rollout starts from step 0 when the new revision
        (named after its configuration) is not the one the status follows. An ended Rollout
        never restarts because its target changed (a later release, an edit of the target):
        only an edit of its own spec while the target runs what it left there starts it
        again (or `retry`). No rollout starts while another one of the same target is
        active, or while another one's Kubernetes promotion still holds the target (then it
        waits, `_refuse_overlap`), nor before the target serves, nor (one not started yet)
        while spec.paused holds it back."""
        target = await self._target(rollout)
        canary = with_overrides(target, rollout.spec)
        backend = self.backends(rollout, target, canary)
        if backend is None:
            raise StalledError(
                f"Rollouts on the {target.spec.backend.value} backend are not available in this "
                "operator",
                reason="BackendNotSupported",
            )
        name = backend.revision_name(canary)
        status = rollout.status or RolloutStatus()
        work = Converge(rollout, target, canary, backend, status, now, name=name)
        if setup is not None:  # an error once its delivery started: reported on `work.base`
            setup.append(work)
        work.handled_before = status.handled_action
        status.traffic_routing = backend.routing
        work.base = status.model_copy(deep=True)
        if status.phase is not None and status.canary_revision == name:
            return work
        if status.phase in _DONE and status.canary_revision and not _asked_anew(work):
            return work  # ended: a change of the target alone never starts it again
        if await self._hand_over(work):  # its own promotion finishes first
            return work
        # stalled mid-promotion: given back first, or a refusal below holds the target for good
        stalled = await self._give_back_stalled(work)
        if target.spec.backend == BackendKind.CLOUD_RUN:
            # a delivery starts: before anything is read or moved
            check_tags(rollout, target, in_flight=status.phase in _ACTIVE)
        # before the target's readiness: a sibling's promotion rolls the target meanwhile
        if (
            held := await self._refuse_overlap(rollout, starting=True, now=now, work=work)
        ) is not None:
            return held
        if rollout.spec.paused and _unstarted(status.model_dump(by_alias=True, mode="json")):
            # held back by a person before it started: nothing is deployed, and no Rollout
            # of the target ends a keep window for it (`_newer`); lifting it is a spec change
            return Waiting(
                "paused by spec.paused before its delivery started: it starts (deploys its new "
                "revision) once spec.paused is lifted",
                reason=SPEC_PAUSED,
                requeue=Requeue.RESYNC,
            )
        if (held := await self._wait_for_give_back(rollout, starting=True, work=work)) is not None:
            return held
        given_back = await self._give_back_pending(work) or stalled
        serving = await backend.serving(target)
        if given_back is None and (serving.revision is None or not serving.ready):
            return Waiting("the target has no serving revision yet")
        previous = status.canary_revision
        work.status = _fresh(rollout, given_back or serving.revision or "", name, now)
        rollout.status = work.status  # one object: the backend reads the working status
        work.status.canary_image = canary.spec.image
        work.status.stable_image = target.spec.image
        work.status.stable_template = spec_template(target)
        work.status.traffic_routing = backend.routing
        work.reason, work.started = "Started", True
        work.base = work.status.model_copy(deep=True)
        if previous and previous != name:  # the spec changed mid-rollout: one new revision
            await backend.retire(keep=name)
        if serving.revision == name:
            await self._finish(work, "the new revision is already the stable one")
        return work

    async def _hand_over(self, work: Converge) -> bool:
        """A Kubernetes Promoted Rollout whose own spec is edited (a new delivery) while its
        promotion still holds the target (`_finishing`: within its blue-green keep window the
        target still runs the old revision; after it, the promoted revision serves until the
        target runs it and is ready). Started now, the new delivery would take the old
        revision for its stable one and remove the promoted revision's Deployment, which
        serves everything. The promotion finishes first, the Rollout staying Promoted
        (Reconciling `HandingOver`; siblings see it holding the target, and the finalizer
        stays): `work` becomes the promoted revision's (its spec: the target with
        status.stableImage and stableTemplate; its backend; its name) and `_hold_ended` ends
        the window (`_end_keep_window`) and finishes the promotion. True while it does; False
        when nothing is held, or once the target runs the promoted revision and is ready and
        the stored status no longer routes the gateway to the promoted revision (the converge
        that found it ready wrote that first, `_hold_ended`): the new delivery then starts
        from it (its start removes the promoted Deployment, which no longer serves).

        An edit back to the revision the keep window keeps (a GitOps revert of the release,
        within the window: the target still runs it) is no new delivery: `work.reverted`
        names that revision and `_act` switches back to it at once, as `undo` does in the
        window (`_switch_back`), instead of handing over to the promoted revision and running
        a canary of the kept one against it."""
        status, target, rollout = work.status, work.target, work.rollout
        if (
            status.phase != RolloutPhase.PROMOTED
            or not work.backend.defers_target_patch
            or not status.stable_image
            or not status.canary_revision
            or self._finishing({"status": status.model_dump(by_alias=True, mode="json")}) is None
        ):
            return False
        kept = _kept(status, work.now)
        reverted = kept is not None and _runs(work.canary, kept.image, kept.template)
        promoted = restored(target, status.stable_image, status.stable_template)
        if (
            not reverted
            and not status.scale_down_at
            and not status.traffic
            and settled_on(target, promoted)
            and (await work.backend.serving(target)).ready
        ):
            return False  # the promotion is over in fact (the status not updated yet)
        backend = self.backends(rollout, target, promoted)
        if backend is None:  # as `_begin` found it: the same backend kind
            return False
        work.canary, work.backend, work.name = promoted, backend, status.canary_revision
        if reverted:
            work.reverted = kept
        else:
            work.handover = True
        return True

    async def _give_back_pending(self, work: Converge) -> str | None:
        """Before a new delivery of a Rollout whose promotion of its previous new revision was
        written and not finished (status.promotingSince, or the Cloud Run template naming that
        revision: the Rollout's spec edited meanwhile): the promotion is given
        back as an abort would (`restore`: the stable revision's template and all traffic on
        it), as its target was not patched, and the new delivery starts from the stable
        revision (returned; None when nothing was given back). Without this the stable
        revision became whatever Cloud Run served (the old new revision once its operation
        was done) while status.stableImage named the target's unpatched image. A promotion
        whose target patch is in, or a target edited meanwhile (the target no longer runs the
        stable spec: its own controller deploys it), is left as it is."""
        status = work.status
        stable, old = status.stable_revision, status.canary_revision
        if status.phase == RolloutPhase.PROMOTED or not stable or not old or old == work.name:
            return None
        if status.stable_image and not _runs(
            work.target, status.stable_image, status.stable_template
        ):
            return None  # the target patched: the promotion is done, only not recorded
        if not await _promotion_written(work.backend, work.target, status):
            return None
        log.info(
            "rollout %s: giving back the unfinished promotion of %s (now %s) to %s",
            work.rollout.metadata.name,
            old,
            work.name,
            stable,
        )
        await work.backend.restore(
            work.target, kept=stable, image=status.stable_image, template=status.stable_template
        )
        return stable

    async def _give_back_stalled(self, work: Converge) -> str | None:
        """A Rollout stalled with its promotion written and not finished (`Degraded`,
        status.promotingSince) whose spec was edited: the promotion is given back
        (`_give_back_pending`) before the new delivery's checks, not after them: one refusing
        it (`check_tags`, another Rollout of the target) would otherwise leave the template
        on the half-promoted revision and promotingSince set for good, and newer Rollouts
        waiting on it (`_wait_for_give_back`) with no deadline. The status says so (all
        traffic on the stable revision, promotingSince cleared), also as the error of a
        refusal writes it (`Converge.base`). The stable revision given back, or None."""
        status = work.status
        if status.phase not in _ENDED or status.promoting_since is None:
            return None
        stable = await self._give_back_pending(work)
        if stable is None:
            return None
        status.promoting_since, status.canary_weight, status.traffic = None, 0, None
        status.message = (
            f"the promotion of revision {status.canary_revision} given back: all traffic "
            f"back on {stable}"
        )
        work.base = status.model_copy(deep=True)
        return stable

    async def _siblings(self, rollout: Rollout) -> list[dict[str, Any]]:
        """The other Rollouts of the same target, in its namespace: one list call, selected
        server-side by a field selector on spec.targetRef.name (the CRD's selectableFields),
        not every Rollout of the namespace per converge. An apiserver that refuses the
        selector (before Kubernetes 1.31, or a CRD not updated yet: 400) is listed whole, as
        before, for the rest of the process (one warning); the target is checked here too."""
        ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
        fields: dict[str, Any] | None = None if self._unselectable else {TARGET_FIELD: target}
        try:
            others = await self._list_rollouts(ns, fields)
        except ApiError as exc:
            if fields is None or exc.status.code != 400:
                raise TransientError(f"listing Rollouts in {ns}: {exc}", reason="ApiError") from exc
            log.warning(
                "the API server cannot list Rollouts by %s (%s): this operator lists every "
                "Rollout of a namespace to find a target's (CRD selectableFields need "
                "Kubernetes 1.31+ and the CRDs of this release)",
                TARGET_FIELD,
                exc.status.message,
            )
            self._unselectable = True
            try:
                others = await self._list_rollouts(ns, None)
            except ApiError as again:
                raise TransientError(
                    f"listing Rollouts in {ns}: {again}", reason="ApiError"
                ) from again
        return [
            other
            for other in others
            if (meta := other.get("metadata") or {}).get("uid") != rollout.metadata.uid
            and meta.get("name") != rollout.metadata.name
            and ((other.get("spec") or {}).get("targetRef") or {}).get("name") == target
        ]

    async def _list_rollouts(
        self, ns: str | None, fields: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        items: Any = self.client.list(KIND.resource, namespace=ns, fields=fields)
        return [o.to_dict() async for o in items]

    async def _others(self, work: Converge) -> list[dict[str, Any]]:
        """`_siblings`, listed once per converge (an ended Rollout asks who delivers and who
        waits)."""
        if work.siblings is None:
            work.siblings = await self._siblings(work.rollout)
        return work.siblings

    async def _refuse_overlap(
        self,
        rollout: Rollout,
        *,
        starting: bool = False,
        now: dt.datetime | None = None,
        work: Converge,
    ) -> Waiting | None:
        """Stalled when another Rollout of the same target is active (Progressing, Paused), or
        was created earlier and has not started yet: two rollouts of one target would move
        its traffic and patch it against each other. This one starts once the other ended.
        A Kubernetes promotion still finishing (`_finishing`) counts as active: the target
        does not run the promoted revision yet, so this one would start from the old one.
        `starting`: a delivery about to start. A Rollout created after that promotion that
        has not started (`_unstarted`) is what the promoted one ends a blue-green keep window
        early for (`_end_keep_window`): it waits, Pending and Reconciling (not Stalled: it
        starts on its own in moments), checked again every poll interval, and starts once
        the target runs the promoted revision and is ready. It waits so at most its own
        spec.progressDeadlineSeconds from when it began to (status.waitingSince, set at `now`
        when the wait begins and unset when it ends): then, the target never settling, it is
        Degraded, Stalled RolloutConflict with a Warning, and still starts once it has."""
        target = rollout.spec.target_ref.name
        mine = _created(rollout.metadata.model_dump(by_alias=True))
        own = rollout.status.model_dump(by_alias=True, mode="json") if rollout.status else {}
        # listed first (once per converge: `_wait_for_give_back` reads the same list): a
        # failed list (retried) reports the status as stored, waitingSince with it, so a
        # transient error does not restart the wait's deadline
        siblings = await self._others(work)
        # the wait for a promotion (status.waitingSince) lasts only while this converge holds
        # it so: any other outcome (a start, a conflict, a person holding it) ends it
        waited = rollout.status.waiting_since if rollout.status else None
        if waited is None and rollout.status is not None:
            waited = self._wait_began(rollout)
        if rollout.status is not None:
            rollout.status.waiting_since = None
        # spec.paused or spec.abort: no window is ended for it (`_newer`), and it waits as
        # long as the person holds it back
        by_hand = rollout.spec.paused or rollout.spec.abort
        held: tuple[str, str] | None = None  # the promoted Rollout waited for, and why
        for other in siblings:
            meta = other.get("metadata") or {}
            phase = (other.get("status") or {}).get("phase")
            active = phase in (RolloutPhase.PROGRESSING.value, RolloutPhase.PAUSED.value)
            first = (  # an earlier one that has not started (also Stalled on a conflict)
                _unstarted(other.get("status") or {})
                and _created(meta) < mine
                and not meta.get("deletionTimestamp")
            )
            if active or first:
                stalled = phase == RolloutPhase.DEGRADED.value  # on a conflict, not started
                state = "waiting to start" if stalled else phase or "starting"
                if first and (other.get("spec") or {}).get("paused"):
                    state = "held back by spec.paused before it started"
                raise StalledError(
                    f"Rollout {meta.get('name')} is {state} on XynergyService "
                    f"{target}: this Rollout starts once it has ended (one rollout of a target "
                    "at a time)",
                    reason=CONFLICT,
                )
            if (finishing := self._finishing(other)) is None:
                continue
            if starting and _unstarted(own) and _created(meta) < mine:
                if (other.get("status") or {}).get("scaleDownAt") and not by_hand:
                    finishing = (
                        "it ends its blue-green keep window early for this newer Rollout (the "
                        "target is patched to the promoted revision; the old revision is no "
                        "longer kept for a fast rollback)"
                    )
                held = held or (str(meta.get("name")), finishing)
                continue
            raise StalledError(
                f"Rollout {meta.get('name')} is Promoted on XynergyService {target} but "
                f"{finishing}: this Rollout starts once the target runs the promoted "
                "revision (one rollout of a target at a time)",
                reason=CONFLICT,
            )
        if held is None:
            return None
        return self._wait_for_promotion(rollout, *held, waited=waited, now=now)

    def _wait_for_promotion(
        self,
        rollout: Rollout,
        name: str,
        finishing: str,
        *,
        waited: dt.datetime | None,
        now: dt.datetime | None,
    ) -> Waiting:
        """How a Rollout not started waits for Rollout `name`'s promotion to finish
        (`_refuse_overlap`): held by a person (spec.paused, spec.abort) with no clock and no
        poll; otherwise Pending, polled, until its deadline from `waited` (`_give_up_waiting`)."""
        target = rollout.spec.target_ref.name
        if rollout.spec.paused or rollout.spec.abort:
            # a person holds it: no clock, no poll (it would not start when the target
            # settles); lifting spec.paused or spec.abort is a spec change, converged at once
            field = "spec.paused" if rollout.spec.paused else "spec.abort"
            return Waiting(
                f"held back by {field} before its delivery started: it deploys nothing and "
                f"ends no keep window while Rollout {name}, Promoted on XynergyService "
                f"{target}, finishes its promotion ({finishing}); once {field} is lifted it "
                "starts after that promotion has finished (one rollout of a target at a time)",
                reason=SPEC_PAUSED if rollout.spec.paused else "Aborted",
                requeue=Requeue.RESYNC,
            )
        _give_up_waiting(rollout, name, finishing, since=waited, now=now)
        return Waiting(
            f"{_WAITING_FOR}{name}, Promoted on XynergyService {target}, to finish its "
            f"promotion: {finishing}; this Rollout starts once the target runs the promoted "
            "revision and is ready (one rollout of a target at a time)",
            reason=CONFLICT,
            after=self.settings.poll_seconds,
        )

    def _wait_began(self, rollout: Rollout) -> dt.datetime | None:
        """When a waiting Rollout stored without status.waitingSince began to wait: a CRD
        older than this operator (helm upgrade leaves CRDs as they are) prunes the field at
        every write, so the wait would never time out. A Rollout that was Pending, Reconciling
        `RolloutConflict` already (this wait) counts from that condition's
        lastTransitionTime, which the old schema keeps (it moved when the Rollout began to
        reconcile: a wait that followed another Reconciling reason counts from before it).
        Warned once per process. None otherwise: the wait begins now."""
        status = rollout.status
        if status is None or status.phase != RolloutPhase.PENDING:
            return None
        cond = get_condition(status.conditions or [], RECONCILING)
        if cond is None or cond.status != "True" or cond.reason != CONFLICT:
            return None
        if not (status.message or "").startswith(_WAITING_FOR):  # another wait (a give-back)
            return None
        if not self._pruned:
            self._pruned = True
            log.warning(
                "rollout %s waits for another Rollout without status.waitingSince: the "
                "Rollout CRD installed is probably older than this operator (it prunes the "
                "field); the wait is counted from its Reconciling condition's "
                "lastTransitionTime. Apply the CRDs of this release (helm does not upgrade "
                "them)",
                rollout.metadata.name,
            )
        return cond.last_transition_time

    async def _wait_for_give_back(
        self, rollout: Rollout, *, work: Converge, starting: bool = False
    ) -> Waiting | None:
        """Cloud Run: another Rollout of the target stalled with its promotion written and
        not finished (Degraded with status.promotingSince: the service's template may name its
        new revision, which may serve) holds the target until its next converge has given the
        template and traffic back to its stable revision (`_hold_ended`, after the core's
        backoff). A delivery started meanwhile would take that half-promoted revision for its
        stable one, and the stalled Rollout, finding it delivering, would leave it the traffic
        with the template never given back. As for a Kubernetes promotion still finishing
        (`_refuse_overlap`): a Rollout that has not started (`starting`, `_unstarted`) waits,
        Pending and Reconciling `RolloutConflict`, checked again every poll interval; any
        other (a `retry`, a spec edit of one delivering) is Stalled `RolloutConflict`,
        retried with the core's backoff. `work`: the converge's, whose sibling list
        (`_others`, listed by `_refuse_overlap` before) is read, not listed again."""
        target = rollout.spec.target_ref.name
        own = rollout.status.model_dump(by_alias=True, mode="json") if rollout.status else {}
        siblings = await self._others(work)
        for other in siblings:
            status = other.get("status") or {}
            if (
                status.get("phase") != RolloutPhase.DEGRADED.value
                or not status.get("promotingSince")
                or status.get("trafficRouting")  # Kubernetes: `_finishing`
            ):
                continue
            name = (other.get("metadata") or {}).get("name")
            why = (
                f"Rollout {name} stalled on XynergyService {target} with its promotion of "
                f"revision {status.get('canaryRevision')} written and not finished; its next "
                "converge gives the service's template and traffic back to its stable revision "
                f"{status.get('stableRevision')}, and this Rollout starts after that (one "
                "rollout of a target at a time)"
            )
            if starting and _unstarted(own):
                return Waiting(f"waiting: {why}", reason=CONFLICT, after=self.settings.poll_seconds)
            raise StalledError(why, reason=CONFLICT)
        return None

    def _finishing(self, other: Mapping[str, Any]) -> str | None:
        """Why another Rollout's Kubernetes promotion still holds the target (None when it
        does not): within its blue-green keep window the target is not patched yet and its
        new revision serves everything; after it, the new revision serves until the target
        runs the promoted spec and is ready. A Rollout started meanwhile would take the old
        revision for its stable one and split the traffic against the promoted revision."""
        status, meta = other.get("status") or {}, other.get("metadata") or {}
        if status.get("phase") != RolloutPhase.PROMOTED.value or not status.get("trafficRouting"):
            return None  # Cloud Run patches the target at promotion: nothing held
        if meta.get("deletionTimestamp") and FINALIZER not in (meta.get("finalizers") or []):
            return None  # deleted and let go by this operator (kept only by another finalizer)
        if status.get("scaleDownAt"):
            return (
                f"keeps the old revision for a fast rollback until {status['scaleDownAt']} "
                "(spec.strategy.blueGreen.scaleDownDelaySeconds), its new revision serving "
                "everything until then"
            )
        if status.get("traffic") or str(status.get("message") or "").endswith(self._SETTLING):
            return "its new revision serves everything until the target runs it and is ready"
        if handing_over(status):  # the target ready already: its own delivery starts next
            return (
                "it hands over to an edit of its own spec, whose delivery starts from the "
                "promoted revision once the target runs it and is ready"
            )
        if holds_promotion(status):  # its deletion held (Reconciling Deleting) until then
            return (
                "it is being deleted and finishes its promotion first: its new revision "
                "serves until the target runs it and is ready"
            )
        return None

    # ---- acting ------------------------------------------------------------------------------

    async def _act(self, work: Converge, action: str | None) -> None:
        phase = work.status.phase
        if action is not None:
            work.status.handled_action = _annotation(work.rollout)
        if action == "undo" and phase == RolloutPhase.PROMOTED:
            runs = _moved_on(work)
            if runs is not None:  # superseded: the target is another Rollout's now
                return await self._refuse_undo(work, runs)
        kept = _kept(work.status, work.now)
        # the spec edited back to the kept revision within the window (`_hand_over`): an undo
        undo = action == "undo" or work.reverted is not None
        back = kept is not None and (
            action in ("undo", "abort") or work.rollout.spec.abort or work.reverted is not None
        )
        going_back = back or (action == "undo" and phase == RolloutPhase.PROMOTED)
        if (
            going_back
            and _moved_on(work) is None
            and (active := await self._active_sibling(work)) is not None
        ):  # the target's traffic is the other Rollout's now
            return await self._refuse_going_back(work, active, undo=undo)
        if back and kept is not None:
            if _moved_on(work) is None:
                return await self._switch_back(work, kept, undo=undo)
        elif work.handover and action == "abort":
            return await self._refuse_abort_in_handover(work)
        elif action == "undo" and phase == RolloutPhase.PROMOTED:
            return await self._undo(work)
        if action == "retry" and phase in _ENDED:
            await self._refuse_overlap(work.rollout, work=work)
            await self._wait_for_give_back(work.rollout, work=work)
            stable, previous = work.status.stable_revision or "", work.status.canary_revision
            if _moved_on(work) is not None:  # superseded: from what the target serves now
                stable = (await work.backend.serving(work.target)).revision or stable
            elif stable and await _promotion_written(work.backend, work.target, work.status):
                # stalled mid-promotion (the template names the new revision): given back
                # first, as `_give_back_pending` does, or the target's own controller, whose
                # spec was not patched, would deploy a revision of its own over it
                await work.backend.restore(
                    work.target,
                    kept=stable,
                    image=work.status.stable_image,
                    template=work.status.stable_template,
                )
            # the revision the target with this Rollout's overrides makes now
            work.status = _fresh(work.rollout, stable, work.name, work.now)
            work.rollout.status = work.status
            work.status.canary_image = work.canary.spec.image
            work.status.stable_image = work.target.spec.image
            work.status.stable_template = spec_template(work.target)
            if previous and previous != work.name:
                await work.backend.retire(keep=work.name)
            work.status.handled_action = _annotation(work.rollout)
            work.base = work.status.model_copy(deep=True)
            work.reason = "Retried"
            phase = work.status.phase
        if phase not in _ACTIVE:
            return await self._hold_ended(work)
        if work.rollout.spec.abort or action == "abort":
            return await self._rollback(
                work, RolloutPhase.ABORTED, "Aborted", "aborted by a person"
            )
        if work.status.promoting_since is not None:  # written, not carried out yet: finish it
            if work.promoted:  # tried already in this converge (`_begin`): its outcome stands
                return None
            return await self._finish(work, "its promotion carried out")
        if action == "promote-full":
            return await self._finish(work, "promoted by hand (all steps skipped)")
        await self._advance(work, promote=action == "promote")

    async def _advance(self, work: Converge, *, promote: bool) -> None:
        status, rollout = work.status, work.rollout
        strategy = strategy_of(rollout)
        tag = PREVIEW_TAG if strategy.preview(rollout) else CANARY_TAG
        stable, name = status.stable_revision or "", status.canary_revision or ""
        state = await work.backend.ensure_canary(
            work.target, work.canary, name=name, stable=stable, tag=tag
        )
        if state.failed:
            return await self._rollback(
                work,
                RolloutPhase.DEGRADED,
                "RevisionFailed",
                f"revision {name} failed: {state.failed}",
            )
        if not state.ready:
            if status.canary_ready_at is not None or (status.canary_weight or 0) > 0:
                status.canary_unready_since = status.canary_unready_since or work.now
            return await self._await_ready(work, name, interrupted=state.interrupted)
        status.canary_unready_since = None
        if status.canary_ready_at is None:  # first seen ready: a slow start is no step time
            status.canary_ready_at = work.now
            if not status.current_step_index and not status.canary_weight:
                status.step_started_at = work.now
        if rollout.spec.paused and (
            status.phase != RolloutPhase.PAUSED or status.pause_reason is None
        ):
            status.pause_reason = SPEC_PAUSED  # a pause of the strategy's own stays its own
        held = status.phase == RolloutPhase.PAUSED and status.pause_reason != SPEC_PAUSED
        if rollout.spec.paused or (held and not promote):
            work.reason = "Paused"
            await self._route(work, _split(status, tag))
            work.status.phase = RolloutPhase.PAUSED
            if rollout.spec.paused:
                work.status.message = "paused by spec.paused"
            return None
        if not await self._gate(work, VerificationStage.PRE_TRAFFIC, tag):
            return None
        ctx = StepContext(
            rollout,
            work.now,
            lambda req: self._analyze(work, req),
            promote=promote,
            replicas=work.target.spec.sizing().replicas,
            dwell=self.settings.rolling_step_seconds,
        )
        move = await strategy.advance(_progress(status, work.now), ctx)
        await self._apply(work, move, tag)

    async def _await_ready(self, work: Converge, name: str, *, interrupted: str | None) -> None:
        """Wait for the new revision (up to `progressDeadlineSeconds`); one an internal error
        interrupted is deployed again by the backend's next `ensure_canary`, after a backoff."""
        status = work.status
        since = status.canary_unready_since or status.step_started_at or work.now
        waited = (work.now - since).total_seconds()
        deadline = work.rollout.spec.progress_deadline_seconds
        weight = status.canary_weight or 0
        if (status.current_step_index == 0 or weight > 0) and waited > deadline:
            if status.canary_unready_since is not None:
                message = (
                    f"revision {name} unready since {_stamp(since)} ({waited:.0f}s, over "
                    f"spec.progressDeadlineSeconds {deadline}) with {weight}% of the traffic"
                )
            else:
                message = (
                    f"revision {name} not ready after {deadline}s (spec.progressDeadlineSeconds)"
                )
            if interrupted:
                message += f"; its last rollout was interrupted: {interrupted}"
            return await self._rollback(
                work, RolloutPhase.DEGRADED, "ProgressDeadlineExceeded", message
            )
        if interrupted:
            work.status.message = (
                f"the rollout of revision {name} was interrupted ({interrupted}); "
                "deploying it again"
            )
            work.reason, work.interrupted = "RevisionInterrupted", True
            return None
        work.status.message = f"waiting for revision {name} to become ready"
        if weight > 0 and status.canary_unready_since is not None:
            work.status.message = (
                f"revision {name} unready since {_stamp(since)} with {weight}% of the traffic; "
                f"rolled back if still unready {deadline}s after (spec.progressDeadlineSeconds)"
            )
        work.reason = "RevisionNotReady"
        work.wait = self.settings.poll_seconds
        return None

    async def _apply(self, work: Converge, move: Move, tag: str) -> None:
        if move.run is not None:
            self._record(work, move)
        work.status = _with_progress(work.status, move.progress)
        work.status.message = move.message
        if move.kind is MoveKind.PROMOTE:
            if not await self._gate(work, VerificationStage.PRE_PROMOTION, tag):
                return None
            return await self._finish(work, move.message)
        if move.kind is MoveKind.ROLLBACK:
            return await self._rollback(work, RolloutPhase.ROLLED_BACK, move.reason, move.message)
        await self._route(work, _split(work.status, tag))
        if move.kind is MoveKind.PAUSE:
            work.status.phase = RolloutPhase.PAUSED
            work.reason = move.reason or "Paused"
            work.status.pause_reason = work.reason
        else:
            work.status.pause_reason = None
            work.status.phase = RolloutPhase.PROGRESSING
            work.reason = "Progressing"
            work.wait = move.wait
        return None

    def _record(self, work: Converge, move: Move) -> None:
        assert move.run is not None
        result = move.run.result
        summary = AnalysisRunSummary(
            step_index=work.status.current_step_index,
            time=work.now,
            verdict=result.verdict,
            score=round(result.score, 1),
            evidence=[line[:512] for line in result.evidence][:20],
            look=move.run.request.look,
            canary_weight=move.run.weight,
        )
        work.status.analysis_runs = record_run(work.status, summary)
        work.ran = True

    async def _gate(self, work: Converge, stage: VerificationStage, tag: str) -> bool:
        """Whether the rollout may go on past `stage`: no verification is due there, or it
        passed (now, or earlier for this revision). A failure rolls back like a failed
        analysis; a revision without a known URL yet is waited for."""
        spec, status = work.rollout.spec.verification, work.status
        if spec is None or not _due(spec, status, stage) or work.verified:
            return True
        if not (self.settings.verification_url or status.canary_url):
            await self._route(work, _split(status, tag))  # the backend names its URL
        url = self.settings.verification_url or status.canary_url
        name = status.canary_revision or ""
        if not url:
            status.message = f"waiting for a URL of revision {name} to verify it"
            work.reason, work.wait = "AwaitingVerification", self.settings.poll_seconds
            return False
        run = await self.verifier(url, spec, stage, name)
        self._record_verification(work, run)
        if run.passed:
            work.verified = True
            return True
        lines = "; ".join(evidence(run))
        message = f"{stage.value} verification of {name} failed: {lines}"
        await self._rollback(work, RolloutPhase.ROLLED_BACK, "VerificationFailed", message)
        return False

    def _record_verification(self, work: Converge, run: VerificationRun) -> None:
        status = work.status
        kept = [v for v in status.verification or [] if v.stage != run.stage]
        status.verification = [*kept, run]
        summary = AnalysisRunSummary(
            step_index=status.current_step_index,
            time=work.now,
            verdict=Verdict.SUCCESSFUL if run.passed else Verdict.FAILED,
            evidence=evidence(run)[:20],
            canary_weight=status.canary_weight,
            stage=run.stage,
        )
        status.analysis_runs = record_run(status, summary)
        work.ran = True

    async def _analyze(self, work: Converge, request: AnalysisRequest) -> RunResult:
        analysis = work.rollout.spec.analysis
        assert analysis is not None
        samples = await collect(
            analysis,
            lambda metric: self.metrics(metric, work.target),
            stable=work.status.stable_revision or "",
            canary=work.status.canary_revision or "",
            start=request.start,
            end=request.end,
            step=self.settings.query_step_seconds,
        )
        return judge_run(
            analysis,
            samples,
            look=request.look,
            looks=request.looks,
            step=self.settings.query_step_seconds,
        )

    async def _route(
        self, work: Converge, split: tuple[tuple[str | None, int, str | None], ...]
    ) -> None:
        self._routed(work, await work.backend.route(work.target, split))

    def _routed(self, work: Converge, routed: Routed) -> None:
        url = routed.urls.get(CANARY_TAG) or routed.urls.get(PREVIEW_TAG)
        if url:
            work.status.canary_url = url
        if routed.traffic is not None:
            work.status.traffic = list(routed.traffic)
        message = work.status.message or ""
        if not routed.settled and not message.endswith(self._SETTLING):
            work.status.message = message + self._SETTLING
        if not routed.settled:
            work.wait = min(work.wait or self.settings.poll_seconds, self.settings.poll_seconds)

    _SETTLING = "; waiting for the target to run the new revision"

    async def _finish(self, work: Converge, message: str) -> None:
        """All traffic to the new revision; the target's spec becomes it; history kept."""
        status, rollout = work.status, work.rollout
        keep = None
        blue_green = rollout.spec.strategy.blue_green
        if blue_green is not None and blue_green.scale_down_delay_seconds > 0:
            keep = status.stable_revision
        canary = status.canary_revision or ""
        # on record before the write: a promotion carried out whose converge then fails (the
        # target patch, an operator restart) is finished by the next one, or given back
        status.promoting_since = status.promoting_since or work.now
        work.promoted = True
        try:
            routed = await work.backend.promote(work.target, work.canary, name=canary, keep=keep)
        except TransientError as exc:
            if exc.reason != PROMOTION_FAILED:
                raise
            return await self._not_promoted(work, exc.message, failed=True)
        if routed.pending is not None:
            return await self._not_promoted(work, routed.pending, failed=False)
        if keep is not None and blue_green is not None:
            status.scale_down_at = work.now + dt.timedelta(
                seconds=blue_green.scale_down_delay_seconds
            )
        if keep is None or not work.backend.defers_target_patch:
            await self._patch_target(work, promotion_patch(work.canary))
        status.promoting_since = None  # carried out, and the target patched
        if status.stable_revision and status.stable_revision != canary:
            record = RevisionRecord(
                revision=status.stable_revision,
                image=status.stable_image,
                template=status.stable_template,
                time=work.now,
            )
            # a keep window keeps its old revision on record while it lasts, whatever
            # spec.rollbackWindow (`_window_over` trims the history to it after)
            window = max(rollout.spec.rollback_window, int(keep is not None))
            status.history = [record, *(status.history or [])][:window]
        status.stable_revision, status.stable_image = canary, work.canary.spec.image
        status.stable_template = spec_template(work.canary)
        status.phase = RolloutPhase.PROMOTED
        status.canary_weight = 100
        status.message = f"revision {canary} promoted: {message}"
        work.reason = "Promoted"
        if keep is not None:
            work.wait = float(blue_green.scale_down_delay_seconds) if blue_green else None
        self._routed(work, routed)

    async def _not_promoted(self, work: Converge, why: str, *, failed: bool) -> None:
        """A promotion written but not carried out (its operation still runs, or `failed`):
        the Rollout stays Progressing at the weight served, its target not patched, and each
        converge finishes it (`status.promotingSince`) until spec.progressDeadlineSeconds
        after the first try; then it is given up: Degraded, all traffic back on stable."""
        status = work.status
        since = status.promoting_since or work.now
        deadline = work.rollout.spec.progress_deadline_seconds
        if (work.now - since).total_seconds() >= deadline:
            return await self._rollback(
                work,
                RolloutPhase.DEGRADED,
                PROMOTION_FAILED,
                f"promotion given up {deadline}s (spec.progressDeadlineSeconds) after its first "
                f"try at {_stamp(since)}: {why}",
            )
        status.promoting_since = since
        status.phase, status.pause_reason = RolloutPhase.PROGRESSING, None
        until = _stamp(since + dt.timedelta(seconds=deadline))
        if failed:
            status.message = (
                f"{why}; the promotion is tried again after a backoff, and given up at {until} "
                "(spec.progressDeadlineSeconds)"
            )
            # tried again at the next converge: a person's promote is not handled yet
            status.handled_action = work.handled_before
            work.reason, work.interrupted = PROMOTION_FAILED, True
            return None
        status.message = (
            f"promoting revision {status.canary_revision}: {why}; read again shortly, given up "
            f"at {until} (spec.progressDeadlineSeconds)"
        )
        work.reason, work.wait = "Promoting", self.settings.poll_seconds
        return None

    async def _rollback(
        self, work: Converge, phase: RolloutPhase, reason: str, message: str
    ) -> None:
        """All traffic back to the stable revision (and, when a promotion was written but not
        carried out, the template too: `restore`, so the target's own controller finds the
        service as it left it)."""
        status = work.status
        stable = status.stable_revision or ""
        patched = await self._to_stable(work)
        work.status.phase = phase
        work.status.canary_weight = 0
        work.status.message = f"{message}; all traffic back on {stable}"
        if patched:
            work.status.message += _patched_back(work.rollout, status)
        work.reason = reason

    async def _to_stable(self, work: Converge) -> bool:
        """All traffic on the stable revision; when a promotion was written (maybe carried
        out: status.promotingSince, or the service's template names the new revision) the
        template too (`restore`), so the target's own controller, whose spec was not patched,
        finds the service as it left it and deploys no revision of its own, and the target
        is patched back if it holds the promotion's patch (`_patch_back`; only then: without
        a promotion written, a target on the new revision's spec is a person's edit).
        Whether the target was patched back."""
        status = work.status
        stable = status.stable_revision or ""
        # before the restore, which gives the template back: afterwards it no longer tells
        written = bool(stable) and await _promotion_written(work.backend, work.target, status)
        patched = False
        if written:
            # the target first: a failed patch moves nothing (the rollback is asked again),
            # where a restore done first would leave all traffic on the stable revision, the
            # status as stored (the weight of the split), and the target's controller free
            # to deploy the patched spec as a revision of its own
            patched = await self._patch_back(work)
            self._routed(
                work,
                await work.backend.restore(
                    work.target,
                    kept=stable,
                    image=status.stable_image,
                    template=status.stable_template,
                ),
            )
        else:
            await self._route(work, ((stable, 100, None),))
        status.promoting_since = None
        return patched

    async def _patch_back(self, work: Converge) -> bool:
        """Cloud Run, a promotion written (`_to_stable`): a target that still holds this
        Rollout's promotion patch (its spec the new revision's, whose name the target with
        this Rollout's overrides still makes) while the Rollout goes back to its stable
        revision is patched back to the stable spec the status recorded (status.stableImage,
        stableTemplate), so that it names what Cloud Run serves and its own controller deploys
        nothing over the rollback. A promotion carried out whose converge died after the
        target patch, before its status write, leaves this. A target edited by a person since
        (another image, env, args or resources, or any field that changes the revision) is
        left as it is. Whether it was patched."""
        status, target = work.status, work.target
        if (
            work.backend.routing is not None  # Kubernetes: not this path
            or status.phase == RolloutPhase.PROMOTED
            or not status.stable_image
            or not status.canary_revision
            or not settled_on(target, work.canary)
            or _runs(target, status.stable_image, status.stable_template)
            or work.backend.revision_name(work.canary) != status.canary_revision
        ):
            return False
        log.info(
            "rollout %s: XynergyService %s still holds the promotion patch of %s; patching it "
            "back to the stable revision %s",
            work.rollout.metadata.name,
            work.rollout.spec.target_ref.name,
            status.canary_revision,
            status.stable_revision,
        )
        await self._patch_target(work, restore_patch(status.stable_image, status.stable_template))
        work.target = restored(target, status.stable_image, status.stable_template)
        return True

    async def _hold_ended(self, work: Converge) -> None:
        """An ended rollout keeps its traffic (restored if someone moved it) while its target
        still runs the revision it left it on; a blue-green promotion releases the old
        revision once its delay is over. A target that moved on (a later release, an edit)
        supersedes it: it no longer touches traffic or the target (on Cloud Run, the traffic
        it pinned by revision name goes to LATEST once first: `_superseded`)."""
        status = work.status
        runs = _moved_on(work)
        if runs is not None:
            return await self._superseded(work, runs)
        if _LATEST_WAITS[2:] in (status.message or ""):  # the target came back: no wait
            status.message = _without_latest_wait(status.message) or None
        if (status.message or "").startswith(SUPERSEDED):  # the target came back to it
            left = status.canary_revision if status.phase == RolloutPhase.PROMOTED else None
            status.message = f"the target runs revision {left or status.stable_revision} again"
        if (active := await self._active_sibling(work)) is not None:
            # the target's traffic is the other Rollout's to move now. Cloud Run: holding ours
            # (LATEST 100 %, or the stable pinned) would undo its canary split or preview.
            # Kubernetes: our revision at full size with 100 % in status.traffic (the gateway
            # follows one Rollout per target) or in the target's Service (replica routing),
            # and a keep window's target patch, would undo its split or move its stable
            log.info(
                "rollout %s: %s is delivering to its target; its traffic is left to it",
                work.rollout.metadata.name,
                active,
            )
            await self._leave_to(work, active)
            work.reason = _ended_reason(work)
            return None
        if _LEFT_TO in (status.message or ""):  # the other one has ended: ours again
            status.message = (status.message or "").partition(_LEFT_TO)[0]
        if status.phase == RolloutPhase.PROMOTED:
            keep = status.history[0].revision if status.scale_down_at and status.history else None
            if keep and work.now >= (status.scale_down_at or work.now):
                if work.backend.defers_target_patch:  # the old revision goes only now
                    # patched first: a failed patch must not leave a status without the
                    # window whose target still runs the kept revision (`_moved_on`)
                    await self._patch_target(work, promotion_patch(work.canary))
                keep = None
                _window_over(work)
            elif keep and work.backend.defers_target_patch and work.handover:
                await self._end_keep_window(work, keep)
                keep = None
            elif keep and work.backend.defers_target_patch and (newer := await self._newer(work)):
                await self._end_keep_window(work, keep, newer)
                keep = None
            elif keep and status.scale_down_at:
                work.wait = (status.scale_down_at - work.now).total_seconds()
            name = status.canary_revision or ""
            if work.name != name and not (name and work.backend.defers_target_patch):
                # Cloud Run: the target runs its image and template, changed otherwise (its
                # own revision serves): nothing of this revision to finish
                work.reason = _ended_reason(work)
                return None
            # on Kubernetes the recorded revision is this Rollout's Deployment, which may
            # still serve: its promotion finishes under the recorded name even when the name
            # the spec gives now differs (the target edited outside image, env, args and
            # resources; an operator upgrade that changed the Pod spec it builds)
            if work.handover and await self._handed_over(work):
                # the handover's exit: this status write moves the gateway off the promoted
                # revision first; its Deployment and Service are removed as the new delivery
                # starts, in the next converge (`_hand_over`), once nothing routes to them
                routed = Routed(0, {}, () if status.traffic else None)
            else:
                routed = await work.backend.promote(
                    work.target, work.canary, name=name, keep=keep, confirmed=True
                )
            if routed.settled and status.message and status.message.endswith(self._SETTLING):
                status.message = status.message[: -len(self._SETTLING)]
            self._routed(work, routed)
        elif status.phase in _ENDED and status.stable_revision:
            await self._to_stable(work)  # stalled while promoting: the template too
            if status.canary_weight:  # stalled mid-way on Cloud Run (_failed): now it is back
                status.canary_weight = 0
                status.message = (status.message or "").replace(
                    _GOES_BACK, "; all traffic back on "
                )
        work.reason = _ended_reason(work)
        if work.handover:  # the new delivery starts once the promotion is over: soon
            work.reason = HANDING_OVER
            work.wait = min(work.wait or self.settings.poll_seconds, self.settings.poll_seconds)

    async def _handed_over(self, work: Converge) -> bool:
        """A handover (`_hand_over`) whose target runs the promoted revision and is ready."""
        if not settled_on(work.target, work.canary):
            return False
        return (await work.backend.serving(work.target)).ready

    async def _newer(self, work: Converge) -> str | None:
        """The Rollout of the target that starts next, when it is a newer one waiting for
        this promotion: of the Rollouts that have not started yet (`_unstarted`) and are not
        being deleted, the oldest (`_refuse_overlap` starts them in that order), when it was
        created after this one and no person holds it back (spec.paused or spec.abort: it
        would not start, and the younger ones wait for it). None otherwise: a keep window is
        not ended for a Rollout that cannot start."""
        mine = _created(work.rollout.metadata.model_dump(by_alias=True))
        waiting = [
            other
            for other in await self._others(work)
            if not (other.get("metadata") or {}).get("deletionTimestamp")
            and _unstarted(other.get("status") or {})
        ]
        if not waiting:
            return None
        nxt = min(waiting, key=lambda other: _created(other.get("metadata") or {}))
        meta, spec = nxt.get("metadata") or {}, nxt.get("spec") or {}
        if _created(meta) < mine or spec.get("paused") or spec.get("abort"):
            return None
        return str(meta.get("name"))

    async def _end_keep_window(self, work: Converge, kept: str, newer: str | None = None) -> None:
        """A newer Rollout of the target waits for this Kubernetes blue-green promotion's keep
        window (its target is not patched until the window ends, so the next release would
        start from the old revision), or (`newer` None) this Rollout's own spec was edited
        in it (`_hand_over`: the same for its own next delivery): the window ends now, as
        Argo Rollouts proceeds at once with an update made during scaleDownDelaySeconds. The
        target is patched to the promoted revision (as at scaleDownAt; `work.canary` is it),
        and the old revision's fast rollback is given up: the status message and a Normal
        Event `KeepWindowEnded` say so. The promotion then finishes as after any window
        (`promote`: the new revision serves until the target runs it and is ready), and the
        next delivery starts after it."""
        status = work.status
        until = _stamp(status.scale_down_at) if status.scale_down_at else "its end"
        await self._patch_target(work, promotion_patch(work.canary))
        _window_over(work)  # only once patched (a failed patch keeps the window)
        target = work.rollout.spec.target_ref.name
        why = (
            f"Rollout {newer}, the next release of XynergyService {target}"
            if newer is not None
            else f"an edit of this Rollout's own spec (image {work.rollout.spec.image}), its "
            f"next delivery to XynergyService {target}, which starts once the target runs the "
            "promoted revision and is ready"
        )
        ended = (
            f"keep window ended early (it lasted until {until}) for {why}: the target is "
            f"patched to the promoted revision {status.canary_revision} and the old revision "
            f"{kept} is no longer kept for a fast rollback"
        )
        message = status.message or ""
        if message.endswith(self._SETTLING):
            message = message[: -len(self._SETTLING)]
        status.message = f"{message}; {ended}"
        work.window_ended = ended
        log.info("rollout %s: %s", work.rollout.metadata.name, ended)

    async def _leave_to(self, work: Converge, active: str) -> None:
        """Another Rollout delivering to the target: ours moves no traffic and does not patch
        the target (on Kubernetes a keep window's end waits for the other one to end); on
        Kubernetes its own revision gets none (status.traffic emptied; the new revision out
        of the target's Service, a promoted one kept at full size so that it can serve again
        at once when the other one ends, any other scaled to zero; removed once the target
        runs it: its promotion is over). The status says so until the other one has ended."""
        status = work.status
        promoted = status.phase == RolloutPhase.PROMOTED
        if not work.backend.defers_target_patch:
            pass  # Cloud Run: the split is the other Rollout's; nothing of ours to take away
        elif promoted and not status.scale_down_at and settled_on(work.target, work.canary):
            await work.backend.retire(keep=None)
            status.traffic = []
        elif promoted:  # full size (as a preview), no traffic
            await work.backend.route(work.target, ((status.canary_revision, 0, PREVIEW_TAG),))
            status.traffic = []
            # come back to finish (or retire) it once the other one has ended, window or not
            work.wait = self.settings.poll_seconds * 15
        else:
            await self._route(work, ())
        message = (status.message or "").partition(_LEFT_TO)[0]
        if message.endswith(self._SETTLING):
            message = message[: -len(self._SETTLING)]
        status.message = (
            f"{message}{_LEFT_TO}{active}, delivering to XynergyService "
            f"{work.rollout.spec.target_ref.name}"
        )
        if promoted and status.scale_down_at:  # its promotion finishes once the other ended
            work.wait = self.settings.poll_seconds * 15

    async def _superseded(self, work: Converge, runs: str) -> None:
        """Say so, once; stop the gateway following this Rollout (no status.traffic) and
        remove what is left of its new revision (it is no longer promoted to). On Cloud Run
        the traffic of an ended Rollout that was not promoted (a split left mid-way, or the
        stable revision pinned by a rollback or abort) is pinned by revision name, and the
        target's own controller does not manage Cloud Run traffic: it is routed to LATEST
        (100 %, `_to_latest`) once, when the Rollout is found superseded, so the target's
        new revision serves; only after that write the weight and promotingSince go. The
        superseded marker (which ends `pinned`, so the finalizer goes) is written only once
        that traffic went to LATEST or another Rollout delivering (Progressing, Paused) owns
        it: while LATEST waits for one that may be starting or that still holds the service
        (`_latest_waits_for`), nothing else changes, the message says so, and the write is
        tried again at the poll interval."""
        status = work.status
        left = status.canary_revision if status.phase == RolloutPhase.PROMOTED else None
        left = left or status.stable_revision
        moved_on = (
            f"XynergyService {work.rollout.spec.target_ref.name} now runs {runs}, "
            f"not revision {left} this Rollout left it on"
        )
        message = f"{SUPERSEDED}{moved_on}; it no longer moves traffic or patches the target"
        if not (status.message or "").startswith(SUPERSEDED):
            # a refused write (raised): the status as it was, retried after the backoff
            if not await self._to_latest(work) and await self._active_sibling(work) is None:
                waits_for = await self._latest_waits_for(work)
                if waits_for is not None:
                    # after what the message said (a rollback's or a stall's reason), removed
                    # once superseded or the target runs what it left again (`_hold_ended`)
                    said = _without_latest_wait(status.message)
                    status.message = (
                        f"{said}{_LATEST_WAITS if said else _LATEST_WAITS[2:]}{moved_on}; its "
                        f"traffic, pinned to revision {status.stable_revision}, goes to LATEST "
                        f"(the target's own revision) once Rollout {waits_for} has started or "
                        "let go of the service"
                    )
                    work.wait = self.settings.poll_seconds
                    work.reason = "Superseded"
                    return
            await work.backend.retire(keep=None)
            work.superseded = True
        status.message = message
        # a Rollout stalled mid-way (a split, or a promotion written) no longer holds either:
        # its traffic went to LATEST above, so the target's own revision serves and its
        # controller has the service. Without this the finalizer stayed and a deletion gave
        # the old template and traffic back over the target's edit
        status.promoting_since = None
        if status.phase != RolloutPhase.PROMOTED and status.canary_weight:
            status.canary_weight = 0
        _window_over(work)
        if status.traffic:
            status.traffic = []
        work.reason = "Superseded"

    async def _to_latest(self, work: Converge) -> bool:
        """Cloud Run: an ended Rollout that was not promoted, whose target moved on without it
        (or that is deleted), left its traffic pinned by revision name (its split, or its
        stable revision at 100 % after a rollback): all of it to LATEST (the service's latest
        ready revision, 100 %) so that the target's own revision serves, unless another
        Rollout of the target is delivering (its split is its own) or may be starting
        (`_starting_sibling`: its first write, the new revision with the `canary` or
        `preview` tag, may be in before its status says Progressing). True when routed (or
        nothing was pinned)."""
        status = work.status
        if work.backend.routing is not None or status.phase == RolloutPhase.PROMOTED:
            return True  # Kubernetes: the gateway; promoted: LATEST 100 % already
        if not status.stable_revision:
            return False
        other = await self._active_sibling(work) or await self._latest_waits_for(work)
        if other is not None:
            log.info(
                "rollout %s: superseded while %s delivers; its traffic is left to it",
                work.rollout.metadata.name,
                other,
            )
            return False
        log.info(
            "rollout %s: superseded; the traffic it pinned goes to LATEST 100 %%",
            work.rollout.metadata.name,
        )
        await work.backend.route(work.target, ((None, 100, None),))
        return True

    async def _latest_waits_for(self, work: Converge) -> str | None:
        """Another Rollout of the target whose traffic a LATEST written now would take: one
        that may be starting (`_starting_sibling`) or one stalled mid-way that still holds
        the service (`_holding_sibling`). Never one that waits for this Rollout, so that no
        two Rollouts wait for each other: a Rollout stalled with its promotion written
        (Degraded, promotingSince) is what every Rollout not started yet waits for
        (`_wait_for_give_back`), so it does not wait for them; one that holds the service
        itself (a split, or a promotion written) does not wait for another holding one (each
        would wait for the other; LATEST is the end state of both once the target moved
        on). A holding one waits only for a starting one, which waits for none that holds
        only a split. Whether this Rollout holds is read from its status as stored
        (`work.held`, when a give-back in this converge changed work.status): siblings
        judge it by what is stored."""
        status = work.held or work.status
        holds = status.phase in _ENDED and bool(
            status.canary_weight or status.promoting_since is not None
        )
        gives_back = status.phase == RolloutPhase.DEGRADED and status.promoting_since is not None
        if not gives_back and (starting := await self._starting_sibling(work)) is not None:
            return starting
        return None if holds else await self._holding_sibling(work)

    async def _holding_sibling(self, work: Converge) -> str | None:
        """Another Cloud Run Rollout of the target stalled mid-way (RolledBack, Aborted or
        Degraded with status.canaryWeight above 0 or status.promotingSince set): its next
        converge gives its split, and the template of a promotion written, back to its
        stable revision (as `_wait_for_give_back` waits for); until then the service is its."""
        for other in await self._others(work):
            status = other.get("status") or {}
            if (
                status.get("phase") in {phase.value for phase in _ENDED}
                and not status.get("trafficRouting")
                and (status.get("canaryWeight") or status.get("promotingSince"))
            ):
                return str((other.get("metadata") or {}).get("name"))
        return None

    async def _starting_sibling(self, work: Converge) -> str | None:
        """Another Rollout of the target that has not started (`_unstarted`: no phase,
        Pending) and may start now: not held back by a person (spec.paused, spec.abort), not
        being deleted. Its converge writes the new revision and its tagged split before its
        status is stored, so a LATEST written meanwhile would take its tag away."""
        for other in await self._others(work):
            meta, spec = other.get("metadata") or {}, other.get("spec") or {}
            status = other.get("status") or {}
            if (
                status.get("phase") in (None, RolloutPhase.PENDING.value)
                and _unstarted(status)
                and not spec.get("paused")
                and not spec.get("abort")
                and not meta.get("deletionTimestamp")
            ):
                return str(meta.get("name"))
        return None

    async def _refuse_undo(self, work: Converge, runs: str) -> None:
        """`undo` of a superseded Rollout: going back to its previous revision would patch
        the target and route its traffic away from what a newer Rollout (or an edit) made it
        run. Nothing is moved; the Rollout is superseded as a converge would find it, its
        condition and a Warning Event say why, naming the newer Rollout when one delivered
        what the target runs. The action is marked handled (status.handledAction), as any
        action acted upon."""
        await self._superseded(work, runs)
        target = work.rollout.spec.target_ref.name
        newer = await self._newer_rollout(work)
        by = f", delivered by Rollout {newer}" if newer else ""
        undo = f"kubectl xynergy rollout undo {newer}" if newer else "a new Rollout"
        work.refused = (
            f"undo refused: XynergyService {target} now runs {runs}{by}, not revision "
            f"{work.status.canary_revision} this Rollout promoted; undoing here would switch "
            f"its traffic away from what it serves. Go back with {undo}, or use retry here "
            "to deliver this Rollout's image again"
        )
        # after the superseded message, which a later converge finds as it left it (no second
        # Superseded Event) and states again without this refusal (the Event keeps it)
        work.status.message = f"{work.status.message}; {work.refused}"

    async def _refuse_going_back(self, work: Converge, active: str, *, undo: bool) -> None:
        """`undo` (or a keep window's abort) while another Rollout delivers to the target:
        going back would patch the target (or switch its traffic) under that Rollout, whose
        stable revision is what the target runs now. Nothing moves; the traffic stays the
        other one's (`_hold_ended`); a Warning Event `UndoRefused` (once per request: an
        action is marked handled, spec.abort says it again only when the message lost it)."""
        target, verb = work.rollout.spec.target_ref.name, "undo" if undo else "abort"
        refused = (
            f"{verb} refused: Rollout {active} is delivering to XynergyService {target}, from "
            f"what this Rollout left it on; going back here would patch the target or switch "
            f"its traffic under it. Abort {active} first (its traffic goes back on what the "
            f"target runs), then {verb} here"
        )
        said = refused in (work.status.message or "")
        await self._hold_ended(work)
        work.status.message = (
            f"{(work.status.message or '').partition('; ' + refused)[0]}; {refused}"
        )
        if not said:
            work.refused, work.refused_reason = refused, "UndoRefused" if undo else "AbortRefused"

    async def _active_sibling(self, work: Converge) -> str | None:
        """Another Rollout of the target that is delivering (Progressing, Paused), if any."""
        for other in await self._others(work):
            phase = (other.get("status") or {}).get("phase")
            if phase in (RolloutPhase.PROGRESSING.value, RolloutPhase.PAUSED.value):
                return str((other.get("metadata") or {}).get("name"))
        return None

    async def _newer_rollout(self, work: Converge) -> str | None:
        """The other Rollout of the target that delivered what it runs (its stableImage is
        the target's image; the newest such), if any."""
        found = [
            other
            for other in await self._others(work)
            if (other.get("status") or {}).get("stableImage") == work.target.spec.image
        ]
        if not found:
            return None
        newest = max(found, key=lambda other: _created(other.get("metadata") or {}))
        return str((newest.get("metadata") or {}).get("name"))

    async def _undo(self, work: Converge) -> None:
        """Back to the previous stable revision, at once (it was stable within
        spec.rollbackWindow: no analysis)."""
        status = work.status
        if not status.history:
            raise StalledError(
                "undo: no earlier revision within spec.rollbackWindow", reason="NoHistory"
            )
        previous, rest = status.history[0], status.history[1:]
        # the service's template back to the previous revision too (Cloud Run; by name, no new
        # revision), as a keep window's switch back does: routing by name alone left the
        # template naming the undone revision, which is what LATEST serves (a deletion of the
        # Rollout, `release`, routes LATEST) until the target's own controller converges
        self._routed(
            work,
            await work.backend.restore(
                work.target,
                kept=previous.revision,
                image=previous.image,
                template=previous.template,
            ),
        )
        if previous.image:
            await self._patch_target(work, restore_patch(previous.image, previous.template))
        status.history = rest
        status.stable_revision = previous.revision
        status.stable_image, status.stable_template = previous.image, previous.template
        status.phase = RolloutPhase.ROLLED_BACK
        status.canary_weight = 0
        status.message = f"undone: all traffic back on {previous.revision}"
        work.reason = "Undone"

    async def _refuse_abort_in_handover(self, work: Converge) -> None:
        """An abort (the annotation) while a Promoted Rollout hands over to an edit of its own
        spec (`_hand_over`) after its keep window ended: nothing is in flight to take back
        (the edit's delivery has not started, no revision of it exists), and the old
        revision is no longer kept to switch back to. The handover goes on; the abort is
        marked handled and refused with a Warning Event `AbortRefused` saying how to stop the
        edit (revert it, or spec.abort, which the new delivery honours as it starts: aborted
        at once, all traffic staying on the promoted revision)."""
        await self._hold_ended(work)
        status, rollout = work.status, work.rollout
        work.refused_reason = "AbortRefused"
        work.refused = (
            f"abort refused: this Rollout is handing over to an edit of its own spec (image "
            f"{rollout.spec.image}) that has not started yet; its keep window has ended (the "
            f"target XynergyService {rollout.spec.target_ref.name} is patched to the promoted "
            f"revision {status.canary_revision}), so an abort takes nothing back. The edit is "
            "delivered from the promoted revision once the target runs it and is ready. To "
            "stop it, revert the edit of spec.image/spec.template, or set spec.abort: true "
            "(its delivery is then aborted as it starts, all traffic staying on the promoted "
            "revision)"
        )

    async def _switch_back(self, work: Converge, kept: RevisionRecord, *, undo: bool) -> None:
        """The blue-green fast rollback: within scaleDownDelaySeconds of a promotion, all
        traffic back on the revision it keeps, at once (no new revision, no analysis); the
        target's image back (on a backend that patched it at promotion). Also for an edit of
        the Rollout's own spec back to the kept revision in the window (`work.reverted`): the
        edit is then on record as delivered (status.deliveredSpec), so no new delivery starts
        for it, and the status message (the `SwitchedBack` Event's) says why."""
        status = work.status
        routed = await work.backend.restore(
            work.target, kept=kept.revision, image=kept.image, template=kept.template
        )
        if kept.image and not work.backend.defers_target_patch:
            await self._patch_target(work, restore_patch(kept.image, kept.template))
        self._routed(work, routed)
        status.history = (status.history or [])[1:]
        status.stable_revision, status.stable_image = kept.revision, kept.image
        status.stable_template = kept.template
        status.scale_down_at = None
        status.phase = RolloutPhase.ROLLED_BACK if undo else RolloutPhase.ABORTED
        status.canary_weight = 0
        status.message = (
            f"{'undone' if undo else 'aborted'} within the blue-green keep window: all traffic "
            f"switched back to {kept.revision} at once ({status.canary_revision} released)"
        )
        if work.reverted is not None:
            status.delivered_spec = _spec_digest(work.rollout)
            status.message = (
                f"{status.message}: the Rollout's spec was edited back to that revision (image "
                f"{work.rollout.spec.image}) within the window; no new delivery starts for it"
            )
        work.reason = "SwitchedBack"

    async def _patch_target(self, work: Converge, patch: dict[str, Any]) -> None:
        name, ns = work.rollout.spec.target_ref.name, work.target.metadata.namespace
        try:
            await self.client.patch(
                TARGET.resource, name, patch, namespace=ns, patch_type=PatchType.MERGE
            )
        except ApiError as exc:
            raise TransientError(
                f"patching XynergyService {name}: {exc}", reason="ApiError"
            ) from exc

    # ---- results -----------------------------------------------------------------------------

    def _result(self, work: Converge, before: RolloutStatus | None, action: str | None) -> Result:
        rollout, status = work.rollout, work.status
        generation = rollout.metadata.generation
        status.conditions = conditions_for(
            status,
            reason=work.reason,
            generation=generation,
            now=work.now,
            waiting=work.handover,  # Promoted on the old spec: not Ready on the edited one
        )
        events = events_for(before, status, reason=work.reason, run=work.ran)
        if action is not None and action not in ACTIONS:
            events.append(
                Event(
                    "Warning",
                    "UnknownAction",
                    f"{ACTION_ANNOTATION}: {action!r} is not one of {sorted(ACTIONS)}",
                )
            )
        if work.superseded:
            events.append(Event("Normal", "Superseded", status.message or ""))
        if work.refused:
            events.append(Event("Warning", work.refused_reason, work.refused))
        if work.window_ended:
            events.append(Event("Normal", "KeepWindowEnded", work.window_ended))
        if work.started:
            events.extend(_ignored(work))
        if work.interrupted:  # a Warning each time (the phase may have moved with it)
            events = [e for e in events if e.reason != work.reason]
            events.append(Event("Warning", work.reason, status.message or ""))
            return Result(status=status, events=events, requeue=Requeue.BACKOFF)
        if work.wait is not None:
            return Result(status=status, events=events, requeue_after=work.wait)
        if status.phase in _ACTIVE:
            return Result(
                status=status, events=events, requeue_after=self.settings.poll_seconds * 15
            )
        return Result(status=status, events=events)

    def _waiting(self, rollout: Rollout, now: dt.datetime, waiting: Waiting) -> Result:
        """Pending, Reconciling `waiting.reason`; a Rollout delivering (Progressing, Paused:
        its split stands until the new delivery starts) keeps its phase, so that it is not
        taken for one that has not started (`_unstarted`)."""
        status = rollout.status or RolloutStatus()
        phase = status.phase if status.phase in _ACTIVE else RolloutPhase.PENDING
        status = status.model_copy(update={"phase": phase, "message": waiting.message})
        status.conditions = conditions_for(
            status, reason=waiting.reason, generation=rollout.metadata.generation, now=now
        )
        if waiting.after is not None:
            return Result(status=status, requeue_after=waiting.after)
        return Result(status=status, requeue=waiting.requeue)

    def _failed(
        self, rollout: Rollout, base: RolloutStatus | None, exc: ProviderError, now: dt.datetime
    ) -> Result:
        """The error report on `base` (the status as the converge found it, or as the delivery
        it started records it: `Converge.base`), not on the converge's working status."""
        status = (base or RolloutStatus()).model_copy(deep=True)
        status.message = exc.message
        generation = rollout.metadata.generation
        if isinstance(exc, StalledError):
            if status.phase in _ACTIVE or status.phase is None:
                # an ended rollout's traffic goes back to the stable revision (next converge):
                # the status says so now (the gateway's upstreams at once). Cloud Run holds
                # its split until then: the weight stays (and with it the finalizer,
                # needs_finalizer) until that converge has routed it back (_hold_ended)
                status.phase = RolloutPhase.DEGRADED
                if status.traffic_routing is not None and status.canary_weight is not None:
                    status.canary_weight = 0
                if status.traffic:
                    status.traffic = []
                if status.stable_revision and status.canary_revision:
                    status.message += f"{_GOES_BACK}{status.stable_revision}"
            # a Promoted Rollout whose new delivery (its spec edited, a retry) is refused
            # for another Rollout of the target: it waits for it, it is not Ready
            waiting = status.phase == RolloutPhase.PROMOTED and exc.reason == CONFLICT
            status.conditions = conditions_for(
                status, reason=exc.reason, generation=generation, now=now, waiting=waiting
            )
            events = [Event("Warning", exc.reason, exc.message)]
            return Result(status=status, events=events, requeue=Requeue.BACKOFF)
        if status.phase is None:
            status.phase = RolloutPhase.PENDING
        status.conditions = conditions_for(
            status, reason=exc.reason, generation=generation, now=now
        )
        return Result(
            status=status,
            events=[Event("Warning", exc.reason, exc.message)],
            requeue=Requeue.BACKOFF,
        )

    def _invalid(self, body: Mapping[str, Any], exc: ValidationError, now: dt.datetime) -> Result:
        """A spec this operator cannot read (InvalidSpec): nothing is moved, and the status
        says it without forgetting where the traffic stands. A Promoted or ended Rollout
        (RolledBack, Aborted, Degraded) keeps its whole stored status, phase and message
        included: only its Stalled condition (Ready False) says InvalidSpec, so
        `needs_finalizer` and a blue-green keep window are as they were, the markers other
        converges key on (superseded, left to another Rollout, settling) stay, and a spec
        that reads again carries on from there (`_ended_reason` does not take InvalidSpec for
        the reason it ended with). Writing Degraded over Promoted dropped the finalizer of a
        keep window, and once the spec read again the Rollout found itself superseded and
        retired the promoted revision that served everything. A Rollout not started or
        delivering (Pending, Progressing, Paused) stalls as `_failed` stalls it: Degraded, on
        Kubernetes the weight 0 and status.traffic cleared (the gateway skips a Rollout it
        cannot read: the target's own Service serves), on Cloud Run the weight kept (the
        split is pinned on the service until a readable spec, or a deletion, gives it
        back), and the rest kept (what a give-back needs: the revisions, the stable image
        and template, promotingSince)."""
        meta = body.get("metadata") or {}
        message = spec_error(exc)
        generation = meta.get("generation")
        events = [Event("Warning", "InvalidSpec", message)]
        try:
            status = RolloutStatus.model_validate(body.get("status") or {})
        except ValidationError:
            status = RolloutStatus()
        if status.phase in _DONE:
            said = message
            if status.phase == RolloutPhase.PROMOTED and status.traffic:
                said += (  # honest: the gateway does not follow an unreadable Rollout
                    "; the gateway does not route this Rollout's status.traffic while its "
                    "spec cannot be read"
                )
            if status.phase == RolloutPhase.PROMOTED and handing_over(body.get("status") or {}):
                # handing over to an edit of its own spec: the hold stays (Reconciling
                # HandingOver: the finalizer, and other Rollouts of the target waiting, as
                # `_finishing` says), Ready False saying InvalidSpec. Stalled (which removes
                # Reconciling; never both) let a newer Rollout start over the promotion
                status.conditions = set_condition(
                    mark_reconciling(
                        status.conditions,
                        reason=HANDING_OVER,
                        message=f"{said}; the handover to the edit waits for a spec that reads",
                        generation=generation,
                        now=now,
                    ),
                    type_=READY,
                    status="False",
                    reason=INVALID_SPEC,
                    message=said,
                    observed_generation=generation,
                    now=now,
                )
                return Result(status=status, events=events)
            status.conditions = mark_stalled(
                status.conditions,
                reason=INVALID_SPEC,
                message=said,
                generation=generation,
                now=now,
            )
            return Result(status=status, events=events)
        status.phase = RolloutPhase.DEGRADED
        status.message = message
        if status.traffic_routing is not None and status.canary_weight is not None:
            status.canary_weight = 0
        if status.traffic:
            status.traffic = []
        if status.stable_revision and status.canary_revision:
            status.message += f"{_GOES_BACK}{status.stable_revision}"
        status.conditions = conditions_for(
            status, reason=INVALID_SPEC, generation=generation, now=now
        )
        return Result(status=status, events=events)


def _stand_in(body: Mapping[str, Any]) -> Rollout | None:
    """For the deletion of a Cloud Run Rollout whose spec cannot be read: a Rollout to
    release from (`release`), its metadata and status as stored, spec.targetRef and
    spec.progressDeadlineSeconds as stored, its new revision's image from status.canaryImage
    (the template overrides are not known: a target holding a promotion's patch with them is
    not patched back, `_patch_back`), an immediate strategy (not used). None when that does
    not read (the target's name is what is unreadable), for a Kubernetes Rollout
    (status.trafficRouting: a keep window's target patch needs the whole spec) or a Promoted
    one (nothing pinned on Cloud Run), or without the stored fields it needs."""
    stored = body.get("status") or {}
    spec = body.get("spec") or {}
    if stored.get("trafficRouting") or stored.get("phase") == RolloutPhase.PROMOTED.value:
        return None
    image = stored.get("canaryImage") or stored.get("stableImage")
    if not image:
        return None
    stand_in: dict[str, Any] = {
        "targetRef": spec.get("targetRef"),
        "image": image,
        "strategy": {"immediate": {}},
    }
    for deadline in (spec.get("progressDeadlineSeconds"), None):
        if deadline is not None:
            stand_in["progressDeadlineSeconds"] = deadline
        else:
            stand_in.pop("progressDeadlineSeconds", None)
        try:
            return Rollout.model_validate({**body, "spec": stand_in})
        except ValidationError:
            continue
    return None


def _unreadable_release(body: Mapping[str, Any], exc: ValidationError) -> Event | None:
    """What deleting a Rollout whose spec this operator cannot read leaves (no target known):
    nothing when it moved nothing; else a Warning naming what it cannot give back: a split
    (its weight), a promotion written and not finished (status.promotingSince: the service's
    template may name the new revision, with a blue-green preview stalled while promoting at
    weight 0), or a Kubernetes blue-green promotion within its keep window (the target not
    patched: it runs the old revision again once the Rollout is gone) or handing over to an
    edit of its spec (the target patched, perhaps not ready: the promoted revision goes)."""
    try:
        held = RolloutStatus.model_validate(body.get("status") or {})
    except ValidationError:
        held = RolloutStatus()
    cannot = f"deleted while {held.phase} with a spec this operator cannot read ({spec_error(exc)})"
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name") or "its target"
    new = held.canary_revision or "the new revision"
    if held.phase == RolloutPhase.PROMOTED:
        if held.traffic_routing is None or not holds_promotion(body.get("status") or {}):
            return None
        if held.scale_down_at is None:  # handing over: the target patched, maybe not ready
            return Event(
                "Warning",
                "PromotionUnfinished",
                f"{cannot}: XynergyService {target} was patched to the promoted revision's "
                f"image {held.canary_image or held.stable_image or '(unknown)'} and may not "
                f"be ready yet; the promoted revision {new}, which served everything, goes "
                "with the Rollout now, so requests fail until the target is ready",
            )
        return Event(
            "Warning",
            "PromotionUnfinished",
            f"{cannot}: XynergyService {target} is left on the old revision (not patched to "
            f"the promoted revision {new}, whose Deployment goes with the Rollout); patch "
            f"its image to {held.canary_image or 'the promoted one'} by hand",
        )
    if held.traffic_routing is not None:
        return None  # Kubernetes: the new revision goes with the Rollout, the gateway drops it
    if held.phase not in _ACTIVE and not held.canary_weight and not held.promoting_since:
        return None
    left = f"the traffic split is left as it was ({held.canary_weight or 0}% on {new})"
    if held.promoting_since is not None:
        left += (
            f" and its promotion, written at {_stamp(held.promoting_since)} and not finished, "
            f"too: the service's template may name {new}; give the template and traffic "
            f"back to {held.stable_revision or 'the stable revision'} by hand"
        )
    return Event("Warning", "TrafficNotRestored", f"{cannot}: {left}")


def _patched_back(rollout: Rollout, status: RolloutStatus) -> str:
    """What a give-back adds when it patched the target back (`_patch_back`)."""
    return (
        f"; XynergyService {rollout.spec.target_ref.name} patched back to the stable spec "
        f"(image {status.stable_image}) over the promotion's patch"
    )


def _restored(rollout: Rollout, status: RolloutStatus, *, patched: bool, latest: bool) -> Event:
    """The Event of a delivering Rollout's deletion that gave all traffic back (`release`):
    to the stable revision as LATEST 100 % (`latest`, `_latest_is_stable`) or pinned by name,
    and with the target patched back (`patched`)."""
    stable, name = status.stable_revision, rollout.spec.target_ref.name
    routed = (
        f", routed as LATEST 100 % (the latest revision of XynergyService {name}, which is "
        f"{stable} now), no longer pinned by name, so a later edit of the XynergyService serves"
        if latest
        else ""
    )
    return Event(
        "Normal",
        "TrafficRestored",
        f"deleted while {status.phase}: all traffic back on the stable revision {stable} "
        f"({status.canary_revision} gets none)"
        f"{_patched_back(rollout, status) if patched else ''}{routed}",
    )


def _promoted(target: XynergyService, rollout: Rollout) -> XynergyService:
    """The revision a Kubernetes Promoted Rollout promoted, as its status recorded it
    (status.stableImage and stableTemplate: `_finish`), over `target`: what its deletion
    finishes the promotion with (`release`, `_finish_kept`), as `_hand_over` does. Not the
    target with the Rollout's spec: an edit of the spec no converge has delivered yet would
    be patched into the target without a canary or analysis. A status without the image
    (none is written so) falls back to the spec."""
    status = rollout.status or RolloutStatus()
    if not status.stable_image:
        return with_overrides(target, rollout.spec)
    return restored(target, status.stable_image, status.stable_template)


def _kept(status: RolloutStatus, now: dt.datetime) -> RevisionRecord | None:
    """The old revision a blue-green promotion still keeps (within scaleDownDelaySeconds)."""
    if status.phase != RolloutPhase.PROMOTED or not status.history or not status.scale_down_at:
        return None
    return status.history[0] if now < status.scale_down_at else None


async def _promotion_written(
    backend: RolloutBackend, target: XynergyService, status: RolloutStatus
) -> bool:
    """Whether a promotion of status.canaryRevision may have moved the target's template:
    status.promotingSince is set, or (a backend with a template of its own: Cloud Run) the
    service's template names the new revision: a promotion carried out that the status did
    not record (its converge failed after the write, or the operator restarted during it)."""
    if status.promoting_since is not None:
        return True
    canary = status.canary_revision
    if not canary or canary == status.stable_revision or backend.routing is not None:
        return False
    return (await backend.serving(target)).template == canary


def _give_up_waiting(
    rollout: Rollout,
    other: str,
    finishing: str,
    *,
    since: dt.datetime | None,
    now: dt.datetime | None,
) -> None:
    """A Rollout waiting (Pending, `_refuse_overlap`) for another one's promotion to finish:
    the wait is counted from status.waitingSince (`since`, as stored), set now when it
    begins (also for a status stored without it by an earlier operator). Past its own
    spec.progressDeadlineSeconds from then: Degraded, Stalled RolloutConflict (a Warning
    Event; retried with the core's backoff, and it starts once the target runs the
    promoted revision). The Reconciling condition's lastTransitionTime, counted before, moves
    only on a status change, so a Rollout Reconciling for another reason before (the target
    not ready, spec.paused lifted) stalled at once."""
    if now is None:
        return
    if rollout.status is None:
        rollout.status = RolloutStatus()
    status = rollout.status
    status.waiting_since = since or now
    deadline = rollout.spec.progress_deadline_seconds
    if (now - status.waiting_since).total_seconds() < deadline:
        return
    status.phase = RolloutPhase.DEGRADED  # as _failed writes it (not delivering: no split)
    raise StalledError(
        f"Rollout {other} has not finished its promotion on XynergyService "
        f"{rollout.spec.target_ref.name} within this Rollout's {deadline}s "
        f"(spec.progressDeadlineSeconds) of waiting for it: {finishing}; this Rollout starts "
        "once the target runs the promoted revision and is ready (one rollout of a target at "
        "a time)",
        reason=CONFLICT,
    )


def _window_over(work: Converge) -> None:
    """A blue-green keep window has ended: no status.scaleDownAt, and the history back to
    spec.rollbackWindow revisions (the window kept its old revision on record even with 0)."""
    status = work.status
    status.scale_down_at = None
    status.history = (status.history or [])[: work.rollout.spec.rollback_window]


def _unstarted(status: Mapping[str, Any]) -> bool:
    """A Rollout's status (as stored) says it has not started a delivery: no phase, Pending
    with no traffic split (an earlier operator wrote Pending over a delivering Rollout whose
    target was briefly not ready: its split stands), or Degraded by a RolloutConflict before
    it started (no new revision yet)."""
    phase = status.get("phase")
    if phase is None:
        return True
    if phase == RolloutPhase.PENDING.value:
        return not status.get("canaryWeight") and not status.get("traffic")
    return (
        phase == RolloutPhase.DEGRADED.value
        and not status.get("canaryRevision")
        and has_condition(status, "Stalled", CONFLICT)
    )


def _spec_digest(rollout: Rollout) -> str:
    """16 hex digits of what the Rollout itself asks of the revision: spec.image and
    spec.template."""
    spec = rollout.spec.model_dump(by_alias=True, mode="json", include={"image", "template"})
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _asked_anew(work: Converge) -> bool:
    """An ended Rollout's own spec.image or spec.template changed since its delivery started
    (a status from before `deliveredSpec`: its generation moved since the status), while its
    target still runs what it left there: a new delivery. A target that moved on (a later
    release) never starts it again."""
    rollout, status = work.rollout, work.status
    if status.delivered_spec is not None:
        edited = status.delivered_spec != _spec_digest(rollout)
    else:
        edited = status.observed_generation is None or (
            rollout.metadata.generation is not None
            and rollout.metadata.generation != status.observed_generation
        )
    return edited and _moved_on(work) is None


def _ignored(work: Converge) -> list[Event]:
    """Said once when a delivery starts: a field set (not its default) that has no effect on
    the target's backend (canary.maxSurge on Cloud Run, which shifts traffic between revisions
    and sizes each itself)."""
    canary = work.rollout.spec.strategy.canary
    default = CanaryStrategy.model_fields["max_surge"].default
    if work.backend.routing is not None or canary is None or canary.max_surge == default:
        return []
    return [
        Event(
            "Normal",
            "FieldIgnored",
            f"spec.strategy.canary.maxSurge ({canary.max_surge}) has no effect on Cloud Run: it "
            "shifts traffic between revisions and sizes each revision itself",
        )
    ]


def _without_latest_wait(message: str | None) -> str:
    """A status message without the wait `_superseded` appends (`_LATEST_WAITS`)."""
    message = message or ""
    head, sep, _ = message.partition(_LATEST_WAITS)
    if sep:
        return head
    return "" if message.startswith(_LATEST_WAITS[2:]) else message


def _left(status: RolloutStatus) -> str:
    """The split a Rollout leaves, for a message."""
    weight = status.canary_weight or 0
    return f"{status.stable_revision} {100 - weight}%, {status.canary_revision} {weight}%"


def _deletion_time(value: Any) -> dt.datetime | None:
    """metadata.deletionTimestamp as a datetime (None when absent or unreadable)."""
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _created(meta: Mapping[str, Any]) -> tuple[str, str]:
    """Creation order: (creationTimestamp as RFC 3339, name)."""
    stamp = meta.get("creationTimestamp")
    if isinstance(stamp, dt.datetime):
        stamp = _stamp(stamp)
    return (str(stamp or ""), str(meta.get("name") or ""))


def _runs(target: XynergyService, image: str | None, template: Any) -> bool:
    """The target's spec is `image` with `template` (env, args, resources; None: unknown)."""
    if target.spec.image != image:
        return False
    if template is None:
        return True
    have = spec_template(target).model_dump(mode="json", exclude_none=True)
    return bool(have == template.model_dump(mode="json", exclude_none=True))


def _moved_on(work: Converge) -> str | None:
    """What the target runs when it is no longer what this ended Rollout left it on (None
    while it is): the promoted revision, the kept old one during a blue-green keep window on
    a backend that patches the target only when it ends, or the stable one after a rollback."""
    status, target = work.status, work.target
    if status.phase == RolloutPhase.PROMOTED:
        if status.stable_revision == status.canary_revision and status.stable_image:
            if _runs(target, status.stable_image, status.stable_template):
                return None  # stable* name the promoted revision
        elif work.name == status.canary_revision and settled_on(target, work.canary):
            return None  # promoted before status.stableRevision named the new revision
        kept = status.history[0] if status.scale_down_at and status.history else None
        if kept and work.backend.defers_target_patch and _runs(target, kept.image, kept.template):
            return None
    elif status.stable_image is None or _runs(target, status.stable_image, status.stable_template):
        return None
    left = status.canary_image if status.phase == RolloutPhase.PROMOTED else status.stable_image
    other = " with another env, args or resources" if target.spec.image == left else ""
    return f"image {target.spec.image}{other}"


def _annotation(rollout: Rollout) -> str | None:
    return (rollout.metadata.annotations or {}).get(ACTION_ANNOTATION)


def _ended_reason(work: Converge) -> str:
    """The reason an ended Rollout's condition says (its phase when that was an unreadable
    spec's: `_invalid` says InvalidSpec only until the spec reads again)."""
    for cond in work.status.conditions:
        if cond.type in ("Ready", "Stalled") and cond.status == "True":
            if cond.reason == INVALID_SPEC:
                break
            return cond.reason
    return str(work.status.phase.value if work.status.phase else "Pending")


def _due(spec: VerificationSpec, status: RolloutStatus, stage: VerificationStage) -> bool:
    """Whether `stage`'s checks are still to run for the new revision (pre-traffic only while
    it has no traffic)."""
    if stage is VerificationStage.PRE_TRAFFIC and (
        not spec.pre_traffic or (status.canary_weight or 0) > 0
    ):
        return False
    if stage is VerificationStage.PRE_PROMOTION and not spec.pre_promotion:
        return False
    return not any(
        v.stage == stage and v.passed and v.revision == status.canary_revision
        for v in status.verification or []
    )


def cloud_run_tags(rollout: Rollout) -> tuple[str, ...]:
    """The traffic tags the Rollout sets on its Cloud Run target, in the order it sets them:
    `stable` and the new revision's (`canary`, or `preview` for blue-green), then `previous`
    on the old revision for a blue-green keep window (`scaleDownDelaySeconds` > 0)."""
    blue_green = rollout.spec.strategy.blue_green
    new = PREVIEW_TAG if strategy_of(rollout).preview(rollout) else CANARY_TAG
    keeps = blue_green is not None and blue_green.scale_down_delay_seconds > 0
    return (STABLE_TAG, new, *((PREVIOUS_TAG,) if keeps else ()))


def check_tags(rollout: Rollout, target: XynergyService, *, in_flight: bool = False) -> None:
    """StalledError `InvalidTarget` when the Cloud Run target's name leaves no room for the
    longest tag the Rollout will set (a tag and the service's name have at most 46 characters
    together), so it is refused when it starts, before anything is written, instead of by
    Cloud Run mid-rollout (a blue-green's `previous` at its promotion). The CRD admits a Cloud
    Run name of up to 49 characters; a Rollout's needs at most 40 (38 with `previous`).
    Checked only when a delivery starts. `in_flight`: a new revision of a Rollout already
    Progressing or Paused (its spec or its target edited mid-delivery) is not refused for
    `previous`, which its promotion leaves out when it does not fit (a delivery started
    before this check); only the tags the new revision needs now are checked."""
    name = target.metadata.name or ""
    tags = [t for t in cloud_run_tags(rollout) if not (in_flight and t == PREVIOUS_TAG)]
    tag = max(reversed(tags), key=len)  # a tie names the new revision's
    if tag_fits(name, tag):
        return
    hint = ""
    if tag == PREVIOUS_TAG:
        room = MAX_TAGGED_NAME - len(PREVIEW_TAG)
        hint = (
            f", or {room} with spec.strategy.blueGreen.scaleDownDelaySeconds 0 (no "
            f"{PREVIOUS_TAG!r} tag)"
        )
    raise StalledError(
        f"spec.targetRef: XynergyService {name!r} ({len(name)} characters) is too long for a "
        f"Rollout on Cloud Run: the Rollout sets the traffic tag {tag!r} ({len(tag)} "
        f"characters), and Cloud Run refuses a tag and a service name longer than "
        f"{MAX_TAGGED_NAME} characters together (the tag's URL is "
        f"{tag}---{name}-<hash>-<region>.a.run.app, one DNS label); this Rollout can deliver to "
        f"a target of at most {MAX_TAGGED_NAME - len(tag)} characters{hint}",
        reason="InvalidTarget",
    )


def _split(status: RolloutStatus, tag: str) -> tuple[tuple[str | None, int, str | None], ...]:
    weight = status.canary_weight or 0
    return (
        (status.stable_revision, 100 - weight, STABLE_TAG),
        (status.canary_revision, weight, tag),
    )


def from_context(ctx: OperatorContext) -> RolloutReconciler:
    """The reconciler on the operator's clients: Cloud Run built on first use, Prometheus
    from XYNERGY_ROLLOUT_PROMETHEUS_URL, Cloud Monitoring per project."""
    settings = RolloutSettings()

    def backend(
        rollout: Rollout, target: XynergyService, canary: XynergyService
    ) -> RolloutBackend | None:
        if target.spec.backend == BackendKind.CLOUD_RUN:
            return ctx.provider("rollout.cloudrun", lambda: _cloud_run(ctx))
        from controllers.providers.kubernetes import KubernetesProvider
        from controllers.rollout.kubernetes import KubernetesRollout

        provider = ctx.provider(
            "rollout.kubernetes", lambda: KubernetesProvider(ctx.client, limit=ctx.api_limit)
        )
        return KubernetesRollout(provider, rollout, target, canary)

    def metrics(metric: AnalysisMetric, target: XynergyService | None = None) -> MetricsProvider:
        from controllers.providers.prometheus import PrometheusProvider

        if metric.source.value == "cloudMonitoring":
            return _cloud_monitoring(ctx, settings, metric, target)
        if not settings.prometheus_url:
            raise StalledError(
                f"spec.analysis.metrics[{metric.name}]: source {metric.source.value} is not "
                "configured in this operator (XYNERGY_ROLLOUT_PROMETHEUS_URL)",
                reason="MetricsSourceUnavailable",
            )
        url = settings.prometheus_url
        return ctx.provider(
            f"rollout.prometheus.{url}",
            lambda: PrometheusProvider(url, timeout=settings.query_timeout_seconds),
        )

    return RolloutReconciler(
        client=ctx.client, backends=backend, metrics=metrics, settings=settings
    )


def _cloud_monitoring(
    ctx: OperatorContext,
    settings: RolloutSettings,
    metric: AnalysisMetric,
    target: XynergyService | None,
) -> MetricsProvider:
    """The Cloud Monitoring provider of the target's Cloud Run project (else
    XYNERGY_ROLLOUT_GCP_PROJECT), reading the metric's statistic."""
    from controllers.providers.cloudmonitoring import CloudMonitoringProvider

    cloud_run = target.spec.cloud_run if target is not None else None
    project = (cloud_run.project if cloud_run is not None else None) or settings.gcp_project
    if not project:
        raise StalledError(
            f"spec.analysis.metrics[{metric.name}]: source cloudMonitoring has no project "
            "(the target XynergyService has no spec.cloudRun.project and "
            "XYNERGY_ROLLOUT_GCP_PROJECT is unset)",
            reason="MetricsSourceUnavailable",
        )
    provider: CloudMonitoringProvider = ctx.provider(
        f"rollout.cloudmonitoring.{project}",
        lambda: CloudMonitoringProvider(
            project,
            api_endpoint=settings.cloudmonitoring_endpoint,
            timeout=settings.query_timeout_seconds,
        ),
    )
    return provider.for_statistic("count" if metric.method == "proportion" else metric.statistic)


def _cloud_run(ctx: OperatorContext) -> RolloutBackend | None:
    try:
        from controllers.providers.cloudrun import CloudRunProvider
    except ImportError:
        return None
    endpoint = ctx.settings.cloudrun_endpoint
    return CloudRunRollout(
        CloudRunProvider(api_endpoint=endpoint) if endpoint else CloudRunProvider()
    )
