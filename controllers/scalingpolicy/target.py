"""The scaled XynergyService: read it, and set its instances through the scale subresource.

Both backends are acted on the same way, as `kubectl scale` or an HPA would: the policy patches
`xynergyservices/<name>/scale` `spec.replicas`, and the XynergyService controller carries it to
the backend (the Deployment's replicas on Kubernetes; on Cloud Run the service-level minimum
instances through the Cloud Run provider, Cloud Run scaling above it up to the service's
maximum). The policy never writes the Deployment or the Cloud Run service itself, so the two
controllers cannot fight over a field.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType
from pydantic import ValidationError

from apis.v1alpha1.xynergyservice import ResolvedSizing, XynergyService
from controllers.core.controller import Kind
from controllers.core.errors import StalledError, TransientError
from controllers.core.status import spec_error
from controllers.metrics import backend_call
from controllers.providers.kubernetes import api_error

__all__ = ["ScaleTarget", "Target", "TargetClient"]


@dataclass(frozen=True)
class Target:
    """What a sync needs of the target."""

    service: XynergyService
    sizing: ResolvedSizing

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


class ScaleTarget(Protocol):
    """Reads and scales targets (the apiserver here; a table in unit tests)."""

    async def read(self, namespace: str, name: str) -> Target:
        """The target, or StalledError / TransientError."""
        ...

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set the target's spec.replicas."""
        ...


class TargetClient:
    """The target through the apiserver (bounded by the operator's API semaphore)."""

    def __init__(self, client: AsyncClient, kind: Kind, *, limit: asyncio.Semaphore) -> None:
        self._client = client
        self._resource: Any = kind.resource
        self._limit = limit

    async def read(self, namespace: str, name: str) -> Target:
        """The target; StalledError TargetNotFound / InvalidTarget, TransientError otherwise."""
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
        try:
            svc = XynergyService.model_validate(obj.to_dict())
        except ValidationError as exc:
            raise StalledError(
                f"target XynergyService {name} is invalid: {spec_error(exc)}",
                reason="InvalidTarget",
            ) from exc
        return Target(svc, svc.spec.sizing())

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set spec.replicas through the scale subresource."""
        try:
            async with self._limit:
                with backend_call("kubernetes", "patch_scale"):
                    await self._client.patch(
                        self._resource.Scale,
                        name,
                        {"spec": {"replicas": replicas}},
                        namespace=namespace,
                        patch_type=PatchType.MERGE,
                    )
        except ApiError as exc:
            raise api_error(exc, what=f"scaling XynergyService {name}") from exc
        except httpx2.TransportError as exc:
            raise TransientError(
                f"scaling XynergyService {name}: {type(exc).__name__}", reason="ApiUnreachable"
            ) from exc
