"""Pure: a Rollout's phase and last analysis as kstatus conditions, and the Events a change of
them deserves.

Progressing and Paused are Reconciling=True (kstatus InProgress); Promoted is Ready=True;
RolledBack, Aborted and Degraded are Stalled=True (a person must act: retry, a new spec, or
undo). The `Analysis` condition carries the last run's verdict and its evidence (metric,
effect, p-value, MDE; for a verification run: the check, what it expected, what came back),
so a rollback says why in `kubectl describe` and in its Event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from apis.conditions import (
    Condition,
    ConditionStatus,
    mark_ready,
    mark_reconciling,
    mark_stalled,
    set_condition,
)
from apis.v1alpha1.rollout import AnalysisRunSummary, RolloutPhase, RolloutStatus, Verdict
from controllers.core.events import Event

__all__ = [
    "ACTION_ANNOTATION",
    "ANALYSIS",
    "DELETING",
    "HANDING_OVER",
    "MAX_RUNS",
    "SUPERSEDED",
    "conditions_for",
    "events_for",
    "handing_over",
    "has_condition",
    "holds_promotion",
    "needs_finalizer",
    "pending_action",
    "pinned",
    "record_run",
]

ACTION_ANNOTATION = "xynergy.io/rollout-action"

ANALYSIS = "Analysis"
HANDING_OVER = "HandingOver"
"""The Reconciling reason of a Kubernetes Promoted Rollout whose own spec was edited while its
promotion still held the target: it finishes that promotion (the target patched to the
promoted revision, which serves until the target runs it and is ready), then starts the new
delivery from it."""
DELETING = "Deleting"
"""The Reconciling reason of a Rollout whose deletion waits (the reconciler's
`deletion_status`). It takes the place of `HandingOver` in the condition while a handover's
deletion is held (`holds_promotion`)."""
SUPERSEDED = "superseded: "
"""The start of an ended Rollout's message once its target has moved on without it."""
MAX_RUNS = 10
_STALLED = (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED, RolloutPhase.DEGRADED)
_VERDICT_STATUS: dict[Verdict, ConditionStatus] = {
    Verdict.SUCCESSFUL: "True",
    Verdict.FAILED: "False",
    Verdict.INCONCLUSIVE: "Unknown",
}


