"""The route table from XynergyService objects in the cluster, listed then watched.

Each XynergyService contributes its ``spec.routes`` pointed at its ``status.url``, both read
through the ``apis`` models (group, version and plural come from there too); an object without
a URL yet contributes nothing. While a Rollout of a service routes through the gateway
(``status.traffic``), the service's routes get the Rollout's revisions as weighted upstreams
(sticky per user when ``spec.stickySessions``), and a blue-green ``previewRoute`` reaches the
preview revision. The source lists both kinds, yields a table, then watches both and yields a
new table whenever an event changes it (weights move without a restart). A gateway not allowed
to read Rollouts (403) keeps serving plain routes. Any error
(API server away, watch expired) leads to a re-list after a capped, jittered exponential backoff
(tenacity's, as the operator's retry policy), so the gateway keeps serving its last good table
meanwhile.

The Kubernetes client is injected (anything with lightkube's async ``list``/``watch``), which
is how the unit tests drive it; :func:`default_client` builds a lightkube ``AsyncClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection
from typing import Any, Protocol

import tenacity
from pydantic import ValidationError

from apis.v1alpha1.common import GROUP, VERSION, CrdInfo
from apis.v1alpha1.rollout import Rollout as RolloutModel
from apis.v1alpha1.xynergyservice import XynergyService as XynergyServiceModel
from apis.v1alpha1.xynergyservice import XynergyServiceStatus
from services.gateway.routing import Route, RouteTable, Upstream, routes_from_spec

__all__ = ["ClusterRouteSource", "Rollout", "XynergyService", "default_client"]

log = logging.getLogger("xynergy.gateway.routes")
Objects = dict[tuple[str, str], dict[str, Any]]


def _resource(crd: CrdInfo) -> Any:
    from lightkube.generic_resource import create_namespaced_resource

    return create_namespaced_resource(GROUP, VERSION, crd.kind, crd.plural)


XynergyService = _resource(XynergyServiceModel.crd)
Rollout = _resource(RolloutModel.crd)


class KubeClient(Protocol):
    def list(self, res: Any, *, namespace: str | None = None) -> AsyncIterable[Any]: ...

    def watch(
        self, res: Any, *, namespace: str | None = None
    ) -> AsyncIterable[tuple[str, Any]]: ...


def default_client() -> KubeClient:
    from lightkube import AsyncClient

    return AsyncClient()


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return obj.to_dict()  # type: ignore[no-any-return]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _created(obj: dict[str, Any]) -> str:
    """``metadata.creationTimestamp`` (RFC 3339 in UTC, so it sorts as text); an object
    without one sorts after every dated one."""
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "~")


def _namespace(route: Route) -> str:
    """Who owns a route of the cluster source: its object's namespace (service is ns/name)."""
    return route.service.partition("/")[0]


def _url(obj: dict[str, Any]) -> str | None:
    """``status.url`` read through the status model (None when absent or malformed)."""
    try:
        return XynergyServiceStatus.model_validate(obj.get("status") or {}).url
    except ValidationError:
        return None


def _forbidden(exc: Exception) -> bool:
    """The apiserver refused the kind (403: no RBAC; 404: its CRD is not installed)."""
    return getattr(getattr(exc, "status", None), "code", None) in (403, 404)


class _Held:
    """What an active Rollout does to its target's routes."""

    def __init__(self, rollout: RolloutModel, resolve: Callable[[str], str]) -> None:
        status, spec = rollout.status, rollout.spec
        traffic = (status.traffic if status else None) or []
        self.name = rollout.metadata.name or ""
        self.sticky = spec.sticky_sessions
        self.upstreams = tuple(
            Upstream(resolve(t.url), t.weight, t.revision) for t in traffic if t.tag != "preview"
        )
        preview = next((t for t in traffic if t.tag == "preview"), None)
        blue_green = spec.strategy.blue_green
        prefix = (blue_green.preview_route or "").rstrip("/") if blue_green else ""
        self.preview = (prefix, resolve(preview.url), preview.revision) if preview else None
        if not prefix:
            self.preview = None


def _held(rollouts: Objects, resolve: Callable[[str], str]) -> dict[tuple[str, str], _Held]:
    """(namespace, target) -> the Rollout holding its routes (the first by name)."""
    out: dict[tuple[str, str], _Held] = {}
    for key in sorted(rollouts):
        try:
            rollout = RolloutModel.model_validate(rollouts[key])
            held = _Held(rollout, resolve)
        except (ValidationError, ValueError) as exc:
            log.warning(
                "rollout skipped",
                extra={"fields": {"rollout": "/".join(key), "error": str(exc)[:200]}},
            )
            continue
        target = (key[0], rollout.spec.target_ref.name)
        if not held.upstreams and held.preview is None:
            continue
        if target in out:
            log.warning(
                "two rollouts hold one service; the first by name wins",
                extra={"fields": {"service": "/".join(target), "ignored": held.name}},
            )
            continue
        out[target] = held
    return out


