"""Cloud Run backend: converge a XynergyService onto a Cloud Run service (Admin API v2).

Uses the `google-cloud-run` client (run_v2 ServicesClient and RevisionsClient, REST transport).
The clients are synchronous, so every call runs in `asyncio.to_thread`; retries and waits are
asyncio sleeps, so no thread is held while backing off.

How it converges (level-based, safe to repeat after a crash at any point):
- The Cloud Run service is `projects/{project}/locations/{region}/services/{metadata.name}`.
- The desired service is the existing one with the fields we manage overlaid (image, port,
  command/args, env values, cpu/memory, concurrency, instance bounds, service account, VPC
  connector, execution environment, startup probe from healthCheck, ingress, launch stage, the
  `managed-by=xynergy` label and the `xynergy.io/owner` annotation). Fields we do not manage
  (sidecars, volumes, timeout, traffic splits, other labels...) are left as they are.
- We write only when the managed fields differ (compare, don't blindly write), with the etag we
  read, and through the long-running operation the API returns.
- A template change names its revision `{name}-g{generation:05d}`: a retried or resumed apply
  of the same generation finds the template already in place and writes nothing, so it never
  creates a second revision.
- A service that exists but is not owned by this object (`xynergy.io/owner` annotation) is
  never touched: Stalled with a message saying how to adopt it.

Errors: 400/401/403/404 become `StalledError` carrying the API's own message; 429, 5xx,
timeouts and connection errors are retried with exponential backoff and jitter (bounded by
`RetryPolicy`) and then become `TransientError`; etag and create races are re-read and retried.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import google.auth
import google.auth.exceptions
import requests
from google.api import launch_stage_pb2
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import run_v2
from google.longrunning import operations_pb2

from apis.v1alpha1.xynergyservice import Backend as BackendKind
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.providers.base import (
    BackendStatus,
    ProviderError,
    StalledError,
    Traffic,
    TransientError,
)

__all__ = [
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "OWNER_ANNOTATION",
    "CloudRunProvider",
    "RetryPolicy",
    "classify_error",
    "desired_service",
    "managed_view",
    "revision_name",
    "service_path",
    "status_from_service",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MANAGED_BY_LABEL = "managed-by"
MANAGED_BY_VALUE = "xynergy"
OWNER_ANNOTATION = "xynergy.io/owner"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# Cloud Run service ids: start with a letter, lowercase letters, digits and hyphens, no trailing
# hyphen, fewer than 50 characters (CreateServiceRequest.service_id).
SERVICE_ID = re.compile(r"^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$")
PORT_NAME = "http1"

_INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
_EXECUTION_ENVIRONMENT = {
    "gen1": "EXECUTION_ENVIRONMENT_GEN1",
    "gen2": "EXECUTION_ENVIRONMENT_GEN2",
}
_LAUNCH_STAGE = {
    "GA": launch_stage_pb2.LaunchStage.GA,
    "BETA": launch_stage_pb2.LaunchStage.BETA,
    "ALPHA": launch_stage_pb2.LaunchStage.ALPHA,
}
_STATE = run_v2.Condition.State
_RETRYABLE: tuple[type[BaseException], ...] = (
    gexc.TooManyRequests,
    gexc.ServerError,
    gexc.DeadlineExceeded,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    google.auth.exceptions.TransportError,
)


# ---- pure parts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter", bounded by attempts and by total time.

    Attempt n (from 0) waits between base/2 and base, base = min(maximum, initial * multiplier**n),
    so waits grow while still spreading callers apart.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    deadline: float = 120.0
    """Seconds after the first attempt past which no retry is started."""
    max_attempts: int = 8

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        base = min(self.maximum, self.initial * self.multiplier**attempt)
        return base / 2 + rng.uniform(0, base / 2)


def service_path(svc: XynergyService) -> str:
    """The Cloud Run resource name; StalledError when the spec cannot name one."""
    cloud_run = svc.spec.cloud_run
    if svc.spec.backend != BackendKind.CLOUD_RUN or cloud_run is None:
        raise StalledError(
            "spec.backend is not cloudRun or spec.cloudRun is missing", reason="InvalidSpec"
        )
    name = svc.metadata.name or ""
    if not SERVICE_ID.fullmatch(name):
        raise StalledError(
            f"metadata.name {name!r} is not a valid Cloud Run service name: it must start with a "
            "letter, use only lowercase letters, digits and hyphens, not end with a hyphen, and "
            "be at most 49 characters",
            reason="InvalidName",
        )
    return f"projects/{cloud_run.project}/locations/{cloud_run.region}/services/{name}"


def revision_name(name: str, generation: int | None) -> str:
    """Revision name for a generation: `{name}-g00007` (at most 49 + 7 characters < 63)."""
    return f"{name}-g{generation or 0:05d}"


def owner_of(svc: XynergyService) -> str:
    """Value of the owner annotation: `namespace/name`."""
    return f"{svc.metadata.namespace or 'default'}/{svc.metadata.name}"


def _cpu(value: str) -> Decimal:
    try:
        return Decimal(value[:-1]) / 1000 if value.endswith("m") else Decimal(value)
    except InvalidOperation:
        return Decimal(-1)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6}
_MEMORY_UNITS |= {"G": 10**9, "T": 10**12}


def _memory(value: str) -> int | str:
    match = re.fullmatch(r"([0-9]+)([KMGT]i|[kMGT])?", value)
    if not match:
        return value
    return int(match.group(1)) * _MEMORY_UNITS.get(match.group(2) or "", 1)


def _cloud_run_cpu(svc: XynergyService, *, cpu: str, concurrency: int, gen1: bool) -> str:
    """Profile cpu below 1 is raised to 1 where Cloud Run requires it; explicit values are kept.

    Cloud Run refuses cpu < 1 with concurrency > 1 or with the gen2 environment. Profiles give
    Kubernetes-sized defaults (e.g. 500m), so a profile default is raised to "1"; a value the
    user set explicitly is sent as is and the API's refusal reported.
    """
    explicit = svc.spec.resources is not None and svc.spec.resources.cpu is not None
    if not explicit and _cpu(cpu) < 1 and (concurrency > 1 or not gen1):
        return "1"
    return cpu


def desired_service(svc: XynergyService, existing: run_v2.Service | None) -> run_v2.Service:
    """The service to write: `existing` (or a new one) with the managed fields overlaid.

    The template's revision name is left as in `existing`; the caller names a new revision when
    the managed template fields change. Raises StalledError for specs Cloud Run cannot express.
    """
    spec = svc.spec
    cloud_run = spec.cloud_run
    assert cloud_run is not None  # checked by service_path
    sizing = spec.sizing()
    gen1 = cloud_run.execution_environment == "gen1"

    env: list[run_v2.EnvVar] = []
    for var in spec.env or []:
        if var.secret_key_ref is not None or var.config_map_key_ref is not None:
            source = "secretKeyRef" if var.secret_key_ref is not None else "configMapKeyRef"
            raise StalledError(
                f"env {var.name}: {source} is not supported on the Cloud Run backend (Kubernetes "
                "Secrets and ConfigMaps are not visible to Cloud Run); use a literal value",
                reason="UnsupportedEnv",
            )
        env.append(run_v2.EnvVar(name=var.name, value=var.value or ""))

    out = run_v2.Service(existing) if existing is not None else run_v2.Service()
    out.labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    out.annotations[OWNER_ANNOTATION] = owner_of(svc)
    out.ingress = getattr(run_v2.IngressTraffic, _INGRESS[cloud_run.ingress])
    out.launch_stage = _LAUNCH_STAGE[cloud_run.launch_stage]
    out.scaling.min_instance_count = sizing.replicas if spec.replicas is not None else 0

    tpl = out.template
    tpl.max_instance_request_concurrency = sizing.concurrency
    tpl.scaling.min_instance_count = sizing.min_instances
    tpl.scaling.max_instance_count = sizing.max_instances
    tpl.execution_environment = getattr(
        run_v2.ExecutionEnvironment, _EXECUTION_ENVIRONMENT[cloud_run.execution_environment]
    )
    if cloud_run.service_account:
        tpl.service_account = cloud_run.service_account
    if cloud_run.vpc_connector:
        tpl.vpc_access.connector = cloud_run.vpc_connector
    else:
        tpl.vpc_access = run_v2.VpcAccess()

    container = run_v2.Container(tpl.containers[0]) if tpl.containers else run_v2.Container()
    container.image = spec.image
    container.command = list(spec.command or [])
    container.args = list(spec.args or [])
    container.env = env
    container.ports = [run_v2.ContainerPort(name=PORT_NAME, container_port=spec.port)]
    limits = dict(container.resources.limits)
    limits["cpu"] = _cloud_run_cpu(svc, cpu=sizing.cpu, concurrency=sizing.concurrency, gen1=gen1)
    limits["memory"] = sizing.memory
    container.resources.limits = limits
    if spec.health_check is not None:
        hc = spec.health_check
        container.startup_probe = run_v2.Probe(
            http_get=run_v2.HTTPGetAction(path=hc.path, port=spec.port),
            period_seconds=hc.period_seconds,
            timeout_seconds=hc.timeout_seconds,
            failure_threshold=hc.failure_threshold,
        )
    tpl.containers = [container, *tpl.containers[1:]]
    return out


def managed_view(service: run_v2.Service, svc: XynergyService) -> dict[str, Any]:
    """The fields of `service` this object manages, normalised, for comparison.

    Server defaults we do not manage (default service account, default startup probe, timeout,
    other labels) are excluded, so a service the API has filled in compares equal to the desired
    one. The revision name is not part of the view.
    """
    tpl = service.template
    container = tpl.containers[0] if tpl.containers else run_v2.Container()
    limits = container.resources.limits
    cloud_run = svc.spec.cloud_run
    view: dict[str, Any] = {
        "label": service.labels.get(MANAGED_BY_LABEL),
        "owner": service.annotations.get(OWNER_ANNOTATION),
        "ingress": int(service.ingress),
        "launch_stage": int(service.launch_stage),
        "service_min": service.scaling.min_instance_count,
        "template": {
            "image": container.image,
            "command": list(container.command),
            "args": list(container.args),
            "env": [(e.name, e.value, bool(e.value_source)) for e in container.env],
            "ports": [(p.name or PORT_NAME, p.container_port) for p in container.ports],
            "cpu": str(_cpu(limits.get("cpu", ""))),
            "memory": _memory(limits.get("memory", "")),
            "concurrency": tpl.max_instance_request_concurrency,
            "min": tpl.scaling.min_instance_count,
            "max": tpl.scaling.max_instance_count,
            "execution_environment": int(tpl.execution_environment),
            "vpc_connector": tpl.vpc_access.connector,
        },
    }
    if cloud_run is not None and cloud_run.service_account:
        view["template"]["service_account"] = tpl.service_account
    if svc.spec.health_check is not None:
        probe = container.startup_probe
        view["template"]["probe"] = (
            probe.http_get.path,
            probe.http_get.port,
            probe.period_seconds,
            probe.timeout_seconds,
            probe.failure_threshold,
        )
    return view


def _camel(words: str) -> str:
    return "".join(part.capitalize() for part in words.lower().split("_")) or "Unknown"


def _short(resource: str) -> str:
    return resource.rpartition("/")[2]


def status_from_service(service: run_v2.Service, *, writes: int = 0) -> BackendStatus:
    """What Cloud Run reports, as a BackendStatus; StalledError when the rollout failed."""
    cond = service.terminal_condition
    name = _short(service.name)
    latest_created = _short(service.latest_created_revision) or None
    latest_ready = _short(service.latest_ready_revision) or None
    traffic = tuple(
        Traffic(
            revision=_short(t.revision) or latest_ready or "",
            percent=t.percent,
            tag=t.tag or None,
        )
        for t in service.traffic_statuses
    )
    if service.delete_time:
        return BackendStatus(
            exists=True,
            ready=False,
            reason="Deleting",
            message=f"Cloud Run service {name} is being deleted",
            url=service.uri or None,
            latest_created_revision=latest_created,
            latest_ready_revision=latest_ready,
            traffic=traffic,
            writes=writes,
        )
    current = service.observed_generation == service.generation
    if not service.reconciling and cond.state == _STATE.CONDITION_FAILED:
        reason = cond.reason.name if cond.reason else cond.revision_reason.name
        raise StalledError(
            f"Cloud Run service {name}: {cond.message or 'rollout failed'}",
            reason=_camel(reason) if reason and "UNDEFINED" not in reason else "RevisionFailed",
        )
    ready = (
        not service.reconciling
        and current
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
    return BackendStatus(
        exists=True,
        ready=ready,
        reason=reason,
        message=message,
        url=service.uri or None,
        latest_created_revision=latest_created,
        latest_ready_revision=latest_ready,
        traffic=traffic,
        writes=writes,
    )


def api_message(exc: gexc.GoogleAPICallError) -> str:
    """The message the API sent (without the client's "VERB url:" prefix)."""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            message = response.json()["error"]["message"]
            if isinstance(message, str) and message:
                return message
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return str(exc.message)


def api_status(exc: gexc.GoogleAPICallError) -> str:
    """The canonical status the API sent (ABORTED, ALREADY_EXISTS, ...), or ""."""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            status = response.json()["error"]["status"]
            return status if isinstance(status, str) else ""
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    code = getattr(exc, "grpc_status_code", None)
    return code.name if code is not None else ""


def classify_error(exc: BaseException, *, what: str) -> ProviderError:
    """A client exception as StalledError (fix the spec or permissions) or TransientError."""
    if isinstance(exc, gexc.GoogleAPICallError):
        message = f"{what}: {api_message(exc)}"
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
            return StalledError(message, reason="PermissionDenied")
        if isinstance(exc, gexc.NotFound):
            return StalledError(message, reason="NotFound")
        if isinstance(exc, gexc.BadRequest):
            status = api_status(exc)
            return StalledError(message, reason=_camel(status) if status else "InvalidArgument")
        if isinstance(exc, gexc.Conflict):
            return TransientError(message, reason="Conflict")
        if isinstance(exc, gexc.TooManyRequests):
            return TransientError(message, reason="RateLimited")
        return TransientError(message, reason="ApiUnavailable")
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return StalledError(f"{what}: Google credentials rejected: {exc}", reason="NoCredentials")
    if isinstance(
        exc, requests.exceptions.RequestException | google.auth.exceptions.TransportError
    ):
        return TransientError(f"{what}: {type(exc).__name__}", reason="ApiUnreachable")
    return TransientError(f"{what}: {exc}", reason="ApiError")


# ---- the provider ----------------------------------------------------------------------------


class CloudRunProvider:
    """`Backend` for spec.backend == cloudRun, through the Cloud Run Admin API v2.

    Args:
        credentials: Google credentials; default: Application Default Credentials, or anonymous
            when `api_endpoint` is a plain-http URL (a local fake).
        api_endpoint: e.g. "http://127.0.0.1:8085" for the fake; default run.googleapis.com.
        retry: backoff for 429/5xx/timeouts on each API call.
        request_timeout: seconds for one HTTP request.
        operation_timeout: how long apply/delete wait for an operation before reporting
            "still deploying" (the next reconcile picks it up again).
        poll_interval: first wait between operation polls (grows 1.5x up to 5 s).
        sleep / rng: injectable for tests (backoff waits, jitter).
    """

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        api_endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        request_timeout: float = 30.0,
        operation_timeout: float = 60.0,
        poll_interval: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._credentials = credentials
        self._endpoint = api_endpoint
        self.retry = retry or RetryPolicy()
        self.request_timeout = request_timeout
        self.operation_timeout = operation_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._services: run_v2.ServicesClient | None = None
        self._revisions: run_v2.RevisionsClient | None = None
        self._clients_lock = asyncio.Lock()

    # ---- clients -----------------------------------------------------------------------------

    def _clients(self) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
        if self._services is None or self._revisions is None:
            credentials = self._credentials
            if credentials is None:
                if self._endpoint and self._endpoint.startswith("http://"):
                    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
                else:
                    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            options = ClientOptions(api_endpoint=self._endpoint) if self._endpoint else None
            self._services = run_v2.ServicesClient(
                credentials=credentials, transport="rest", client_options=options
            )
            self._revisions = run_v2.RevisionsClient(
                credentials=credentials, transport="rest", client_options=options
            )
        return self._services, self._revisions

    async def _ensure_clients(self) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
        """The clients, created in a thread (finding ADC may probe the metadata server)."""
        if self._services is not None and self._revisions is not None:
            return self._services, self._revisions
        async with self._clients_lock:
            try:
                return await asyncio.to_thread(self._clients)
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise StalledError(
                    f"no Google credentials for Cloud Run: {exc}", reason="NoCredentials"
                ) from exc

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one blocking API call in a thread, retrying 429/5xx/timeouts with backoff."""
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(fn)
            except _RETRYABLE as exc:
                delay = self.retry.delay(attempt, self._rng)
                attempt += 1
                elapsed = time.monotonic() - start
                if attempt >= self.retry.max_attempts or elapsed + delay > self.retry.deadline:
                    error = classify_error(exc, what=what)
                    raise TransientError(
                        f"{error.message} (gave up after {attempt} attempts)", reason=error.reason
                    ) from exc
                log.info("cloudrun %s failed (%s); retry %d in %.2fs", what, exc, attempt, delay)
                await self._sleep(delay)

    async def _get(self, path: str) -> run_v2.Service | None:
        services, _ = await self._ensure_clients()
        try:
            return await self._call(
                "get service",
                lambda: services.get_service(name=path, retry=None, timeout=self.request_timeout),
            )
        except gexc.NotFound:
            return None

    # ---- Backend -----------------------------------------------------------------------------

    async def observe(self, svc: XynergyService) -> BackendStatus:
        path = service_path(svc)
        try:
            existing = await self._get(path)
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"reading Cloud Run service {path}") from exc
        if existing is None:
            return BackendStatus(
                exists=False,
                ready=False,
                reason="NotFound",
                message=f"Cloud Run service {path} does not exist",
            )
        self._check_owner(existing, svc)
        return status_from_service(existing)

    async def apply(self, svc: XynergyService) -> BackendStatus:
        path = service_path(svc)
        desired_service(
            svc, None
        )  # StalledError for what Cloud Run cannot express, before any call
        try:
            return await self._apply(svc, path)
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"Cloud Run service {path}") from exc

    async def _apply(self, svc: XynergyService, path: str) -> BackendStatus:
        services, _ = await self._ensure_clients()
        parent, _, service_id = path.rpartition("/services/")
        writes = 0
        operation: operations_pb2.Operation | None = None
        for _attempt in range(4):
            existing = await self._get(path)
            if existing is None:
                desired = desired_service(svc, None)
                desired.template.revision = revision_name(service_id, svc.metadata.generation)
                try:
                    op = await self._call(
                        "create service",
                        functools.partial(
                            services.create_service,
                            parent=parent,
                            service=desired,
                            service_id=service_id,
                            retry=None,
                            timeout=self.request_timeout,
                        ),
                    )
                except gexc.Conflict:  # created meanwhile (or our lost response): re-read
                    continue
                writes += 1
                operation = op.operation
                log.info("cloudrun created %s (revision %s)", path, desired.template.revision)
                break
            self._check_owner(existing, svc)
            desired = desired_service(svc, existing)
            current_view = managed_view(existing, svc)
            desired_view = managed_view(desired, svc)
            if current_view == desired_view:
                break
            if current_view["template"] != desired_view["template"]:
                desired.template.revision = await self._free_revision_name(
                    path, revision_name(service_id, svc.metadata.generation)
                )
            desired.etag = existing.etag
            try:
                op = await self._call(
                    "update service",
                    functools.partial(
                        services.update_service,
                        service=desired,
                        retry=None,
                        timeout=self.request_timeout,
                    ),
                )
            except (gexc.Conflict, gexc.NotFound) as exc:  # etag race or deleted: re-read
                log.info("cloudrun update of %s raced (%s); re-reading", path, api_message(exc))
                continue
            writes += 1
            operation = op.operation
            changed = sorted(k for k in desired_view if desired_view[k] != current_view[k])
            log.info("cloudrun updated %s (%s)", path, ", ".join(changed))
            break
        else:
            raise TransientError(
                f"Cloud Run service {path} kept changing under us; will retry", reason="Conflict"
            )
        if operation is not None:
            done = await self._wait(operation)
            if done is not None and done.HasField("error"):
                # The service's terminal condition says why; a failed rollout is Stalled there.
                after = await self._get(path)
                if after is not None:
                    return status_from_service(after, writes=writes)
                raise classify_error(
                    gexc.from_grpc_status(done.error.code, done.error.message),  # type: ignore[no-untyped-call]
                    what=f"Cloud Run operation for {path}",
                )
        final = await self._get(path)
        if final is None:
            return BackendStatus(
                exists=False,
                ready=False,
                reason="NotFound",
                message=f"Cloud Run service {path} disappeared while being deployed",
                writes=writes,
            )
        return status_from_service(final, writes=writes)

    async def _free_revision_name(self, path: str, base: str) -> str:
        """`base`, or `base-1`, `base-2`... when a revision of that name already exists.

        A revision keeps its configuration for life; if the template drifted after our revision
        of this generation was made (edited elsewhere), the corrected template needs a new name.
        """
        _, revisions = await self._ensure_clients()
        listed = await self._call(
            "list revisions",
            lambda: list(
                revisions.list_revisions(parent=path, retry=None, timeout=self.request_timeout)
            ),
        )
        taken = {_short(r.name) for r in listed}
        if base not in taken:
            return base
        n = 1
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def _wait(self, operation: operations_pb2.Operation) -> operations_pb2.Operation | None:
        """Poll the operation until done; None when `operation_timeout` passes first."""
        if operation.done:
            return operation
        services, _ = await self._ensure_clients()
        deadline = time.monotonic() + self.operation_timeout
        interval = self.poll_interval
        name = operation.name
        while time.monotonic() < deadline:
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            current = await self._call(
                "get operation",
                lambda: services.get_operation(
                    request={"name": name}, retry=None, timeout=self.request_timeout
                ),
            )
            if current.done:
                return current
            interval = min(interval * 1.5, 5.0)
        log.info("cloudrun operation %s still running after %.0fs", name, self.operation_timeout)
        return None

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        path = service_path(svc)
        try:
            return await self._delete(svc, path, orphan=orphan)
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"deleting Cloud Run service {path}") from exc

    async def _delete(self, svc: XynergyService, path: str, *, orphan: bool) -> bool:
        services, _ = await self._ensure_clients()
        for _attempt in range(4):
            existing = await self._get(path)
            if existing is None:
                return True
            if existing.annotations.get(OWNER_ANNOTATION) != owner_of(svc):
                log.info("cloudrun %s is not owned by %s; leaving it", path, owner_of(svc))
                return True
            if orphan:
                released = run_v2.Service(existing)
                released.labels.pop(MANAGED_BY_LABEL, None)
                released.annotations.pop(OWNER_ANNOTATION, None)
                try:
                    await self._call(
                        "release service",
                        functools.partial(
                            services.update_service,
                            service=released,
                            retry=None,
                            timeout=self.request_timeout,
                        ),
                    )
                except (gexc.Conflict, gexc.NotFound):
                    continue
                log.info("cloudrun released %s (orphaned, left running)", path)
                return True
            if existing.delete_time:  # a delete is already under way
                return False
            try:
                op = await self._call(
                    "delete service",
                    functools.partial(
                        services.delete_service,
                        request=run_v2.DeleteServiceRequest(name=path, etag=existing.etag),
                        retry=None,
                        timeout=self.request_timeout,
                    ),
                )
            except gexc.NotFound:
                return True
            except gexc.Conflict:
                continue
            log.info("cloudrun deleting %s", path)
            done = await self._wait(op.operation)
            return done is not None and not done.HasField("error")
        raise TransientError(f"Cloud Run service {path} kept changing under us", reason="Conflict")

    @staticmethod
    def _check_owner(existing: run_v2.Service, svc: XynergyService) -> None:
        owner = existing.annotations.get(OWNER_ANNOTATION)
        if owner == owner_of(svc):
            return
        name = _short(existing.name)
        if owner:
            message = f"Cloud Run service {name} is managed by XynergyService {owner}"
        else:
            message = (
                f"Cloud Run service {name} already exists and is not managed by Xynergy; delete "
                f"it, or adopt it by setting the annotation {OWNER_ANNOTATION}={owner_of(svc)} "
                "on the Cloud Run service"
            )
        raise StalledError(message, reason="AlreadyExists")
