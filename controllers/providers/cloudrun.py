"""Cloud Run provider: the Cloud Run Admin API v2 (run_v2 ServicesClient and RevisionsClient,
REST transport). It knows Cloud Run, not kinds: a reconciler hands it a resource path and a
`plan` (built by the kind's resources module) saying what the service should be.

The clients are synchronous, so every call runs in `asyncio.to_thread`. Retries are
google-api-core's own `AsyncRetry` (429, 5xx, timeouts, connection errors), configured from
the operator's `RetryPolicy`: it waits on the event loop, so no thread is held while backing
off. Waiting for a long-running operation polls with the injectable `sleep`.

How `apply` converges (level-based, safe to repeat after a crash at any point): read the
service; ask the plan what to write (nothing, the service, or the service with a new revision
name); write with the etag we read, through the long-running operation the API returns; re-read
on an etag or create race. A revision keeps its configuration for life, so a revision name that
is taken (the template drifted after our revision was made) gets a `-1`, `-2`... suffix.
A rollout an internal error interrupted (`interrupted`: the operation failed half-way, its
revision exists but is not ready) is deployed again by writing the service unchanged: the API
redeploys that revision, so the template stays the same and no second revision is made.

Errors: 400/401/403/404 become `StalledError` carrying the API's own message; what still fails
after the retries becomes `TransientError`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import run_v2
from google.longrunning import operations_pb2

from controllers.core.errors import ProviderError, StalledError, TransientError
from controllers.core.retry import RetryPolicy, Sleep

__all__ = [
    "CloudRunProvider",
    "Plan",
    "Traffic",
    "api_message",
    "call_google",
    "classify_error",
    "google_credentials",
    "interrupted",
    "short_name",
    "traffic_targets",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_RETRYABLE: tuple[type[BaseException], ...] = (
    gexc.TooManyRequests,
    gexc.ServerError,
    gexc.DeadlineExceeded,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    google.auth.exceptions.TransportError,
)

Plan = Callable[[run_v2.Service | None], tuple[run_v2.Service, str | None] | None]
"""existing (None: absent) -> None (nothing to write) or (service to write, new revision name
or None when the template did not change)."""


Traffic = tuple[tuple[str | None, int, str | None], ...]
"""A traffic split as (revision short name or None for "the latest ready", percent, tag)."""

_LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def traffic_targets(split: Traffic) -> list[run_v2.TrafficTarget]:
    """The API's traffic targets for `split`."""
    return [
        run_v2.TrafficTarget(type_=_LATEST, percent=percent, tag=tag or "")
        if revision is None
        else run_v2.TrafficTarget(
            type_=_REVISION, revision=revision, percent=percent, tag=tag or ""
        )
        for revision, percent, tag in split
    ]


def traffic_of(service: run_v2.Service) -> Traffic:
    """The service's configured split (`traffic`, not yet `traffic_statuses`), as `Traffic`."""
    return tuple(
        (None if t.type_ == _LATEST else short_name(t.revision), t.percent, t.tag or None)
        for t in service.traffic
    )


_INTERNAL = run_v2.Condition.CommonReason.INTERNAL


def interrupted(service: run_v2.Service) -> bool:
    """The service's last rollout failed on an internal error (reason INTERNAL): retrying the
    same template may succeed, unlike a revision that failed on its own (REVISION_FAILED)."""
    cond = service.terminal_condition
    return (
        not service.reconciling
        and cond.state == run_v2.Condition.State.CONDITION_FAILED
        and cond.reason == _INTERNAL
    )


def short_name(resource: str) -> str:
    """The last segment of a resource name (`.../services/crm` -> `crm`)."""
    return resource.rpartition("/")[2]


class _GaveUpError(Exception):
    """Raised from api-core's on_error callback once the attempt limit is reached."""

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(str(last))
        self.last = last
        self.attempts = attempts


def _camel(words: str) -> str:
    return "".join(part.capitalize() for part in words.lower().split("_")) or "Unknown"


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


