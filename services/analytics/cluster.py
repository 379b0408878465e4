"""XynergyServices, ScalingPolicies and Rollouts of one tenant, read through the Kubernetes API
and parsed with the ``apis`` models (the one contract), and Rollouts created for ``deploy``.

An object belongs to the tenant named by its ``xynergy.io/tenant`` label; lists carry that
label selector, so the apiserver returns nothing of another tenant (unlabelled objects belong
to no tenant and are never shown).

The apiserver's transient answers (429, 5xx) are retried quietly: each retry is logged at
debug, and only giving up is a warning (the status code and the apiserver's message, never a
request or its headers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import httpx2  # lightkube's HTTP client (1.x): a watch refused at once raises its errors
from lightkube import ApiError as KubeApiError
from lightkube import AsyncClient as LightkubeClient
from lightkube.generic_resource import create_namespaced_resource
from pydantic import BaseModel, ValidationError

from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.rollout import Rollout
from apis.v1alpha1.scalingpolicy import ScalingPolicy
from apis.v1alpha1.xynergyservice import XynergyService
from services.common.errors import ApiError
from services.common.tenancy import valid_tenant_id

__all__ = [
    "TENANT_LABEL",
    "ClusterReader",
    "KubeClient",
    "Parsed",
    "on_watch_open",
    "transient_status",
]

log = logging.getLogger("xynergy.analytics")
TENANT_LABEL = "xynergy.io/tenant"
M = TypeVar("M", bound=BaseModel)


class KubeClient(Protocol):
    """What the reader needs of lightkube's ``AsyncClient``."""

    def list(self, res: Any, **kwargs: Any) -> Any: ...
    async def create(self, obj: Any, **kwargs: Any) -> Any: ...


def _resource(model: Any) -> Any:
    crd = model.crd
    return create_namespaced_resource(GROUP, VERSION, crd.kind, crd.plural)


def transient_status(exc: BaseException) -> int | None:
    """The status of an apiserver answer worth retrying (429, 5xx; a Status without a code
    counts as 500), or None. lightkube raises its ApiError for a JSON Status (a list's
    answer, a watch's ERROR event) and its HTTP client's HTTPStatusError for a watch refused
    at once: httpx2's since lightkube 1.0, httpx's before."""
    if isinstance(exc, KubeApiError):
        code = exc.status.code or 500
    elif isinstance(exc, (httpx2.HTTPStatusError, httpx.HTTPStatusError)):
        code = exc.response.status_code
    else:
        return None
    return code if code == 429 or code >= 500 else None


_on_watch_open: ContextVar[Callable[[], object] | None] = ContextVar(
    "xynergy_analytics_on_watch_open", default=None
)


@contextmanager
def on_watch_open(callback: Callable[[], object]) -> Iterator[None]:
    """Within the block, ``callback`` is called each time the apiserver answers a watch request
    made in this task with 200: the stream opened, the watch works, whether or not an event
    follows. lightkube's watch does not tell its caller: it re-opens a stream the apiserver
    ends (its timeout) by itself, and a stream of a kind with no objects stays silent; so the
    reader hooks its client's responses (:func:`_hook_watch_answers`). Set per task (each
    watch runs in its own)."""
    token = _on_watch_open.set(callback)
    try:
        yield
    finally:
        _on_watch_open.reset(token)


async def _watch_answered(response: httpx2.Response) -> None:
    """The reader's response hook: on every answer of its client, before the body is read; a
    watch request of this task answered 200 is told to its :func:`on_watch_open` callback."""
    callback = _on_watch_open.get()
    if (
        callback is not None
        and response.status_code == 200
        and response.request.url.params.get("watch") == "true"
    ):
        callback()


def _hook_watch_answers(client: Any) -> bool:
    """Add :func:`_watch_answered` to the response hooks of lightkube's HTTP client (reached
    through lightkube's internals, ``AsyncClient._client._client``: no public way shows a
    watch's 200); False when the client has none (a test's fake)."""
    http = getattr(getattr(client, "_client", None), "_client", None)
    if not isinstance(http, httpx2.AsyncClient):
        return False
    hooks = http.event_hooks
    if _watch_answered not in hooks["response"]:
        http.event_hooks = {**hooks, "response": [*hooks["response"], _watch_answered]}
    return True


