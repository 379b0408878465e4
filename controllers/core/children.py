"""What the watches last said about the children the operator owns, as controller-runtime's
informer cache: a converge prompted by a child's event reads its children here instead of
GETting each from the apiserver.

A Deployment changes four or five times while it becomes Ready, and every change converges its
owner; reading both children from the apiserver on each of those converges was two GETs per
event (at N=1000 more than a tenth of the operator's CPU, and the apiserver's). Entries only
move forward (a body with a lower resourceVersion than the one held is ignored, so an older
event never replaces what an apply returned), a child's DELETED event drops its entry, and an
owner forgotten by its controller drops its children's: nothing stays behind a deleted
object. A body is held as compact JSON (a parsed Deployment is several times larger in memory)
and every read returns a fresh copy the caller may change. Checks not prompted by a child event
(the resync, the object's own events) read the apiserver, so a deletion a watch missed while it
re-listed is still found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ChildCache"]

_Key = tuple[str, str | None, str]


def _version(body: Mapping[str, Any]) -> int | None:
    raw = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None  # opaque: the newer arrival wins


def _owner(body: Mapping[str, Any]) -> str | None:
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return next((str(o["uid"]) for o in refs if o.get("controller") and o.get("uid")), None)


class ChildCache:
    """The newest body seen of each owned child, by (kind, namespace, name)."""

    def __init__(self) -> None:
        self._bodies: dict[_Key, tuple[int | None, str]] = {}
        self._owned: dict[str, set[_Key]] = {}

    def __len__(self) -> int:
        return len(self._bodies)

    def put(self, kind: str, body: Mapping[str, Any]) -> None:
        """Hold `body` (a watch event's or an apply's answer) unless a newer one is held;
        a body without a controller owner reference is not ours to hold."""
        owner = _owner(body)
        meta = body.get("metadata") or {}
        if owner is None or not meta.get("name"):
            return
        key = (kind, meta.get("namespace"), str(meta["name"]))
        version, held = _version(body), self._bodies.get(key)
        before = held[0] if held is not None else None
        if version is not None and before is not None and version < before:
            return
        slim = {k: v for k, v in meta.items() if k != "managedFields"}
        self._bodies[key] = (version, json.dumps({**body, "metadata": slim}, separators=(",", ":")))
        self._owned.setdefault(owner, set()).add(key)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A copy of the newest body held, or None when none is (read the apiserver then)."""
        held = self._bodies.get((kind, namespace, name))
        if held is None:
            return None
        body: dict[str, Any] = json.loads(held[1])
        return body

    def drop(self, kind: str, body: Mapping[str, Any]) -> None:
        """The child is gone (or left our watch's selector): forget it."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace"), str(meta.get("name")))
        self._bodies.pop(key, None)
        owner = _owner(body)
        keys = self._owned.get(owner or "")
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._owned[owner or ""]

    def forget(self, owner_uid: str) -> None:
        """Drop every child held for the owner (it is gone)."""
        for key in self._owned.pop(owner_uid, set()):
            self._bodies.pop(key, None)
