"""Kubernetes provider: read, apply and delete child objects with server-side apply under our
field manager, writing only when the live object lacks a field we manage.

It knows Kubernetes, not kinds: a reconciler hands it built objects (plain dicts, what
server-side apply sends) and gets back what the apiserver holds. Every API call goes through
one semaphore shared with the status writer (`XYNERGY_API_CONCURRENCY`) and is retried with the
operator's retry policy on transport errors, 429 and 5xx; what still fails becomes
`TransientError`, and 400/403/404/422 become `StalledError` with the apiserver's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2  # lightkube's transport: timeouts and connection errors are its exceptions
from lightkube import ApiError, AsyncClient, codecs
from lightkube.core.resource_registry import resource_registry
from lightkube.types import CascadeType, OnErrorAction, OnErrorResult, PatchType

from controllers.core.context import FIELD_MANAGER
from controllers.core.errors import StalledError, TransientError
from controllers.core.retry import RetryPolicy, Sleep
from controllers.metrics import backend_call
from controllers.providers.kubediff import is_subset

__all__ = ["Applied", "KubernetesProvider", "api_error"]

T = TypeVar("T")
log = logging.getLogger(__name__)

# Service applies in flight at once (see KubernetesProvider).
SERVICE_APPLY_CONCURRENCY = 4
_RETRY_CODES = frozenset({429, 500, 502, 503, 504})


def api_error(exc: ApiError, *, what: str) -> StalledError | TransientError:
    """An apiserver refusal as StalledError (400/403/404/422) or TransientError."""
    code = exc.status.code or 0
    message = f"{what}: {exc.status.message or exc}"
    if code in (400, 403, 404, 422):
        return StalledError(message, reason="ApiRejected" if code != 403 else "Forbidden")
    return TransientError(message, reason="ApiUnavailable")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiError):
        return (exc.status.code or 0) in _RETRY_CODES
    return isinstance(exc, httpx2.TransportError)


@dataclass(frozen=True)
class Applied:
    """An object after apply: what the apiserver holds, and whether we wrote it."""

    body: dict[str, Any]
    wrote: bool


class KubernetesProvider:
    """Children in the cluster, compared before they are written.

    Service applies also queue on a small limit of their own first: the apiserver allocates
    cluster IPs one at a time, so more of them in flight only wait longer there, holding slots
    that Deployment applies (which start the Pods) and status writes could use.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        field_manager: str = FIELD_MANAGER,
        limit: asyncio.Semaphore | None = None,
        service_limit: int = SERVICE_APPLY_CONCURRENCY,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._field_manager = field_manager
        self._limit = limit or asyncio.Semaphore(32)
        self._service_limit = asyncio.Semaphore(service_limit)
        self._retry = retry or RetryPolicy(initial=0.2, maximum=2.0, deadline=10.0, max_attempts=3)
        self._sleep = sleep

    async def _call(
        self, method: str, what: str, call: Callable[[], Awaitable[T]], *, queue: Any = None
    ) -> T:
        """One bounded, measured, retried API call; failures become provider errors."""
        try:
            async for attempt in self._retry.retrying(retry_if=_retryable, sleep=self._sleep):
                with attempt:
                    async with queue or contextlib.nullcontext(), self._limit:
                        with backend_call("kubernetes", method):
                            return await call()
        except ApiError as exc:
            raise api_error(exc, what=what) from exc
        except httpx2.TransportError as exc:
            raise TransientError(
                f"{what}: {type(exc).__name__} talking to the apiserver", reason="ApiUnreachable"
            ) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        resource: Any = resource_registry.load(api_version, kind)

        async def read() -> dict[str, Any] | None:
            try:
                obj = await self._client.get(resource, name, namespace=namespace)
            except ApiError as exc:
                if exc.status.code == 404:
                    return None
                raise
            data: dict[str, Any] = obj.to_dict()
            return data

        return await self._call(f"get_{kind.lower()}", f"reading {kind} {name}", read)

    async def list(
        self, api_version: str, kind: str, namespace: str | None, *, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace selected by `labels` (a server-side selector)."""
        resource: Any = resource_registry.load(api_version, kind)

        async def read() -> list[dict[str, Any]]:
            items = self._client.list(resource, namespace=namespace, labels=dict(labels))
            return [obj.to_dict() async for obj in items]

        return await self._call(f"list_{kind.lower()}", f"listing {kind}s", read)

    async def apply(self, desired: Mapping[str, Any], live: dict[str, Any] | None) -> Applied:
        """Apply `desired` unless `live` (what the caller read, None if absent) has it."""
        if live is not None and is_subset(desired, live):
            return Applied(live, wrote=False)
        kind = desired["kind"]
        name = desired["metadata"]["name"]

        async def write() -> dict[str, Any]:
            applied = await self._client.apply(
                codecs.from_dict(dict(desired)), field_manager=self._field_manager, force=True
            )
            after: dict[str, Any] = applied.to_dict()  # type: ignore[no-untyped-call]
            return after

        queue = self._service_limit if kind == "Service" else None
        body = await self._call(
            f"apply_{kind.lower()}", f"applying {kind} {name}", write, queue=queue
        )
        return Applied(body, wrote=True)

    async def remove_owned(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        *,
        owner_uid: str,
        orphan: bool,
    ) -> None:
        """Delete the child if `owner_uid` owns it, or with `orphan` only drop that owner
        reference (the garbage collector then leaves it running). Others' objects are left."""
        live = await self.get(api_version, kind, name, namespace)
        if live is None:
            return
        owners = live.get("metadata", {}).get("ownerReferences") or []
        if not any(o.get("uid") == owner_uid for o in owners):
            return
        resource: Any = resource_registry.load(api_version, kind)
        if orphan:
            keep = [o for o in owners if o.get("uid") != owner_uid]
            patch = {"metadata": {"ownerReferences": keep}}
            await self._call(
                f"release_{kind.lower()}",
                f"releasing {kind} {name}",
                lambda: self._client.patch(
                    resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE
                ),
            )
            return

        async def delete() -> None:
            try:
                await self._client.delete(
                    resource, name, namespace=namespace, cascade=CascadeType.BACKGROUND
                )
            except ApiError as exc:
                if exc.status.code != 404:  # already gone is what we wanted
                    raise

        await self._call(f"delete_{kind.lower()}", f"deleting {kind} {name}", delete)

    async def label(
        self, api_version: str, kind: str, live: Mapping[str, Any], labels: Mapping[str, str]
    ) -> bool:
        """Add `labels` to the object `live` (as read) unless it has them: a merge patch of
        metadata.labels only, so nothing else of someone else's object is touched, and an
        object deleted meanwhile is not recreated. True when written; False when there was
        nothing to do, the object is gone, or we may not patch it (logged, not an error)."""
        meta = live.get("metadata") or {}
        have = meta.get("labels") or {}
        if all(have.get(k) == v for k, v in labels.items()):
            return False
        name, namespace = str(meta.get("name")), meta.get("namespace")
        resource: Any = resource_registry.load(api_version, kind)
        patch = {"metadata": {"labels": dict(labels)}}

        async def write() -> bool:
            try:
                await self._client.patch(
                    resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE
                )
            except ApiError as exc:
                if exc.status.code in (403, 404):
                    log.info("not labelling %s %s/%s: %s", kind, namespace, name, exc)
                    return False
                raise
            return True

        return await self._call(f"label_{kind.lower()}", f"labelling {kind} {name}", write)

    async def watch_forever(
        self,
        api_version: str,
        kind: str,
        *,
        labels: Mapping[str, str],
        namespace: str | None,
        changed: Callable[[str, dict[str, Any]], Awaitable[bool | None]],
        what: str,
        missed: str,
        restart_seconds: float = 5.0,
        fields: Mapping[str, str] | None = None,
        listed: bool = False,
    ) -> None:
        """`watch` for the operator's lifetime, handing each change to `changed`: a watch that
        fails is listed and watched again after `restart_seconds`; one the operator may not
        open (403, RBAC) is given up with a warning naming `what` and `missed` (what happens
        to the changes instead). `changed` answering True ends the watch (a watch for one
        object to appear); `fields` and `listed` are `watch`'s."""
        while True:
            try:
                async for event, body in self.watch(
                    api_version, kind, labels=labels, namespace=namespace, fields=fields,
                    listed=listed,
                ):  # fmt: skip
                    if await changed(event, body):
                        return
            except ApiError as exc:
                if exc.status.code == 403:
                    log.warning("not watching %s (%s): %s", what, exc, missed)
                    return
                log.info("%s watch failed (%s); restarting", what, exc)
            except Exception as exc:  # a broken connection: list and watch again
                log.info("%s watch failed (%s: %s); restarting", what, type(exc).__name__, exc)
            await asyncio.sleep(restart_seconds)

    async def watch(
        self,
        api_version: str,
        kind: str,
        *,
        labels: Mapping[str, str],
        namespace: str | None = None,
        retry_seconds: float = 5.0,
        fields: Mapping[str, str] | None = None,
        listed: bool = False,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Changes of the objects of a kind in `namespace` (None: all) selected by `labels` (and
        `fields`, e.g. `metadata.name`) on the apiserver, from now on: the current ones are
        listed first and reported as ADDED only when `listed` (a watch for an object that
        must not miss one created just before it started). A broken stream is resumed (after
        410 Gone, from a new listing); 403 ends the watch."""
        resource: Any = resource_registry.load(api_version, kind)

        def on_error(exc: Exception, count: int) -> OnErrorResult:
            if isinstance(exc, ApiError) and exc.status.code == 403:
                return OnErrorResult(OnErrorAction.RAISE)
            log.info("watch of %s interrupted (%s); resuming", kind, exc)
            return OnErrorResult(OnErrorAction.RETRY, sleep=min(retry_seconds * count, 60.0))

        where = namespace or "*"
        selectors: dict[str, Any] = {"labels": dict(labels) or None, "fields": fields or None}
        listing = self._client.list(resource, namespace=where, **selectors)
        async for obj in listing:
            if listed:
                yield "ADDED", obj.to_dict()
        version = listing.resourceVersion
        async for event, obj in self._client.watch(
            resource, namespace=where, resource_version=version, on_error=on_error, **selectors
        ):
            yield event, obj.to_dict()
