"""Level-based converge of one XynergyService: observe the backend, decide, act, and say where
it stands in one `Result` (status, events, when to check again). No kopf here: the core
controller runs it for every trigger and writes what it returns.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from apis.conditions import mark_reconciling
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.xynergyservice import Backend as BackendKind
from apis.v1alpha1.xynergyservice import XynergyService, XynergyServiceStatus
from controllers.core.context import OperatorContext
from controllers.core.controller import ChildEvent, Kind, Requeue, Result
from controllers.core.errors import ProviderError, StalledError, TransientError
from controllers.core.events import Event
from controllers.metrics import RECONCILE_DURATION, RECONCILE_TOTAL
from controllers.providers.kubernetes import KubernetesProvider
from controllers.xynergyservice.backends import Backend, CloudRunBackend, KubernetesBackend
from controllers.xynergyservice.observed import BackendStatus
from controllers.xynergyservice.resources.naming import check_name
from controllers.xynergyservice.status import (
    compute_status,
    events_for,
    invalid_status,
    volatile_fields,
)

__all__ = [
    "KIND",
    "XynergyServiceReconciler",
    "from_context",
    "needs_finalizer",
    "reconcile",
    "release",
]

KIND = Kind(GROUP, VERSION, "XynergyService", "xynergyservices")
DELETING = "Deleting"
"""The Reconciling reason of a XynergyService whose deletion waits (`deletion_status`)."""

Backends = Mapping[BackendKind, Backend] | Callable[[BackendKind], Backend | None]


def _backend(svc: XynergyService, backends: Backends) -> Backend:
    kind = svc.spec.backend
    found = backends.get(kind) if isinstance(backends, Mapping) else backends(kind)
    if found is None:
        raise StalledError(
            f"backend {kind.value!r} is not configured in this operator",
            reason="BackendUnavailable",
        )
    return found


def _requeue(observed: BackendStatus | None, error: ProviderError | None) -> Requeue:
    if error is not None or (observed is not None and observed.stalled):
        return Requeue.BACKOFF
    return Requeue.RESYNC if observed is not None and observed.ready else Requeue.SOON


async def reconcile(
    svc: XynergyService,
    *,
    backends: Backends,
    now: dt.datetime,
    child: ChildEvent | None = None,
) -> Result:
    """Converge the backend to the spec (or only observe it when paused)."""
    started = time.perf_counter()
    observed: BackendStatus | None = None
    error: ProviderError | None = None
    try:
        check_name(svc)
        backend = _backend(svc, backends)
        act = backend.observe if svc.spec.paused else backend.apply
        observed = await act(svc, child=child)
    except (StalledError, TransientError) as exc:
        error = exc
    status = compute_status(svc, observed=observed, error=error, now=now)
    status.last_reconcile_time = now
    writes = observed.writes if observed else 0
    created = observed.created if observed else False
    changed = observed.changed_sources if observed else ()
    rescaled = observed.rescaled if observed else False
    events = events_for(
        svc.status, status, writes=writes, created=created, changed=changed, rescaled=rescaled
    )
    if isinstance(error, TransientError):
        events.append(Event("Warning", error.reason, error.message))
    result = "ok" if error is None else ("stalled" if isinstance(error, StalledError) else "retry")
    RECONCILE_TOTAL.labels(KIND.kind, result).inc()
    RECONCILE_DURATION.labels(KIND.kind, result).observe(time.perf_counter() - started)
    return Result(
        status=status,
        events=events,
        requeue=_requeue(observed, error),
        volatile=volatile_fields(status),
    )


async def release(svc: XynergyService, *, backends: Backends) -> tuple[bool, Event]:
    """Honour deletionPolicy: delete the backend service, or orphan it."""
    orphan = svc.spec.deletion_policy.value == "Orphan"
    gone = await _backend(svc, backends).delete(svc, orphan=orphan)
    if orphan:
        return gone, Event(
            "Normal", "Orphaned", "backend service left running (deletionPolicy Orphan)"
        )
    return gone, Event("Normal", "Deleted", "backend service deleted")


def needs_finalizer(body: Mapping[str, Any]) -> bool:
    """Kubernetes children with deletionPolicy Delete go by garbage collection (owner
    references): no finalizer, no extra write. Cloud Run, or Orphan, need us at deletion."""
    spec = body.get("spec") or {}
    return spec.get("backend") == "cloudRun" or spec.get("deletionPolicy") == "Orphan"


class XynergyServiceReconciler:
    """The kind's `KindReconciler`: parse, then `reconcile`; an invalid spec stalls."""

    kind = KIND
    cached_children = frozenset({"Deployment", "Service"})
    """Their watched bodies are kept (core `ChildCache`) for the Kubernetes backend to read."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self._holding: dict[str, str] = {}
        """Per object whose deletion the last release held: what it waits for, until the
        core asks for the status that says so (`deletion_status`)."""

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        try:
            svc = XynergyService.model_validate(dict(body))
        except ValidationError as exc:
            status = invalid_status(body, exc, now=now)
            return Result(status=status, events=events_for(None, status, writes=0, created=False))
        return await reconcile(svc, backends=self.backends, now=now, child=child)

    def needs_finalizer(self, body: Mapping[str, Any]) -> bool:
        return needs_finalizer(body)

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:
        """Deletion (only for objects with our finalizer); an invalid spec created nothing.
        While the backend service is not gone yet (a Cloud Run delete is a long-running
        operation) or its deletion fails, the core tries again with a back-off; each try
        returns why it waits (DeletionWaiting, or a Warning DeletionBlocked naming the error)
        and the core says each reason once (`SaidOnce`, seeded from the status
        `deletion_status` wrote, so a restart does not say it again); Deleted only when the
        service is gone."""
        try:
            svc = XynergyService.model_validate(dict(body))
        except ValidationError:
            return True, None
        uid = str(svc.metadata.uid)
        try:
            gone, event = await release(svc, backends=self.backends)
        except ProviderError as exc:
            gone, event = False, Event("Warning", "DeletionBlocked", f"deleting: {exc.message}")
            waits = f"deleting the backend service failed ({exc.reason}): {exc.message}; retried"
        else:
            if not gone:
                event = Event("Normal", "DeletionWaiting", "waiting for the backend service to go")
            waits = "waiting for the backend service to go"
        if gone:
            self._holding.pop(uid, None)
            return True, event
        self._holding[uid] = f"being deleted: {waits}"
        return False, event

    def deletion_status(self, body: Mapping[str, Any]) -> XynergyServiceStatus | None:
        """The status while the deletion the last `release` held waits: Reconciling (reason
        `Deleting`; Ready False), its message saying what the deletion waits for. The rest
        stays as it was. Written by the core only when it changed: once per reason."""
        meta = body.get("metadata") or {}
        message = self._holding.pop(str(meta.get("uid") or ""), None)
        if message is None:
            return None
        try:
            status = XynergyServiceStatus.model_validate(body.get("status") or {})
        except ValidationError:
            return None
        status.conditions = mark_reconciling(
            status.conditions,
            reason=DELETING,
            message=message,
            generation=meta.get("generation"),
            now=dt.datetime.now(dt.UTC),
        )
        return status


def _cloud_run(ctx: OperatorContext) -> Backend | None:
    try:
        from controllers.providers.cloudrun import CloudRunProvider
    except ImportError:  # the Cloud Run client is not installed in this build
        return None
    endpoint = ctx.settings.cloudrun_endpoint
    return CloudRunBackend(
        CloudRunProvider(api_endpoint=endpoint) if endpoint else CloudRunProvider(),
        _secret_manager(ctx),
    )


def _secret_manager(ctx: OperatorContext) -> Any:
    """The Secret Manager provider (None without its client library). Its endpoint setting
    (`secretmanager_endpoint`, a local fake) is read when the settings define it."""
    try:
        from controllers.providers.secretmanager import SecretManagerProvider
    except ImportError:
        return None
    endpoint = getattr(ctx.settings, "secretmanager_endpoint", None)
    return SecretManagerProvider(api_endpoint=endpoint) if endpoint else SecretManagerProvider()


def from_context(ctx: OperatorContext) -> XynergyServiceReconciler:
    """The reconciler with backends on the operator's clients (Cloud Run built on first use)."""
    kubernetes = KubernetesBackend(
        KubernetesProvider(ctx.client, limit=ctx.api_limit),
        progress_deadline_seconds=ctx.settings.progress_deadline_seconds,
        children=ctx.children,
    )

    def backend(kind: BackendKind) -> Backend | None:
        if kind == BackendKind.KUBERNETES:
            return kubernetes
        if kind == BackendKind.CLOUD_RUN:
            return ctx.provider("xynergyservice.cloudrun", lambda: _cloud_run(ctx))
        return None

    return XynergyServiceReconciler(backend)
