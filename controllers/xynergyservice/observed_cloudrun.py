"""Pure: what a Cloud Run service says about a XynergyService (imported only where Cloud Run
is used: the client library is large)."""

from __future__ import annotations

from google.cloud import run_v2

from controllers.core.errors import StalledError
from controllers.xynergyservice.observed import BackendStatus, Traffic

__all__ = ["from_service"]

_STATE = run_v2.Condition.State


def _camel(words: str) -> str:
    return "".join(part.capitalize() for part in words.lower().split("_")) or "Unknown"


def _short(resource: str) -> str:
    return resource.rpartition("/")[2]


def from_service(service: run_v2.Service, *, writes: int = 0) -> BackendStatus:
    """What Cloud Run reports, as a BackendStatus; StalledError when the rollout failed."""
    cond = service.terminal_condition
    name = _short(service.name)
    latest_created = _short(service.latest_created_revision) or None
    latest_ready = _short(service.latest_ready_revision) or None
    common = {
        "exists": True,
        "url": service.uri or None,
        "latest_created_revision": latest_created,
        "latest_ready_revision": latest_ready,
        "traffic": tuple(
            Traffic(
                revision=_short(t.revision) or latest_ready or "",
                percent=t.percent,
                tag=t.tag or None,
            )
            for t in service.traffic_statuses
        ),
        "writes": writes,
    }
    if service.delete_time:
        message = f"Cloud Run service {name} is being deleted"
        return BackendStatus(ready=False, reason="Deleting", message=message, **common)  # type: ignore[arg-type]
    if not service.reconciling and cond.state == _STATE.CONDITION_FAILED:
        reason = cond.reason.name if cond.reason else cond.revision_reason.name
        raise StalledError(
            f"Cloud Run service {name}: {cond.message or 'rollout failed'}",
            reason=_camel(reason) if reason and "UNDEFINED" not in reason else "RevisionFailed",
        )
    ready = (
        not service.reconciling
        and service.observed_generation == service.generation
        and cond.state == _STATE.CONDITION_SUCCEEDED
        and latest_ready is not None
        and latest_ready == latest_created
    )
    if ready:
        reason = "Ready"
        message = f"Cloud Run revision {latest_ready} is serving at {service.uri}"
    else:
        reason = "Deploying"
        message = f"Cloud Run is rolling out revision {latest_created or '(pending)'}"
        if cond.message:
            message = f"{message}: {cond.message}"
    return BackendStatus(ready=ready, reason=reason, message=message, **common)  # type: ignore[arg-type]
