"""Pure: an observation (or the error a converge raised, or an invalid spec) -> the
XynergyService status, its events, and which fields may change without a write.

Conditions come from `apis.conditions` (Ready always present; Reconciling/Stalled only while
True; transition times move only when a status changes); observedGeneration is set here and
again by the core status writer, so every path shares this one function.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from apis.conditions import (
    READY,
    STALLED,
    Condition,
    get_condition,
    is_true,
    mark_ready,
    mark_reconciling,
    mark_stalled,
    set_condition,
)
from apis.v1alpha1.xynergyservice import TrafficTarget, XynergyService, XynergyServiceStatus
from controllers.core.errors import ProviderError, StalledError
from controllers.core.events import Event
from controllers.core.status import spec_error, status_changed
from controllers.xynergyservice.observed import BackendStatus

__all__ = [
    "compute_status",
    "events_for",
    "invalid_status",
    "status_changed",
    "volatile_fields",
]


def _conditions(
    previous: list[Condition],
    *,
    observed: BackendStatus | None,
    error: ProviderError | None,
    paused: bool,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    kw: dict[str, Any] = {"generation": generation, "now": now}
    if isinstance(error, StalledError):
        return mark_stalled(previous, reason=error.reason, message=error.message, **kw)
    if error is not None:
        return mark_reconciling(previous, reason=error.reason, message=error.message, **kw)
    if observed is None:
        return previous
    if observed.stalled:
        return mark_stalled(previous, reason=observed.reason, message=observed.message, **kw)
    if not observed.ready:
        out = mark_reconciling(previous, reason=observed.reason, message=observed.message, **kw)
        return _still_undecided(previous, out, observed=observed, **kw)
    message = observed.message
    if paused:
        message = f"{message} (paused: changes to the spec are not applied)"
    return mark_ready(previous, reason=observed.reason, message=message, **kw)


def _still_undecided(
    previous: list[Condition],
    out: list[Condition],
    *,
    observed: BackendStatus,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """A service that was never Ready keeps Ready=Unknown while it progresses (mark_reconciling
    would turn the second Unknown into False: a status write per object for nothing)."""
    before = get_condition(previous, READY)
    if before is None or before.status != "Unknown":
        return out
    ready = get_condition(
        set_condition(
            previous,
            type_=READY,
            status="Unknown",
            reason=observed.reason,
            message=observed.message,
            observed_generation=generation,
            now=now,
        ),
        READY,
    )
    assert ready is not None
    return [ready if c.type == READY else c for c in out]


def _status(
    previous: XynergyServiceStatus | None,
    *,
    observed: BackendStatus | None,
    error: ProviderError | None,
    paused: bool,
    generation: int | None,
    now: dt.datetime,
) -> XynergyServiceStatus:
    previous = previous or XynergyServiceStatus()
    status = previous.model_copy(deep=True)
    status.conditions = _conditions(
        list(previous.conditions),
        observed=observed,
        error=error,
        paused=paused,
        generation=generation,
        now=now,
    )
    if observed is not None:
        status.url = observed.url
        status.latest_created_revision = observed.latest_created_revision
        status.latest_ready_revision = observed.latest_ready_revision or (
            previous.latest_ready_revision
        )
        status.replicas = observed.replicas
        status.ready_replicas = observed.ready_replicas
        status.selector = observed.selector
        status.traffic = [
            TrafficTarget(revision=t.revision, percent=t.percent, tag=t.tag)
            for t in observed.traffic
        ] or None
    status.observed_generation = generation
    return status


def compute_status(
    svc: XynergyService,
    *,
    observed: BackendStatus | None,
    error: ProviderError | None,
    now: dt.datetime,
) -> XynergyServiceStatus:
    """The status after one converge (or one observation)."""
    return _status(
        svc.status,
        observed=observed,
        error=error,
        paused=svc.spec.paused,
        generation=svc.metadata.generation,
        now=now,
    )


def invalid_status(
    body: Mapping[str, Any], exc: ValidationError, *, now: dt.datetime
) -> XynergyServiceStatus:
    """Stalled with reason InvalidSpec and the failing field (`spec.resources.cpu: ...`), for
    an object the model rejects (the apiserver admitted it: an older CRD, or a check only the
    model makes). Everything else in the stored status is kept."""
    try:
        previous = XynergyServiceStatus.model_validate(body.get("status") or {})
    except ValidationError:
        previous = None
    generation = (body.get("metadata") or {}).get("generation")
    error = StalledError(spec_error(exc), reason="InvalidSpec")
    return _status(
        previous, observed=None, error=error, paused=False, generation=generation, now=now
    )


def volatile_fields(status: XynergyServiceStatus) -> frozenset[str]:
    """Fields whose change alone is no reason to write: mid-rollout instance counts move on
    every Deployment event (a write per step per object); they go with the next condition
    change."""
    ready = get_condition(status.conditions, READY)
    if ready is not None and ready.status == "True" and ready.reason != "Scaling":
        return frozenset()
    return frozenset({"replicas", "readyReplicas"})


def events_for(
    old: XynergyServiceStatus | None,
    new: XynergyServiceStatus,
    *,
    writes: int,
    created: bool,
    changed: Sequence[str] = (),
    rescaled: bool = False,
) -> list[Event]:
    """Events a user cares about: Created, Updated (ConfigChanged when a Secret/ConfigMap the
    env reads changed, naming it, never its values), Ready, Failed.

    Ready is posted when it is news: Ready was False before (an update rolled out, a stall or
    a missing child recovered). A new service's first Ready (from Unknown, or no status) is
    not: Created said what was made, and the Ready condition says when it became Ready (one
    Event write per object fewer, within the write budget of docs/architecture.md).

    A write that only `rescaled` the instances is no Updated: the scaler (HPA, ScalingPolicy)
    and the Deployment post their own events."""
    events: list[Event] = []
    if writes and changed and not created:
        events.append(
            Event(
                "Normal",
                "ConfigChanged",
                f"{', '.join(changed)} changed: rolling out revision {new.latest_created_revision}",
            )
        )
    elif writes and not rescaled:
        verb, reason = ("created", "Created") if created else ("applied", "Updated")
        events.append(Event("Normal", reason, f"{verb} revision {new.latest_created_revision}"))
    old_conditions = old.conditions if old else []
    old_ready = get_condition(old_conditions, READY)
    if is_true(new.conditions, READY) and old_ready is not None and old_ready.status == "False":
        events.append(Event("Normal", "Ready", f"ready at {new.url}"))
    new_stalled = get_condition(new.conditions, STALLED)
    if new_stalled is not None and new_stalled.status == "True":
        old_stalled = get_condition(old_conditions, STALLED)
        if old_stalled is None or old_stalled.message != new_stalled.message:
            events.append(Event("Warning", "Failed", new_stalled.message))
    return events