def pending_action(body: Mapping[str, Any]) -> str | None:
    """The annotation's verb when its value has not been acted upon yet (None otherwise)."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(ACTION_ANNOTATION)
    if not value or value == (body.get("status") or {}).get("handledAction"):
        return None
    return str(value).split("/", 1)[0].strip().lower()


_MAY_SPLIT = (None, RolloutPhase.PENDING, RolloutPhase.PROGRESSING, RolloutPhase.PAUSED)


def needs_finalizer(body: Mapping[str, Any]) -> bool:
    """Whether deleting the Rollout now needs the operator: it may hold its target's traffic
    split on a backend that keeps the split once the Rollout is gone (Cloud Run's revision
    traffic; status.trafficRouting unset), or (Kubernetes) its blue-green promotion is not
    finished. That is a Rollout not started yet (its backend
    is not known yet, so nothing is made before the finalizer is in place), a Progressing or
    Paused one, and an ended one that its next converge may start again (a `retry` not acted
    upon, a spec edit not observed yet, a Rollout stalled before it started: RolloutConflict),
    and one stalled mid-way (Degraded with status.canaryWeight still above 0, or with
    status.promotingSince set: its next converge returns the traffic, and the template of a
    promotion written, to the stable revision and writes the weight 0 then), and on Cloud
    Run an ended one whose stable revision may still be pinned by name (`pinned`): its
    deletion routes the traffic to LATEST.
    On Kubernetes (status.trafficRouting set) the new revision's Deployment and Service go
    with the Rollout by their owner references and the gateway serves the target's own
    Service once the Rollout is gone: no finalizer, but for a blue-green promotion within its
    keep window (status.scaleDownAt), whose target is patched only when the window ends:
    deleting the Rollout then would leave the target on the old revision, and for one handing
    over to an edit of its own spec (Reconciling `HandingOver`: the window ended for it, its
    promoted revision serving until the target runs it and is ready). kopf adds the
    finalizer while this holds and removes it on the first event after it stops holding (the
    status write that ends the rollout or its keep window, or a converge finding an ended
    Cloud Run Rollout superseded), so deleting such a Rollout touches nothing. A deletion
    held for either (`holds_promotion`) keeps it until the release lets go."""
    status = body.get("status") or {}
    if status.get("trafficRouting"):  # Kubernetes: only a blue-green promotion's keep window
        return holds_promotion(status)
    phase = status.get("phase")
    if phase in _MAY_SPLIT:
        return True
    if phase in _STALLED and (status.get("canaryWeight") or status.get("promotingSince")):
        # stalled mid-way (a blue-green preview stalled while promoting has weight 0): the
        # next converge routes the split back, and gives a promotion's template back
        return True  # (see _failed)
    if phase in _STALLED and pinned(status):
        return True  # its deletion routes the service's traffic to LATEST (`release`)
    generation = (body.get("metadata") or {}).get("generation")
    return (
        pending_action(body) == "retry"
        or generation != status.get("observedGeneration")
        or not status.get("canaryRevision")
    )


def handing_over(status: Mapping[str, Any]) -> bool:
    """Reconciling `HandingOver` (the reconciler's handover to an edit of its own spec)."""
    return has_condition(status, "Reconciling", HANDING_OVER)


def holds_promotion(status: Mapping[str, Any]) -> bool:
    """A Kubernetes (status.trafficRouting) Promoted Rollout whose blue-green promotion still
    holds the target: within its keep window (status.scaleDownAt: the target not patched
    yet), handing over to an edit of its own spec (Reconciling `HandingOver`: the target
    patched and rolling, the promoted revision serving until it is ready), or either with
    its deletion held (Reconciling `Deleting`, which the held deletion's status writes over
    `HandingOver`; only a deletion held for such a promotion writes it on Kubernetes)."""
    return (
        bool(status.get("trafficRouting"))
        and status.get("phase") == RolloutPhase.PROMOTED
        and (
            bool(status.get("scaleDownAt"))
            or handing_over(status)
            or has_condition(status, "Reconciling", DELETING)
        )
    )


def has_condition(status: Mapping[str, Any], type_: str, reason: str) -> bool:
    """The stored status (a mapping, as read) has condition `type_` True with `reason`."""
    return any(
        c.get("type") == type_ and c.get("status") == "True" and c.get("reason") == reason
        for c in status.get("conditions") or []
    )


def pinned(status: Mapping[str, Any]) -> bool:
    """Whether an ended Cloud Run Rollout (RolledBack, Aborted, Degraded once its split was
    routed back) may still hold its service's traffic pinned by revision name: its stable
    revision at 100 % (the target's own controller does not manage Cloud Run traffic, so a
    later edit of the XynergyService would make a revision that gets none). Not once it was
    found superseded (its traffic went to LATEST then, `_superseded`), nor for one that
    never started (no revisions)."""
    return (
        not status.get("trafficRouting")
        and status.get("phase") in _STALLED
        and bool(status.get("stableRevision"))
        and bool(status.get("canaryRevision"))
        and not str(status.get("message") or "").startswith(SUPERSEDED)
    )


def _label(run: AnalysisRunSummary) -> str:
    """Analysis, or Verification for a verification run (its reasons: VerificationFailed)."""
    return "Verification" if run.stage is not None else "Analysis"


def record_run(status: RolloutStatus, run: AnalysisRunSummary) -> list[AnalysisRunSummary]:
    """The run history with `run` added (newest last, at most MAX_RUNS)."""
    return [*(status.analysis_runs or []), run][-MAX_RUNS:]


def conditions_for(
    status: RolloutStatus,
    *,
    reason: str,
    generation: int | None,
    now: dt.datetime,
    waiting: bool = False,
) -> list[Condition]:
    """Ready/Reconciling/Stalled for the phase (with `reason` and status.message), and the
    Analysis condition for the last run. `waiting`: a Promoted Rollout whose new delivery (an
    edit of its spec, a retry) waits for another Rollout of its target: Reconciling (Ready
    False), as a new Rollout waiting reads, not Ready on the old delivery."""
    message = status.message or ""
    conditions = list(status.conditions)
    if status.phase == RolloutPhase.PROMOTED and not waiting:
        conditions = mark_ready(
            conditions, reason=reason, message=message, generation=generation, now=now
        )
    elif status.phase in _STALLED:
        conditions = mark_stalled(
            conditions, reason=reason, message=message, generation=generation, now=now
        )
    else:
        conditions = mark_reconciling(
            conditions, reason=reason, message=message, generation=generation, now=now
        )
    runs = status.analysis_runs or []
    if runs:
        last = runs[-1]
        conditions = set_condition(
            conditions,
            type_=ANALYSIS,
            status=_VERDICT_STATUS[last.verdict],
            reason=f"{_label(last)}{last.verdict.value}",
            message="; ".join(last.evidence or [])[:4096],
            observed_generation=generation,
            now=now,
        )
    return conditions


def events_for(
    before: RolloutStatus | None, after: RolloutStatus, *, reason: str, run: bool
) -> list[Event]:
    """Events for what changed: the phase, the canary weight, a new analysis run."""
    events: list[Event] = []
    message = after.message or ""
    if run and after.analysis_runs:
        last = after.analysis_runs[-1]
        kind: Literal["Normal", "Warning"] = (
            "Warning" if last.verdict == Verdict.FAILED else "Normal"
        )
        detail = "; ".join(last.evidence or [])
        if last.score is not None:
            detail = f"score {last.score}: {detail}"
        events.append(Event(kind, f"{_label(last)}{last.verdict.value}", detail))
    was_phase = before.phase if before else None
    moved = before is None or before.canary_weight != after.canary_weight
    if moved and after.phase in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED):
        events.append(
            Event("Normal", "TrafficShifted", f"canary weight {after.canary_weight or 0}%")
        )
    if was_phase != after.phase and after.phase is not None:
        severity: Literal["Normal", "Warning"] = "Warning" if after.phase in _STALLED else "Normal"
        events.append(Event(severity, reason, message))
    return events
