"""kopf handlers for XynergyService: parse the body into the model, call the reconciler, write
status and events. Nothing else lives here.

Triggers: create, update (spec/metadata), resume, a Deployment we own changing (drift is
corrected at once and status follows the rollout), and a periodic drift check (default 10
minutes with jitter; per object with the annotation `xynergy.io/drift-check-interval`, seconds).
An unchanged object causes no writes: children are compared before they are applied and status
is patched only when it changed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from typing import Any, cast

import httpx2  # lightkube's transport
import kopf
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType
from pydantic import ValidationError

from apis.conditions import READY, is_true, mark_stalled
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.xynergyservice import Backend as BackendKind
from apis.v1alpha1.xynergyservice import XynergyService, XynergyServiceStatus
from controllers.providers.base import Backend, ProviderError
from controllers.providers.kubernetes import KubernetesProvider, status_from_deployment
from controllers.runtime import current_settings
from controllers.settings import OperatorSettings
from controllers.xynergyservice.reconciler import reconcile, release
from controllers.xynergyservice.resources import MANAGED_BY, SERVICE_LABEL
from controllers.xynergyservice.status import (
    Event,
    compute_status,
    events_for,
    status_changed,
    status_patch,
)

PLURAL = "xynergyservices"
DRIFT_ANNOTATION = "xynergy.io/drift-check-interval"
SOON_SECONDS = 20.0
XynergyServiceResource = create_namespaced_resource(GROUP, VERSION, "XynergyService", PLURAL)

log = logging.getLogger(__name__)


class _State:
    """Per-process clients and drift-check timing (recomputed after a restart; not state that
    must survive one: a restart resumes every object anyway)."""

    client: AsyncClient | None = None
    limit: asyncio.Semaphore | None = None
    settings: OperatorSettings = OperatorSettings()
    backends: dict[BackendKind, Backend] = {}
    next_drift_check: dict[str, float] = {}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse(body: kopf.Body) -> XynergyService:
    return XynergyService.model_validate(dict(body))


def _post(body: kopf.Body, events: list[Event]) -> None:
    for ev in events:
        kopf.event(body, type=ev.type, reason=ev.reason, message=ev.message)


def _invalid_status(body: kopf.Body, exc: ValidationError) -> dict[str, Any]:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = f"spec.{where}: {first['msg']}"
    previous = XynergyServiceStatus.model_validate(body.get("status") or {})
    generation = body.get("metadata", {}).get("generation")
    status = previous.model_copy()
    status.conditions = mark_stalled(
        previous.conditions,
        reason="InvalidSpec",
        message=message,
        generation=generation,
        now=_now(),
    )
    status.observed_generation = generation
    return status_patch(status)


@kopf.on.startup()
async def _reset_clients(**_: Any) -> None:
    """Clients belong to one event loop: start each operator run with fresh ones."""
    _State.client = None
    _State.backends = {}
    _State.next_drift_check = {}
    _State.settings = current_settings()
    _State.limit = asyncio.Semaphore(_State.settings.api_concurrency)


@kopf.on.cleanup()
async def _close_clients(**_: Any) -> None:
    if _State.client is not None:
        await _State.client.close()
    _State.client = None
    _State.backends = {}


def _limit() -> asyncio.Semaphore:
    if _State.limit is None:
        _State.limit = asyncio.Semaphore(_State.settings.api_concurrency)
    return _State.limit


async def _client() -> AsyncClient:
    if _State.client is None:
        _State.client = AsyncClient(field_manager="xynergy-operator")
    return _State.client


async def _backends() -> dict[BackendKind, Backend]:
    if not _State.backends:
        client = await _client()
        backends: dict[BackendKind, Backend] = {
            BackendKind.KUBERNETES: KubernetesProvider(client, limit=_limit())
        }
        cloud_run = _cloud_run_backend()
        if cloud_run is not None:
            backends[BackendKind.CLOUD_RUN] = cloud_run
        _State.backends = backends
    return _State.backends


def _cloud_run_backend() -> Backend | None:
    try:
        from controllers.providers.cloudrun import CloudRunProvider
    except ImportError:  # provider not installed in this build
        return None
    endpoint = _State.settings.cloudrun_endpoint
    provider: Backend = CloudRunProvider(api_endpoint=endpoint) if endpoint else CloudRunProvider()
    return provider


def _schedule_drift_check(body: kopf.Body, *, soon: bool = False) -> None:
    """Next full reconcile of this object: the drift period, or ~20 s while it is not Ready or
    an update was lost (level-based self-healing; an on.event failure is not retried by kopf)."""
    if soon:
        _State.next_drift_check[str(body.get("metadata", {}).get("uid"))] = (
            time.monotonic() + SOON_SECONDS + random.uniform(0, 5)
        )
        return
    annotations = body.get("metadata", {}).get("annotations") or {}
    try:
        interval = float(annotations.get(DRIFT_ANNOTATION, _State.settings.drift_check_seconds))
    except ValueError:
        interval = _State.settings.drift_check_seconds
    jitter = random.uniform(0, 0.1 * interval)
    _State.next_drift_check[str(body.get("metadata", {}).get("uid"))] = (
        time.monotonic() + interval + jitter
    )


async def _reconcile(body: kopf.Body, patch: kopf.Patch, retry: int) -> None:
    try:
        svc = _parse(body)
    except ValidationError as exc:
        patch.status.update(_invalid_status(body, exc))
        return
    outcome = await reconcile(svc, backends=await _backends(), now=_now(), retry=retry)
    if status_changed(svc.status, outcome.status) or outcome.writes:
        patch.status.update(status_patch(outcome.status))
    _post(body, outcome.events)
    _schedule_drift_check(body, soon=not is_true(outcome.status.conditions, READY))
    if outcome.retry_after is not None and outcome.error is not None:
        raise kopf.TemporaryError(outcome.error.message, delay=outcome.retry_after)


@kopf.on.create(GROUP, VERSION, PLURAL)
async def on_create(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    await _reconcile(body, patch, retry)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def on_update(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    await _reconcile(body, patch, retry)


@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_resume(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    await _reconcile(body, patch, retry)


@kopf.timer(GROUP, VERSION, PLURAL, interval=15.0, idle=5.0)
async def drift_check(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Runs the full reconcile when this object's drift-check time has come (cheap otherwise)."""
    uid = str(body.get("metadata", {}).get("uid"))
    due = _State.next_drift_check.get(uid)
    if due is None:
        _schedule_drift_check(body)
        return
    if time.monotonic() < due or body.get("metadata", {}).get("deletionTimestamp"):
        return
    await _reconcile(body, patch, retry=0)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def on_delete(body: kopf.Body, **_: Any) -> None:
    try:
        svc = _parse(body)
    except ValidationError:
        return  # nothing we could have created from an invalid spec
    _State.next_drift_check.pop(str(svc.metadata.uid), None)
    gone, event = await release(svc, backends=await _backends())
    _post(body, [event])
    if not gone:
        raise kopf.TemporaryError("waiting for the backend service to be deleted", delay=5)


