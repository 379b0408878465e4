"""The one Events helper: Kubernetes Events a user cares about, posted on the object.

Reconcilers return `Event`s (pure data); the controller posts them after the status write
through kopf's poster (queued, never blocking a converge). kopf's own log-to-event posting is
turned off below ERROR (runtime.py), so these are the only events the operator posts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import kopf

__all__ = ["Event", "post"]


@dataclass(frozen=True)
class Event:
    """One Event: Normal or Warning, a CamelCase reason and a message (never a secret)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def post(body: Mapping[str, Any], events: Iterable[Event]) -> None:
    """Post `events` on the object `body` (apiVersion, kind and metadata are used)."""
    target = kopf.Body(cast(kopf.RawBody, dict(body)))
    for ev in events:
        kopf.event(target, type=ev.type, reason=ev.reason, message=ev.message)
