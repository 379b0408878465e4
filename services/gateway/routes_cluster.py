"""The route table from XynergyService objects in the cluster, listed then watched.

Each XynergyService contributes its ``spec.routes`` pointed at its ``status.url``, both read
through the ``apis`` models (group, version and plural come from there too); an object without
a URL yet contributes nothing. The source lists once,
yields a table, then watches and yields a new table whenever an event changes it. Any error
(API server away, watch expired) leads to a re-list after a capped, jittered exponential backoff
(tenacity's, as the operator's retry policy), so the gateway keeps serving its last good table
meanwhile.

The Kubernetes client is injected (anything with lightkube's async ``list``/``watch``), which
is how the unit tests drive it; :func:`default_client` builds a lightkube ``AsyncClient``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol

import tenacity
from pydantic import ValidationError

from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.xynergyservice import XynergyService as XynergyServiceModel
from apis.v1alpha1.xynergyservice import XynergyServiceStatus
from services.gateway.routing import RouteTable, routes_from_spec

__all__ = ["ClusterRouteSource", "XynergyService", "default_client"]

log = logging.getLogger("xynergy.gateway.routes")


def _resource() -> Any:
    from lightkube.generic_resource import create_namespaced_resource

    crd = XynergyServiceModel.crd
    return create_namespaced_resource(GROUP, VERSION, crd.kind, crd.plural)


XynergyService = _resource()


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


def _url(obj: dict[str, Any]) -> str | None:
    """``status.url`` read through the status model (None when absent or malformed)."""
    try:
        return XynergyServiceStatus.model_validate(obj.get("status") or {}).url
    except ValidationError:
        return None


class ClusterRouteSource:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str | None = None,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._client = client
        self._namespace = namespace or "*"
        self._max_backoff = max_backoff_seconds
        # attempt n waits in [base/2, base], base = min(max, 0.5 * 2**n): equal jitter
        self._wait = tenacity.wait_exponential(
            multiplier=0.25, max=max_backoff_seconds / 2
        ) + tenacity.wait_random_exponential(multiplier=0.25, max=max_backoff_seconds / 2)

    def _table(self, objects: dict[tuple[str, str], dict[str, Any]]) -> RouteTable:
        routes = []
        for key in sorted(objects):
            obj = objects[key]
            routes.extend(
                routes_from_spec(
                    service="/".join(key),
                    upstream=_url(obj),
                    routes=(obj.get("spec") or {}).get("routes"),
                )
            )
        return RouteTable.build(routes)

    def _delay(self, failures: int) -> float:
        state = tenacity.RetryCallState(tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = failures
        return float(self._wait(state))

    async def watch(self) -> AsyncIterator[RouteTable]:
        failures = 0
        while True:
            objects: dict[tuple[str, str], dict[str, Any]] = {}
            try:
                async for item in self._client.list(XynergyService, namespace=self._namespace):
                    obj = _as_dict(item)
                    objects[_key(obj)] = obj
                table = self._table(objects)
                yield table
                failures = 0
                current = table.routes
                async for event, item in self._client.watch(
                    XynergyService, namespace=self._namespace
                ):
                    obj = _as_dict(item)
                    if event == "DELETED":
                        objects.pop(_key(obj), None)
                    else:
                        objects[_key(obj)] = obj
                    table = self._table(objects)
                    if table.routes != current:
                        current = table.routes
                        yield table
                log.info("XynergyService watch ended, re-listing")
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