@dataclass(frozen=True)
class Parsed:
    """An object parsed with its model, or the raw body and why it did not parse."""

    namespace: str
    name: str
    obj: Any
    raw: dict[str, Any]
    error: str = ""


class ClusterReader:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str = "",
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.namespace = namespace or "*"
        self.sleep = sleep
        self.kinds: dict[Any, Any] = {
            m: _resource(m) for m in (XynergyService, ScalingPolicy, Rollout)
        }
        if not _hook_watch_answers(client) and isinstance(client, LightkubeClient):
            log.warning(
                "lightkube's HTTP client not found: a watch's failures end only with an event"
            )

    async def _list(self, model: type[M], tenant: str | None) -> list[Parsed]:
        """The objects, retried briefly on the apiserver's transient answers (429, 5xx: e.g.
        "storage is (re)initializing" right after a CRD is established); then a 503. Retries
        log at debug (under load every list may see a 429), giving up at warning."""
        kind = model.__name__  # the apis model is named by its kind
        attempts = 4
        for attempt in range(1, attempts + 1):
            try:
                return await self._list_once(model, tenant)
            except KubeApiError as exc:
                code = transient_status(exc)
                if code is None:
                    raise ApiError(502, f"Kubernetes API: {exc.status.message}") from exc
                if attempt == attempts:
                    log.warning(
                        "list of %s: Kubernetes API answered %s %d times (%s); giving up",
                        kind,
                        code,
                        attempts,
                        exc.status.message,
                    )
                    raise ApiError(503, f"Kubernetes API: {exc.status.message}") from exc
                delay = 0.2 * 2 ** (attempt - 1)
                log.debug(
                    "list of %s: Kubernetes API answered %s (%s); retry %d in %.1fs",
                    kind,
                    code,
                    exc.status.message,
                    attempt,
                    delay,
                )
                await self.sleep(delay)
        raise AssertionError("unreachable")

    async def _list_once(self, model: type[M], tenant: str | None) -> list[Parsed]:
        selector = f"{TENANT_LABEL}={tenant}" if tenant is not None else TENANT_LABEL
        if tenant is not None and not valid_tenant_id(tenant):
            raise ValueError(f"tenant: expected a tenant id, got {tenant!r}")
        out = []
        async for item in self.client.list(
            self.kinds[model], namespace=self.namespace, labels=_selector(selector)
        ):
            raw = item.to_dict() if hasattr(item, "to_dict") else dict(item)
            meta = raw.get("metadata", {})
            try:
                obj: Any = model.model_validate(raw)
                error = ""
            except ValidationError as exc:
                obj, error = None, str(exc.errors(include_url=False)[:1])
            out.append(Parsed(meta.get("namespace", ""), meta.get("name", ""), obj, raw, error))
        return out

    async def services(self, tenant: str | None) -> list[Parsed]:
        """The tenant's XynergyServices (every tenant's when ``tenant`` is None)."""
        return await self._list(XynergyService, tenant)

    async def policies(self, tenant: str) -> list[Parsed]:
        return await self._list(ScalingPolicy, tenant)

    async def rollouts(self, tenant: str) -> list[Parsed]:
        return await self._list(Rollout, tenant)

    async def create_rollout(self, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Rollout (validated by the model first), labelled with the tenant."""
        body.setdefault("metadata", {}).setdefault("labels", {})[TENANT_LABEL] = tenant
        Rollout.model_validate(body)
        res = self.kinds[Rollout]
        try:
            created = await self.client.create(res(**body), namespace=body["metadata"]["namespace"])
        except KubeApiError as exc:
            raise ClusterError(exc.status.code or 502, exc.status.message or str(exc)) from exc
        out: dict[str, Any] = created.to_dict() if hasattr(created, "to_dict") else dict(created)
        return out


class ClusterError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _selector(text: str) -> dict[str, Any]:
    """lightkube's ``labels=`` form of ``k=v`` (equality) or ``k`` (exists)."""
    from lightkube import operators

    key, sep, value = text.partition("=")
    return {key: value} if sep else {key: operators.exists()}
