"""The contract between the XynergyService reconciler and a backend (Kubernetes or Cloud Run).

A backend converges one XynergyService (`apply`), reports what it observes (`observe`) and removes
or releases it (`delete`). Errors are split the way status needs them: `StalledError` (the user
must change something: 400/403/404, a missing Secret) and `TransientError` (try again later:
429, 5xx, timeouts, conflicts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from apis.v1alpha1.xynergyservice import XynergyService

__all__ = [
    "Backend",
    "BackendStatus",
    "ProviderError",
    "StalledError",
    "Traffic",
    "TransientError",
]


class ProviderError(Exception):
    """A backend call failed; `reason` is a CamelCase word for the condition."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StalledError(ProviderError):
    """Retrying will not help until the spec or the environment changes."""


class TransientError(ProviderError):
    """Retrying later may succeed."""


@dataclass(frozen=True)
class Traffic:
    """Share of traffic a revision receives."""

    revision: str
    percent: int
    tag: str | None = None


@dataclass(frozen=True)
class BackendStatus:
    """What a backend reports about one service."""

    exists: bool
    ready: bool
    reason: str
    message: str
    url: str | None = None
    latest_created_revision: str | None = None
    latest_ready_revision: str | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    selector: str | None = None
    traffic: tuple[Traffic, ...] = field(default_factory=tuple)
    writes: int = 0
    """How many write calls this apply made (0 when nothing differed)."""


class Backend(Protocol):
    """One runtime a XynergyService can be deployed to."""

    async def apply(self, svc: XynergyService) -> BackendStatus:
        """Make the backend match the spec (writing only what differs) and report its state."""
        ...

    async def observe(self, svc: XynergyService) -> BackendStatus:
        """Report the backend's state without changing anything."""
        ...

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        """Delete (or, with orphan, release) the backend service; True once it is gone."""
        ...
