"""Pure: what the backend reports (or the error it raised) -> XynergyService status + events.

Bookkeeping done once for every outcome, as Knative's reconcile_common does: observedGeneration
follows generation; Ready is always present; Reconciling/Stalled only while True; transition
times move only when a status changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from apis.conditions import (
    READY,
    STALLED,
    get_condition,
    is_true,
    mark_ready,
    mark_reconciling,
    mark_stalled,
)
from apis.v1alpha1.xynergyservice import TrafficTarget, XynergyService, XynergyServiceStatus
from controllers.providers.base import BackendStatus, ProviderError, StalledError

__all__ = ["Event", "compute_status", "events_for", "status_changed", "status_patch"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the XynergyService."""

    type: str  # Normal | Warning
    reason: str
    message: str


def compute_status(
    svc: XynergyService,
    *,
    observed: BackendStatus | None,
    error: ProviderError | None,
    now: dt.datetime,
) -> XynergyServiceStatus:
    """The status to write after one reconcile (or one observation)."""
    previous = svc.status or XynergyServiceStatus()
    generation = svc.metadata.generation
    conditions = list(previous.conditions)
    status = previous.model_copy(deep=True)
    if isinstance(error, StalledError):
        conditions = mark_stalled(
            conditions, reason=error.reason, message=error.message, generation=generation, now=now
        )
    elif error is not None:
        conditions = mark_reconciling(
            conditions, reason=error.reason, message=error.message, generation=generation, now=now
        )
    elif observed is not None:
        if observed.ready:
            message = observed.message
            if svc.spec.paused:
                message = f"{message} (paused: changes to the spec are not applied)"
            conditions = mark_ready(
                conditions, reason=observed.reason, message=message, generation=generation, now=now
            )
        else:
            conditions = mark_reconciling(
                conditions,
                reason=observed.reason,
                message=observed.message,
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
    status.conditions = conditions
    status.observed_generation = generation
    return status


def status_patch(status: XynergyServiceStatus) -> dict[str, Any]:
    """The status as a JSON merge patch body (absent fields are removed)."""
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    fields = XynergyServiceStatus.model_fields
    for name, info in fields.items():
        key = info.alias or name
        dumped.setdefault(key, None)
    return dumped


def _comparable(status: XynergyServiceStatus | None) -> dict[str, Any]:
    if status is None:
        return {}
    data = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    data.pop("lastReconcileTime", None)
    if not is_true(status.conditions, READY):
        # Mid-rollout instance counts move on every Deployment event; writing each would cost
        # a status write per step per object. They are written with the next condition change.
        data.pop("replicas", None)
        data.pop("readyReplicas", None)
    return data


def status_changed(old: XynergyServiceStatus | None, new: XynergyServiceStatus) -> bool:
    """True when writing `new` would change anything a reader cares about."""
    return _comparable(old) != _comparable(new)


def events_for(
    old: XynergyServiceStatus | None,
    new: XynergyServiceStatus,
    *,
    writes: int,
    created: bool,
    deleted: bool = False,
) -> list[Event]:
    """Events a user cares about: Created, Updated, Ready, Failed, Deleted."""
    events: list[Event] = []
    if deleted:
        return [Event("Normal", "Deleted", "backend service deleted")]
    if writes:
        if created:
            events.append(
                Event("Normal", "Created", f"created revision {new.latest_created_revision}")
            )
        else:
            events.append(
                Event("Normal", "Updated", f"applied revision {new.latest_created_revision}")
            )
    old_conditions = old.conditions if old else []
    if is_true(new.conditions, READY) and not is_true(old_conditions, READY):
        events.append(Event("Normal", "Ready", f"ready at {new.url}"))
    if is_true(new.conditions, STALLED):
        new_stalled = get_condition(new.conditions, STALLED)
        old_stalled = get_condition(old_conditions, STALLED)
        if new_stalled is not None and (
            old_stalled is None or old_stalled.message != new_stalled.message
        ):
            events.append(Event("Warning", "Failed", new_stalled.message))
    return events