async def call_google(what: str, fn: Callable[[], T], *, retry: RetryPolicy) -> T:
    """One blocking Google API call in a thread, under api-core's AsyncRetry (the policy's
    bounds); after the last attempt the error becomes TransientError."""
    attempts = 0

    def on_error(exc: Exception) -> None:
        nonlocal attempts
        attempts += 1
        if attempts >= retry.max_attempts:
            raise _GaveUpError(exc, attempts)
        log.info("%s failed (%s); retry %d", what, type(exc).__name__, attempts)

    google_retry = retry.google_retry(
        predicate=lambda exc: isinstance(exc, _RETRYABLE), on_error=on_error
    )
    try:
        result: T = await google_retry(asyncio.to_thread)(fn)
    except _GaveUpError as gave_up:
        error = classify_error(gave_up.last, what=what)
        raise TransientError(
            f"{error.message} (gave up after {gave_up.attempts} attempts)", reason=error.reason
        ) from gave_up.last
    except gexc.RetryError as exc:  # the policy's deadline passed
        error = classify_error(exc.cause or exc, what=what)
        raise TransientError(
            f"{error.message} (gave up after {attempts + 1} attempts)", reason=error.reason
        ) from exc
    return result


def google_credentials(credentials: Credentials | None, endpoint: str | None) -> Credentials:
    """`credentials`, else anonymous for a plain-http endpoint (a local fake), else ADC."""
    if credentials is not None:
        return credentials
    if endpoint and endpoint.startswith("http://"):
        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    found, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return found


