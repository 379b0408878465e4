"""Serialized converge per object, with bookkeeping that lives only while it is used.

Every trigger of an object (its own events, a child's events, the resync check) converges it
under one lock, so a status computed before an event can never be written after the status that
event produced. A lock exists only while someone holds or waits for it: the entry is removed
when the last user leaves, so a deleted object leaves nothing behind, with a finalizer or
without (no delete handler has to clean up).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["ObjectQueue"]


@dataclass
class _Entry:
    lock: asyncio.Lock
    users: int = 0


class ObjectQueue:
    """Per-object mutual exclusion keyed by uid; empty whenever nothing is in flight."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """Objects with a converge running or waiting (0 when idle)."""
        return len(self._entries)

    def busy(self, uid: str) -> bool:
        """True while a converge of `uid` runs or waits."""
        return uid in self._entries

    def waiting(self, uid: str) -> bool:
        """True while a converge of `uid` waits to start: it has not read the object yet, so a
        trigger arriving now has nothing to add to it."""
        entry = self._entries.get(uid)
        return entry is not None and entry.users > (1 if entry.lock.locked() else 0)

    @asynccontextmanager
    async def serialized(self, uid: str) -> AsyncIterator[None]:
        """Run the body alone for `uid`; callers for the same uid wait in arrival order."""
        entry = self._entries.get(uid)
        if entry is None:
            entry = self._entries[uid] = _Entry(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[uid]
