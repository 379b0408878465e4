"""The scaled XynergyService: read it, and set its instances through the scale subresource.

Both backends are acted on the same way, as `kubectl scale` or an HPA would: the policy patches
`xynergyservices/<name>/scale` `spec.replicas`, and the XynergyService controller carries it to
the backend (the Deployment's replicas on Kubernetes; on Cloud Run the service-level minimum
instances through the Cloud Run provider, Cloud Run scaling above it up to the service's
maximum). The policy never writes the Deployment or the Cloud Run service itself, so the two
controllers cannot fight over a field.

A sync reads its target from the operator's own watch of XynergyServices (`TargetCache`, fed
by the ScalingPolicy handlers: the listing at start, then every change) rather than with a GET:
at a thousand policies on a 30 s interval that is 33 GETs a second the apiserver and the
operator no longer pay (a GET over TLS costs the operator more CPU than the whole decision).
A target the watch has not delivered is read with a GET, as is the first read after this
operator scaled it (until the watch brings the scaled object), and a target the watch
reported deleted is gone from the cache, so the GET reports it missing.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType
from pydantic import ValidationError

from apis.v1alpha1.xynergyservice import ResolvedSizing, XynergyService
from controllers.core.context import FIELD_MANAGER
from controllers.core.controller import Kind
from controllers.core.errors import StalledError, TransientError
from controllers.core.status import spec_error
from controllers.metrics import backend_call
from controllers.providers.kubernetes import api_error

__all__ = [
    "TARGETS",
    "NotAppliedError",
    "ScaleTarget",
    "Target",
    "TargetCache",
    "TargetClient",
    "parse_target",
]

TARGETS = "scalingpolicy.targets"
"""The operator context's provider name of the targets' cache (handlers feed it, syncs read)."""


@dataclass(frozen=True)
class Target:
    """What a sync needs of the target."""

    service: XynergyService
    sizing: ResolvedSizing
    replicas_managers: frozenset[str] | None = None
    """The field managers that own spec.replicas (metadata.managedFields: an entry of the
    main resource or of its scale subresource); None when not known (the watch's cache
    keeps no managedFields)."""

    def ours(self, replicas: int) -> bool:
        """Whether spec.replicas is `replicas` and this operator's write (its field manager
        owns it: a scale or restore that changed it; a person's write that changed it since
        took it over). False when not known."""
        return (
            self.service.spec.replicas == replicas
            and self.replicas_managers is not None
            and FIELD_MANAGER in self.replicas_managers
        )

    @property
    def replicas(self) -> int:
        """Instances asked for now (spec.replicas, else the resolved default): HPA's current."""
        return self.sizing.replicas

    @property
    def backend(self) -> str:
        return str(self.service.spec.backend)

    @property
    def project(self) -> str | None:
        cloud_run = getattr(self.service.spec, "cloud_run", None)
        return getattr(cloud_run, "project", None)


class NotAppliedError(TransientError):
    """A write the apiserver refused with a conflict (409): nothing was applied (retry)."""


class ScaleTarget(Protocol):
    """Reads and scales targets (the apiserver here; a table in unit tests)."""

    async def read(self, namespace: str, name: str) -> Target:
        """The target, or StalledError / TransientError."""
        ...

    async def reread(self, namespace: str, name: str) -> Target:
        """The target as the apiserver holds it now (never a cached version), with the
        owners of its spec.replicas (`Target.replicas_managers`)."""
        ...

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set the target's spec.replicas; NotAppliedError when refused with a conflict."""
        ...

    async def restore(
        self, namespace: str, name: str, *, expected: int, replicas: int | None
    ) -> bool:
        """Set the target's spec.replicas to `replicas` (None: unset it) only while it is
        `expected`, atomically; False when it is not (someone changed it)."""
        ...


def replicas_managers(body: Mapping[str, Any]) -> frozenset[str] | None:
    """The managers owning spec.replicas in the body's metadata.managedFields (entries of
    the main resource or of the scale subresource); None when the body has none."""
    entries = (body.get("metadata") or {}).get("managedFields")
    if not isinstance(entries, list):
        return None
    owners = set()
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("subresource") not in (None, "", "scale"):
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec")
        if isinstance(spec, Mapping) and "f:replicas" in spec:
            owners.add(str(entry.get("manager")))
    return frozenset(owners)


def parse_target(body: Mapping[str, Any]) -> Target:
    """The target from a XynergyService body (with the owners of its spec.replicas when the
    body has managedFields); StalledError InvalidTarget if it is not one."""
    try:
        svc = XynergyService.model_validate(dict(body))
    except ValidationError as exc:
        name = (body.get("metadata") or {}).get("name")
        raise StalledError(
            f"target XynergyService {name} is invalid: {spec_error(exc)}", reason="InvalidTarget"
        ) from exc
    return Target(svc, svc.spec.sizing(), replicas_managers(body))


@dataclass
class _Seen:
    body: dict[str, Any]
    generation: int
    target: Target | None = None