async def _write_status(
    svc: XynergyService, status: XynergyServiceStatus, raw: dict[str, Any], events: list[Event]
) -> None:
    """Patch the status subresource, only when it changed; then post the events."""
    if status_changed(svc.status, status):
        client = await _client()
        async with _limit():
            await client.patch(
                XynergyServiceResource.Status,
                svc.metadata.name or "",
                {"status": status_patch(status)},
                namespace=svc.metadata.namespace,
                patch_type=PatchType.MERGE,
            )
    _post(kopf.Body(cast(kopf.RawBody, raw)), events)


def _owner_uid(deployment: kopf.Body) -> str | None:
    owners = deployment.get("metadata", {}).get("ownerReferences") or []
    return next((o.get("uid") for o in owners if o.get("kind") == "XynergyService"), None)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
async def on_owned_deployment(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A Deployment we own changed: correct drift at once and let status follow the rollout.

    kopf does not retry event handlers, so a failure here (apiserver overloaded, timeouts)
    brings the owner's next full reconcile forward instead of leaving its status stale.
    """
    meta = body.get("metadata", {})
    name = (meta.get("labels") or {}).get(SERVICE_LABEL)
    if not name or type is None:
        return  # the initial listing is covered by on_resume
    try:
        await _follow_deployment(body, type=type, name=name, namespace=meta.get("namespace"))
    except (ApiError, ProviderError, httpx2.HTTPError) as exc:
        uid = _owner_uid(body)
        if uid is not None:
            _schedule_drift_check(
                kopf.Body(cast(kopf.RawBody, {"metadata": {"uid": uid}})), soon=True
            )
        log.warning(
            "deployment %s/%s: status update deferred: %s", meta.get("namespace"), name, exc
        )


async def _follow_deployment(
    body: kopf.Body, *, type: str, name: str, namespace: str | None
) -> None:
    client = await _client()
    try:
        async with _limit():
            owner = await client.get(XynergyServiceResource, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return
        raise
    raw: dict[str, Any] = owner.to_dict()  # type: ignore[no-untyped-call]
    if raw.get("metadata", {}).get("deletionTimestamp"):
        return
    try:
        svc = XynergyService.model_validate(raw)
    except ValidationError:
        return
    backends = await _backends()
    provider = backends.get(BackendKind.KUBERNETES)
    if svc.spec.backend != BackendKind.KUBERNETES or not isinstance(provider, KubernetesProvider):
        return
    deployment = dict(body)
    if not svc.spec.paused and (type == "DELETED" or provider.drifted(svc, deployment)):
        outcome = await reconcile(svc, backends=backends, now=_now())
        status, events = outcome.status, outcome.events
    else:
        observed = status_from_deployment(svc, None if type == "DELETED" else deployment)
        status = compute_status(svc, observed=observed, error=None, now=_now())
        events = events_for(svc.status, status, writes=0, created=False)
    await _write_status(svc, status, raw, events)
    if not is_true(status.conditions, READY):
        _schedule_drift_check(kopf.Body(cast(kopf.RawBody, raw)), soon=True)
