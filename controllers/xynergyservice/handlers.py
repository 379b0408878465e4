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
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Iterator, Mapping
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
from controllers.xynergyservice.reconciler import Outcome, reconcile, release
from controllers.xynergyservice.resources import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNED_SELECTOR,
    SERVICE_LABEL,
)
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
DRIFT_TICK_SECONDS = 5.0
XynergyServiceResource = create_namespaced_resource(GROUP, VERSION, "XynergyService", PLURAL)

log = logging.getLogger(__name__)


class _State:
    """Per-process clients and drift-check timing (recomputed after a restart; not state that
    must survive one: a restart resumes every object anyway)."""

    client: AsyncClient | None = None
    limit: asyncio.Semaphore | None = None
    settings: OperatorSettings = OperatorSettings()
    backends: dict[BackendKind, Backend] = {}
    # uid -> (due on the monotonic clock, namespace, name)
    next_drift_check: dict[str, tuple[float, str, str]] = {}
    drift_task: asyncio.Task[None] | None = None
    locks: dict[str, asyncio.Lock] = {}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse(body: kopf.Body) -> XynergyService:
    return XynergyService.model_validate(dict(body))


def _post(body: kopf.Body, events: list[Event]) -> None:
    for ev in events:
        kopf.event(body, type=ev.type, reason=ev.reason, message=ev.message)