class ClusterRouteSource:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str | None = None,
        namespaces: Collection[str] = (),
        max_backoff_seconds: float = 30.0,
        resolve: Callable[[str], str] | None = None,
    ) -> None:
        """``namespace`` is the one to watch (all when None); ``namespaces``, when not empty,
        the only ones whose routes are loaded. ``resolve`` maps an in-cluster URL to where
        this gateway reaches it (the identity inside a cluster; a test maps Service URLs onto
        local processes)."""
        self._client = client
        self._namespace = namespace or "*"
        self._allowed = frozenset(namespaces)
        self._max_backoff = max_backoff_seconds
        self._resolve = resolve or (lambda url: url)
        # attempt n waits in [base/2, base], base = min(max, 0.5 * 2**n): equal jitter
        self._wait = tenacity.wait_exponential(
            multiplier=0.25, max=max_backoff_seconds / 2
        ) + tenacity.wait_random_exponential(multiplier=0.25, max=max_backoff_seconds / 2)

    def _table(self, services: Objects, rollouts: Objects) -> RouteTable:
        held = _held(rollouts, self._resolve)
        routes: list[Route] = []
        # the oldest object first: RouteTable.build keeps the first route of a prefix, and,
        # owned by namespace, the paths under it, so a newer object cannot take a prefix (or a
        # longer one under it) over from another namespace, whatever its namespace's name
        for key in sorted(services, key=lambda k: (_created(services[k]), k)):
            if self._allowed and key[0] not in self._allowed:
                continue
            obj, hold = services[key], held.get(key)
            url = _url(obj)
            routes.extend(
                routes_from_spec(
                    service="/".join(key),
                    upstream=self._resolve(url) if url else None,
                    routes=(obj.get("spec") or {}).get("routes"),
                    upstreams=hold.upstreams if hold else (),
                    sticky=hold.sticky if hold else False,
                )
            )
            if hold and hold.preview and url:
                prefix, preview_url, revision = hold.preview
                service = "/".join(key)
                try:
                    routes.append(Route(prefix, preview_url, service, revision=revision))
                except ValueError as exc:  # one bad preview must not stop every route update
                    log.warning(
                        "preview route skipped",
                        extra={
                            "fields": {
                                "rollout": f"{key[0]}/{hold.name}",
                                "field": "spec.strategy.blueGreen.previewRoute"
                                if "prefix" in str(exc)
                                else "status.traffic[].url (preview)",
                                "error": str(exc)[:200],
                            }
                        },
                    )
        return RouteTable.build(routes, owner=_namespace)

    def _delay(self, failures: int) -> float:
        state = tenacity.RetryCallState(tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = failures
        return float(self._wait(state))

    async def _list(self, res: Any) -> Objects:
        objects: Objects = {}
        async for item in self._client.list(res, namespace=self._namespace):
            obj = _as_dict(item)
            objects[_key(obj)] = obj
        return objects

    async def _list_rollouts(self) -> Objects | None:
        """The Rollouts, or None when this gateway may not read them (plain routes only)."""
        try:
            return await self._list(Rollout)
        except Exception as exc:
            if not _forbidden(exc):
                raise
            log.warning(
                "cannot read Rollouts; serving plain routes",
                extra={"fields": {"error": str(exc)[:200]}},
            )
            return None

    async def _pump(self, res: Any, kind: str, queue: asyncio.Queue[tuple[str, str, Any]]) -> None:
        try:
            async for event, item in self._client.watch(res, namespace=self._namespace):
                await queue.put((kind, event, _as_dict(item)))
            await queue.put((kind, "ENDED", None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.put((kind, "ERROR", exc))

    async def _follow(self) -> AsyncIterator[RouteTable]:
        """List both kinds, yield the table, then a new one on each change; returns when a
        watch ends, raises when one fails."""
        services = await self._list(XynergyService)
        rollouts = await self._list_rollouts()
        table = self._table(services, rollouts or {})
        yield table
        current = table.routes
        queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._pump(XynergyService, "xs", queue))]
        if rollouts is not None:
            tasks.append(asyncio.create_task(self._pump(Rollout, "ro", queue)))
        try:
            while True:
                kind, event, obj = await queue.get()
                if event == "ERROR":
                    raise obj
                if event == "ENDED":
                    log.info("%s watch ended, re-listing", kind)
                    return
                objects = services if kind == "xs" else rollouts
                assert objects is not None
                if event == "DELETED":
                    objects.pop(_key(obj), None)
                else:
                    objects[_key(obj)] = obj
                table = self._table(services, rollouts or {})
                if table.routes != current:
                    current = table.routes
                    yield table
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def watch(self) -> AsyncIterator[RouteTable]:
        failures = 0
        while True:
            try:
                async for table in self._follow():
                    failures = 0
                    yield table
                await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = self._delay(failures)
                log.warning(
                    "watching XynergyService failed, re-listing",
                    extra={"fields": {"error": type(exc).__name__, "retry_in": round(delay, 2)}},
                )
                await asyncio.sleep(delay)