class CloudRunProvider:
    """Cloud Run services through the Admin API v2.

    Args:
        credentials: Google credentials; default: Application Default Credentials, or anonymous
            when `api_endpoint` is a plain-http URL (a local fake).
        api_endpoint: e.g. "http://127.0.0.1:8085" for the fake; default run.googleapis.com.
        retry: bounds of the client's retry of 429/5xx/timeouts on each API call.
        request_timeout: seconds for one HTTP request.
        operation_timeout: how long apply/delete wait for an operation before reporting
            "still deploying" (the next converge picks it up again).
        poll_interval: first wait between operation polls (grows 1.5x up to 5 s).
        sleep: how operation polls wait (injectable for tests).
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
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._credentials = credentials
        self._endpoint = api_endpoint
        self.retry = retry or RetryPolicy()
        self.request_timeout = request_timeout
        self.operation_timeout = operation_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._services: run_v2.ServicesClient | None = None
        self._revisions: run_v2.RevisionsClient | None = None
        self._clients_lock = asyncio.Lock()

    # ---- clients and calls -------------------------------------------------------------------

    def _clients(self) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
        if self._services is None or self._revisions is None:
            credentials = google_credentials(self._credentials, self._endpoint)
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
        return await call_google(what, fn, retry=self.retry)

    async def _get(self, path: str) -> run_v2.Service | None:
        services, _ = await self._ensure_clients()
        try:
            return await self._call(
                "get service",
                lambda: services.get_service(name=path, retry=None, timeout=self.request_timeout),
            )
        except gexc.NotFound:
            return None

    # ---- operations --------------------------------------------------------------------------

    async def get(self, path: str) -> run_v2.Service | None:
        """The service, or None when it does not exist."""
        try:
            return await self._get(path)
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"reading Cloud Run service {path}") from exc

    async def apply(self, path: str, plan: Plan) -> tuple[run_v2.Service | None, int]:
        """Converge the service at `path` to what `plan` says; returns (service after, writes).

        The service is None when it vanished while being deployed."""
        try:
            return await self._apply(path, plan)
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"Cloud Run service {path}") from exc

    async def revision(self, path: str, name: str) -> run_v2.Revision | None:
        """Revision `name` of the service at `path`, or None when it does not exist."""
        _, revisions = await self._ensure_clients()
        full = f"{path}/revisions/{name}"
        try:
            return await self._call(
                "get revision",
                lambda: revisions.get_revision(name=full, retry=None, timeout=self.request_timeout),
            )
        except gexc.NotFound:
            return None
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"reading Cloud Run revision {full}") from exc

    async def create_revision(
        self,
        path: str,
        name: str,
        build: Callable[[run_v2.Service], run_v2.Service],
    ) -> tuple[run_v2.Revision | None, int]:
        """Revision `name`, created by writing `build(existing service)` (its template named
        `name`, its traffic as the caller wants it) unless it exists already: safe to repeat
        after a crash, never a second revision. Returns (the revision, writes)."""
        found = await self.revision(path, name)
        if found is not None:
            return found, 0

        def plan(existing: run_v2.Service | None) -> tuple[run_v2.Service, None]:
            if existing is None:
                raise StalledError(f"Cloud Run service {path} does not exist", reason="NotFound")
            service = build(existing)
            service.template.revision = name
            return service, None

        _, writes = await self.apply(path, plan)
        return await self.revision(path, name), writes

    async def set_traffic(self, path: str, split: Traffic) -> tuple[run_v2.Service | None, int]:
        """Route the service's traffic as `split` (template untouched: no new revision);
        no write when it already is. Returns (the service after, writes)."""

        def plan(existing: run_v2.Service | None) -> tuple[run_v2.Service, None] | None:
            if existing is None:
                raise StalledError(f"Cloud Run service {path} does not exist", reason="NotFound")
            if traffic_of(existing) == split:
                return None
            service = run_v2.Service(existing)
            service.traffic = traffic_targets(split)
            return service, None

        return await self.apply(path, plan)

    async def set_template(
        self, path: str, template: run_v2.RevisionTemplate
    ) -> tuple[run_v2.Service | None, int]:
        """Make `template` (naming an existing revision of the same configuration, so no new
        revision is made) the service's template, traffic untouched; no write when it is."""

        def plan(existing: run_v2.Service | None) -> tuple[run_v2.Service, None] | None:
            if existing is None:
                raise StalledError(f"Cloud Run service {path} does not exist", reason="NotFound")
            if existing.template == template:
                return None
            service = run_v2.Service(existing)
            service.template = template
            return service, None

        return await self.apply(path, plan)

    async def set_service(
        self,
        path: str,
        template: run_v2.RevisionTemplate | None,
        split: Traffic,
        *,
        again: bool = False,
    ) -> tuple[run_v2.Service | None, int]:
        """Make `template` (naming an existing revision, so no new revision is made; None:
        leave the template) the service's template and route its traffic as `split`, in one
        write: Cloud Run carries both out or neither. No write when both already are, unless
        `again` (the caller re-issues a write of its own whose operation failed).

        The template names one fixed revision, so a 409 ALREADY_EXISTS ("Revision named ...
        with different configuration already exists") is no race to re-read: StalledError
        reason `RevisionConflict` at once (`apply` keeps re-reading it, as a revision name it
        picked may be taken by a concurrent write). Returns (the service after, writes)."""

        def plan(existing: run_v2.Service | None) -> tuple[run_v2.Service, None] | None:
            if existing is None:
                raise StalledError(f"Cloud Run service {path} does not exist", reason="NotFound")
            same = (template is None or existing.template == template) and traffic_of(
                existing
            ) == split
            if same and not again:
                return None
            service = run_v2.Service(existing)
            if template is not None:
                service.template = template
            service.traffic = traffic_targets(split)
            return service, None

        try:
            return await self._apply(path, plan, fixed_revision=True)
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"Cloud Run service {path}") from exc

    async def _apply(
        self, path: str, plan: Plan, *, fixed_revision: bool = False
    ) -> tuple[run_v2.Service | None, int]:
        writes = 0
        operation: operations_pb2.Operation | None = None
        for _attempt in range(4):
            existing = await self._get(path)
            wanted = plan(existing)
            if wanted is None and existing is not None and interrupted(existing):
                log.info("cloudrun %s: rollout interrupted; deploying it again", path)
                wanted = (run_v2.Service(existing), None)
            if wanted is None:
                break
            service, revision = wanted
            if revision is not None:
                service.template.revision = (
                    revision if existing is None else await self._free_revision(path, revision)
                )
            try:
                operation = await self._write(path, service, existing)
            except gexc.Conflict as exc:
                if fixed_revision and existing is not None and api_status(exc) == "ALREADY_EXISTS":
                    raise StalledError(
                        f"Cloud Run service {path}: {api_message(exc)}", reason="RevisionConflict"
                    ) from exc
                log.info("cloudrun write of %s raced (%s); re-reading", path, api_message(exc))
                continue
            except gexc.NotFound as exc:  # a race: re-read and plan again
                log.info("cloudrun write of %s raced (%s); re-reading", path, api_message(exc))
                continue
            writes += 1
            break
        else:
            raise TransientError(
                f"Cloud Run service {path} kept changing under us; will retry", reason="Conflict"
            )
        if operation is not None:
            done = await self._wait(operation)
            if done is not None and done.HasField("error"):
                after = await self._get(path)  # its terminal condition says why
                if after is None:
                    raise classify_error(
                        gexc.from_grpc_status(done.error.code, done.error.message),  # type: ignore[no-untyped-call]
                        what=f"Cloud Run operation for {path}",
                    )
                return after, writes
        return await self._get(path), writes

    async def _write(
        self, path: str, service: run_v2.Service, existing: run_v2.Service | None
    ) -> operations_pb2.Operation:
        services, _ = await self._ensure_clients()
        if existing is None:
            parent, _, service_id = path.rpartition("/services/")
            op = await self._call(
                "create service",
                functools.partial(
                    services.create_service,
                    parent=parent,
                    service=service,
                    service_id=service_id,
                    retry=None,
                    timeout=self.request_timeout,
                ),
            )
            log.info("cloudrun created %s (revision %s)", path, service.template.revision)
            return op.operation
        service.etag = existing.etag
        op = await self._call(
            "update service",
            functools.partial(
                services.update_service,
                service=service,
                retry=None,
                timeout=self.request_timeout,
            ),
        )
        log.info("cloudrun updated %s", path)
        return op.operation

    async def _free_revision(self, path: str, base: str) -> str:
        """`base`, or `base-1`, `base-2`... when a revision of that name already exists."""
        _, revisions = await self._ensure_clients()
        listed = await self._call(
            "list revisions",
            lambda: list(
                revisions.list_revisions(parent=path, retry=None, timeout=self.request_timeout)
            ),
        )
        taken = {short_name(r.name) for r in listed}
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
            await self._sleep(min(interval, max(0.0, deadline - time.monotonic())))
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

    async def delete(
        self,
        path: str,
        *,
        owned: Callable[[run_v2.Service], bool],
        release: Callable[[run_v2.Service], run_v2.Service] | None = None,
    ) -> bool:
        """Delete the service if `owned` says it is ours (or, with `release`, write the
        released service instead and leave it running); True once it is gone or let go."""
        try:
            return await self._delete(path, owned=owned, release=release)
        except (gexc.GoogleAPICallError, google.auth.exceptions.RefreshError) as exc:
            raise classify_error(exc, what=f"deleting Cloud Run service {path}") from exc

    async def _delete(
        self,
        path: str,
        *,
        owned: Callable[[run_v2.Service], bool],
        release: Callable[[run_v2.Service], run_v2.Service] | None,
    ) -> bool:
        services, _ = await self._ensure_clients()
        for _attempt in range(4):
            existing = await self._get(path)
            if existing is None:
                return True
            if not owned(existing):
                log.info("cloudrun %s is not ours; leaving it", path)
                return True
            try:
                if release is not None:
                    await self._call(
                        "release service",
                        functools.partial(
                            services.update_service,
                            service=release(existing),
                            retry=None,
                            timeout=self.request_timeout,
                        ),
                    )
                    log.info("cloudrun released %s (orphaned, left running)", path)
                    return True
                if existing.delete_time:  # a delete is already under way
                    return False
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
