"""Level-based reconcile of one XynergyService: read the spec, observe the backend, converge,
compute status. No kopf here: handlers call `reconcile` and write what it returns."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from apis.v1alpha1.xynergyservice import Backend as BackendKind
from apis.v1alpha1.xynergyservice import XynergyService, XynergyServiceStatus
from controllers.metrics import RECONCILE_DURATION, RECONCILE_TOTAL
from controllers.providers.base import (
    Backend,
    BackendStatus,
    ProviderError,
    StalledError,
    TransientError,
)
from controllers.xynergyservice.status import Event, compute_status, events_for

__all__ = ["Outcome", "backoff", "reconcile", "release"]

KIND = "XynergyService"


@dataclass(frozen=True)
class Outcome:
    """What one reconcile decided: the status to write, events to post, when to retry."""

    status: XynergyServiceStatus
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    writes: int = 0
    error: ProviderError | None = None


def backoff(
    retry: int, *, base: float = 2.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff, equal jitter: uniform in [d/2, d] with d = min(cap, base * 2**retry)."""
    delay = min(cap, base * (2 ** max(retry, 0)))
    return (rng or random).uniform(delay / 2, delay)


def _backend(svc: XynergyService, backends: Mapping[BackendKind, Backend]) -> Backend:
    try:
        return backends[svc.spec.backend]
    except KeyError:
        raise StalledError(
            f"backend {svc.spec.backend.value!r} is not configured in this operator",
            reason="BackendUnavailable",
        ) from None


async def reconcile(
    svc: XynergyService,
    *,
    backends: Mapping[BackendKind, Backend],
    now: dt.datetime,
    retry: int = 0,
) -> Outcome:
    """Converge the backend to the spec (or only observe it when paused) and say where it stands."""
    started = time.perf_counter()
    observed: BackendStatus | None = None
    error: ProviderError | None = None
    try:
        backend = _backend(svc, backends)
        observed = await (backend.observe(svc) if svc.spec.paused else backend.apply(svc))
    except (StalledError, TransientError) as exc:
        error = exc
    status = compute_status(svc, observed=observed, error=error, now=now)
    status.last_reconcile_time = now
    writes = observed.writes if observed else 0
    previous = svc.status
    created = writes > 0 and not (previous and previous.latest_created_revision)
    events = events_for(previous, status, writes=writes, created=created)
    if isinstance(error, TransientError):
        events.append(Event("Warning", error.reason, error.message))
    result = "ok" if error is None else ("stalled" if isinstance(error, StalledError) else "retry")
    RECONCILE_TOTAL.labels(KIND, result).inc()
    RECONCILE_DURATION.labels(KIND, result).observe(time.perf_counter() - started)
    return Outcome(
        status=status,
        events=events,
        retry_after=backoff(retry) if error is not None else None,
        writes=writes,
        error=error,
    )


async def release(
    svc: XynergyService, *, backends: Mapping[BackendKind, Backend]
) -> tuple[bool, Event]:
    """Honour deletionPolicy: delete the backend service, or orphan it."""
    orphan = svc.spec.deletion_policy.value == "Orphan"
    gone = await _backend(svc, backends).delete(svc, orphan=orphan)
    if orphan:
        return gone, Event(
            "Normal", "Orphaned", "backend service left running (deletionPolicy Orphan)"
        )
    return gone, Event("Normal", "Deleted", "backend service deleted")