class TargetCache:
    """XynergyServices as the watch last delivered them, by (namespace, name): what a sync
    reads of its target (spec and identity; status, managedFields and annotations are not
    kept), parsed on the first read of each version.

    After this operator scales a target, versions up to the generation it read are stale
    (the watch may still deliver events from before the scale): they are not served until
    the watch brings a later generation."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._read: dict[tuple[str, str], int] = {}
        self._stale: dict[tuple[str, str], int] = {}

    def observe(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        """A watch event of a XynergyService."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if deleted:
            for kept in (self._seen, self._read, self._stale):
                kept.pop(key, None)
            return
        generation = int(meta.get("generation") or 0)
        if generation > self._stale.get(key, -1):
            self._stale.pop(key, None)
        ids = {k: meta[k] for k in ("name", "namespace", "uid", "generation") if k in meta}
        spec = copy.deepcopy(dict(body.get("spec") or {}))
        head = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind")}
        self._seen[key] = _Seen({**head, "metadata": ids, "spec": spec}, generation)

    def get(self, namespace: str, name: str) -> Target | None:
        """The target as last watched (None when the watch has not delivered it, or only
        versions from before this operator scaled it)."""
        key = (namespace, name)
        seen = self._seen.get(key)
        if seen is None or key in self._stale:
            return None
        if seen.target is None:
            seen.target = parse_target(seen.body)
        return seen.target

    def note_read(self, namespace: str, name: str, target: Target) -> None:
        """The generation a sync decided from (what a scale makes stale)."""
        self._read[(namespace, name)] = int(target.service.metadata.generation or 0)

    def scaled(self, namespace: str, name: str) -> None:
        """This operator changed the target: versions up to the one read are stale."""
        key = (namespace, name)
        self._stale[key] = self._read.get(
            key, self._seen[key].generation if key in self._seen else 0
        )

    def __len__(self) -> int:
        return len(self._seen)


class TargetClient:
    """The target from the watch's cache, else through the apiserver (bounded by the
    operator's API semaphore)."""

    def __init__(
        self,
        client: AsyncClient,
        kind: Kind,
        *,
        limit: asyncio.Semaphore,
        cache: TargetCache | None = None,
    ) -> None:
        self._client = client
        self._resource: Any = kind.resource
        self._limit = limit
        self.cache = cache if cache is not None else TargetCache()

    async def read(self, namespace: str, name: str) -> Target:
        """The target; StalledError TargetNotFound / InvalidTarget, TransientError otherwise."""
        target = self.cache.get(namespace, name) or await self._get(namespace, name)
        self.cache.note_read(namespace, name, target)
        return target

    async def reread(self, namespace: str, name: str) -> Target:
        """The target read from the apiserver, whatever the watch's cache holds (with its
        managedFields' owners of spec.replicas)."""
        return await self._get(namespace, name)

    async def _get(self, namespace: str, name: str) -> Target:
        try:
            async with self._limit:
                with backend_call("kubernetes", "get_xynergyservice"):
                    obj = await self._client.get(self._resource, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                raise StalledError(
                    f"target XynergyService {namespace}/{name} does not exist",
                    reason="TargetNotFound",
                ) from exc
            raise api_error(exc, what=f"reading XynergyService {name}") from exc
        except httpx2.TransportError as exc:
            raise TransientError(
                f"reading XynergyService {name}: {type(exc).__name__}", reason="ApiUnreachable"
            ) from exc
        return parse_target(obj.to_dict())

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set spec.replicas through the scale subresource as the operator's field manager
        (`FIELD_MANAGER`, explicitly: what tells its writes from a person's in managedFields;
        the cached target is stale until the watch brings the scaled object: reads meanwhile
        GET). A 409 applied nothing:
        NotAppliedError (a TransientError), not a write that may have landed."""
        self.cache.scaled(namespace, name)
        try:
            async with self._limit:
                with backend_call("kubernetes", "patch_scale"):
                    await self._client.patch(
                        self._resource.Scale,
                        name,
                        {"spec": {"replicas": replicas}},
                        namespace=namespace,
                        patch_type=PatchType.MERGE,
                        field_manager=FIELD_MANAGER,
                    )
        except ApiError as exc:
            if exc.status.code == 409:
                raise NotAppliedError(
                    f"scaling XynergyService {name}: {exc.status.message or exc}",
                    reason="Conflict",
                ) from exc
            raise api_error(exc, what=f"scaling XynergyService {name}") from exc
        except httpx2.TransportError as exc:
            raise TransientError(
                f"scaling XynergyService {name}: {type(exc).__name__}", reason="ApiUnreachable"
            ) from exc

    async def restore(
        self, namespace: str, name: str, *, expected: int, replicas: int | None
    ) -> bool:
        """A JSON patch whose `test` op makes it atomic: spec.replicas goes back to `replicas`
        (removed when None) only while the apiserver still holds `expected`; False when the
        test fails (someone else wrote spec.replicas since). The apiserver's 422 for a failed
        `test` says only "the server rejected our request due to an error in our request",
        so a 422 is read as a failed test only when a re-read shows another value; else it
        is another refusal (e.g. a validation rule of the XynergyService): StalledError with
        the apiserver's message."""
        self.cache.scaled(namespace, name)
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/spec/replicas", "value": expected},
            {"op": "remove", "path": "/spec/replicas"}
            if replicas is None
            else {"op": "replace", "path": "/spec/replicas", "value": replicas},
        ]
        try:
            async with self._limit:
                with backend_call("kubernetes", "patch_xynergyservice"):
                    await self._client.patch(
                        self._resource,
                        name,
                        ops,
                        namespace=namespace,
                        patch_type=PatchType.JSON,
                        field_manager=FIELD_MANAGER,
                    )
        except ApiError as exc:
            if exc.status.code == 422 and await self._changed(namespace, name, expected):
                return False
            raise api_error(exc, what=f"restoring XynergyService {name}") from exc
        except httpx2.TransportError as exc:
            raise TransientError(
                f"restoring XynergyService {name}: {type(exc).__name__}",
                reason="ApiUnreachable",
            ) from exc
        return True

    async def _changed(self, namespace: str, name: str, expected: int) -> bool:
        """Whether the target's spec.replicas, read now, is no longer `expected`."""
        target = await self._get(namespace, name)
        return target.service.spec.replicas != expected