def _invalid_status(body: Mapping[str, Any], exc: ValidationError) -> dict[str, Any]:
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
async def _reset_clients(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Clients belong to one event loop: start each operator run with fresh ones.

    The Deployment watch asks the apiserver for our Deployments only: the handler's own
    ``labels=`` filter is applied by kopf after the event arrives, so without a server-side
    selector the operator would receive, parse and queue every Deployment in the cluster."""
    settings.watching.label_selectors["apps", "deployments"] = OWNED_SELECTOR
    _State.client = None
    _State.backends = {}
    _State.next_drift_check = {}
    _State.locks = {}
    _State.settings = current_settings()
    _State.limit = asyncio.Semaphore(_State.settings.api_concurrency)
    await _client()
    _State.drift_task = asyncio.create_task(_drift_loop(), name="xynergyservice-drift-check")


@kopf.on.cleanup()
async def _close_clients(**_: Any) -> None:
    if _State.drift_task is not None:
        _State.drift_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _State.drift_task
        _State.drift_task = None
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


class _Backends(Mapping[BackendKind, Backend]):
    """Backends built on first use: the Cloud Run client library (tens of MB) is imported only
    when a cloudRun object appears."""

    def __getitem__(self, kind: BackendKind) -> Backend:
        if kind not in _State.backends:
            if kind == BackendKind.KUBERNETES:
                assert _State.client is not None, "the client is created at startup"
                _State.backends[kind] = KubernetesProvider(_State.client, limit=_limit())
            elif kind == BackendKind.CLOUD_RUN and (provider := _cloud_run_backend()) is not None:
                _State.backends[kind] = provider
            else:
                raise KeyError(kind)
        return _State.backends[kind]

    def __iter__(self) -> Iterator[BackendKind]:
        return iter(BackendKind)

    def __len__(self) -> int:
        return len(BackendKind)


def _backends() -> _Backends:
    return _Backends()


def _cloud_run_backend() -> Backend | None:
    try:
        from controllers.providers.cloudrun import CloudRunProvider
    except ImportError:  # provider not installed in this build
        return None
    endpoint = _State.settings.cloudrun_endpoint
    provider: Backend = CloudRunProvider(api_endpoint=endpoint) if endpoint else CloudRunProvider()
    return provider


def _schedule_drift_check(body: Mapping[str, Any], *, soon: bool = False) -> None:
    """Next full reconcile of this object: the drift period (+ up to 10 % jitter), or ~20 s
    while it is not Ready or an update was lost (an on.event failure is not retried by kopf)."""
    meta = body.get("metadata", {})
    if soon:
        delay = SOON_SECONDS + random.uniform(0, 5)
    else:
        annotations = meta.get("annotations") or {}
        try:
            interval = float(annotations.get(DRIFT_ANNOTATION, _State.settings.drift_check_seconds))
        except ValueError:
            interval = _State.settings.drift_check_seconds
        delay = interval + random.uniform(0, 0.1 * interval)
    _State.next_drift_check[str(meta.get("uid"))] = (
        time.monotonic() + delay,
        str(meta.get("namespace")),
        str(meta.get("name")),
    )


async def _reconcile(body: kopf.Body, retry: int) -> None:
    meta = body.get("metadata", {})
    outcome = await _converge(
        namespace=meta.get("namespace"),
        name=meta.get("name"),
        uid=str(meta.get("uid")),
        retry=retry,
    )
    if outcome is not None and outcome.retry_after is not None and outcome.error is not None:
        raise kopf.TemporaryError(outcome.error.message, delay=outcome.retry_after)


async def _converge(
    *,
    namespace: str,
    name: str,
    uid: str,
    retry: int = 0,
    deployment: dict[str, Any] | None = None,
    event_type: str | None = None,
) -> Outcome | None:
    """The one path every trigger takes, serialized per object: read the latest object,
    converge it (or, for an unchanged owned Deployment, only follow its status), write status
    when it changed, post events, schedule the next drift check.

    Serializing matters: a status computed before a Deployment event must never be written
    after the status that event produced."""
    async with _State.locks.setdefault(uid, asyncio.Lock()):
        client = await _client()
        try:
            async with _limit():
                obj = await client.get(XynergyServiceResource, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        raw: dict[str, Any] = obj.to_dict()  # type: ignore[no-untyped-call]
        if raw.get("metadata", {}).get("deletionTimestamp"):
            return None
        try:
            svc = XynergyService.model_validate(raw)
        except ValidationError as exc:
            await _patch_status(namespace, name, _invalid_status(raw, exc))
            return None
        backends = _backends()
        if deployment is not None:
            if svc.spec.backend != BackendKind.KUBERNETES:
                return None
            provider = backends[BackendKind.KUBERNETES]
            assert isinstance(provider, KubernetesProvider)
            drifted = event_type == "DELETED" or provider.drifted(svc, deployment)
            if svc.spec.paused or not drifted:
                observed = status_from_deployment(
                    svc, None if event_type == "DELETED" else deployment
                )
                status = compute_status(svc, observed=observed, error=None, now=_now())
                status.last_reconcile_time = svc.status.last_reconcile_time if svc.status else None
                events = events_for(svc.status, status, writes=0, created=False)
                await _write_status(svc, status, raw, events)
                _schedule_drift_check(raw, soon=not is_true(status.conditions, READY))
                return None
        outcome = await reconcile(svc, backends=backends, now=_now(), retry=retry)
        await _write_status(svc, outcome.status, raw, outcome.events)
        _schedule_drift_check(raw, soon=not is_true(outcome.status.conditions, READY))
        return outcome


@kopf.on.create(GROUP, VERSION, PLURAL)
async def on_create(body: kopf.Body, retry: int, **_: Any) -> None:
    await _reconcile(body, retry)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def on_update(body: kopf.Body, retry: int, **_: Any) -> None:
    await _reconcile(body, retry)


@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_resume(body: kopf.Body, retry: int, **_: Any) -> None:
    await _reconcile(body, retry)


async def _drift_loop() -> None:
    """One loop for every object (not a kopf timer per object: a task each costs memory at
    a thousand objects). Reconciles the objects whose drift-check time has come; it must
    never die, so every failure reschedules that object and is logged."""
    while True:
        await asyncio.sleep(DRIFT_TICK_SECONDS)
        now = time.monotonic()
        due = [
            (uid, ns, name) for uid, (at, ns, name) in _State.next_drift_check.items() if at <= now
        ]
        for uid, ns, name in due:
            _State.next_drift_check.pop(uid, None)
            try:
                await _converge(namespace=ns, name=name, uid=uid)
            except asyncio.CancelledError:
                raise
            except Exception:
                _State.next_drift_check[uid] = (time.monotonic() + SOON_SECONDS, ns, name)
                log.exception(
                    "drift check of %s/%s failed; retrying in %ss", ns, name, SOON_SECONDS
                )


def _needs_finalizer(spec: kopf.Spec, **_: Any) -> bool:
    """Kubernetes children with deletionPolicy Delete go by garbage collection (owner
    references): no finalizer, no extra write. Cloud Run, or Orphan, need us at deletion."""
    return spec.get("backend") == "cloudRun" or spec.get("deletionPolicy") == "Orphan"


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_needs_finalizer)
async def on_delete(body: kopf.Body, **_: Any) -> None:
    try:
        svc = _parse(body)
    except ValidationError:
        return  # nothing we could have created from an invalid spec
    _State.next_drift_check.pop(str(svc.metadata.uid), None)
    _State.locks.pop(str(svc.metadata.uid), None)
    gone, event = await release(svc, backends=_backends())
    _post(body, [event])
    if not gone:
        raise kopf.TemporaryError("waiting for the backend service to be deleted", delay=5)


async def _patch_status(namespace: str | None, name: str, status: dict[str, Any]) -> None:
    client = await _client()
    async with _limit():
        await client.patch(
            XynergyServiceResource.Status,
            name,
            {"status": status},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )


async def _write_status(
    svc: XynergyService,
    status: XynergyServiceStatus,
    raw: dict[str, Any],
    events: list[Event],
) -> None:
    """Patch the status subresource when it changed; then post the events."""
    if status_changed(svc.status, status):
        await _patch_status(svc.metadata.namespace, svc.metadata.name or "", status_patch(status))
    _post(kopf.Body(cast(kopf.RawBody, raw)), events)


def _owner_uid(deployment: kopf.Body) -> str | None:
    owners = deployment.get("metadata", {}).get("ownerReferences") or []
    return next((o.get("uid") for o in owners if o.get("kind") == "XynergyService"), None)


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def on_owned_deployment(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A Deployment we own changed: correct drift at once and let status follow the rollout.

    kopf does not retry event handlers, so a failure here (apiserver overloaded, timeouts)
    brings the owner's next full reconcile forward instead of leaving its status stale.
    """
    meta = body.get("metadata", {})
    name = (meta.get("labels") or {}).get(SERVICE_LABEL)
    uid = _owner_uid(body)
    if not name or uid is None or type is None:
        return  # not ours any more (orphaned), or the initial listing (on_resume covers it)
    namespace = meta.get("namespace")
    try:
        await _converge(
            namespace=namespace, name=name, uid=uid, deployment=dict(body), event_type=type
        )
    except (ApiError, ProviderError, httpx2.HTTPError) as exc:
        _schedule_drift_check(
            {"metadata": {"uid": uid, "namespace": namespace, "name": name}}, soon=True
        )
        log.warning("deployment %s/%s: status update deferred: %s", namespace, name, exc)
