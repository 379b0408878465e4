"""Roles from the gateway's signed identity, as FastAPI dependencies.

``viewer`` reads, ``editor`` also writes, ``admin`` also does what cannot be undone. A caller
without the role gets 403 in the one error shape, before anything is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from services.common.errors import ApiError
from services.common.identity import CurrentIdentity
from services.common.tenancy import Identity

__all__ = ["ROLE_LEVELS", "Admin", "Editor", "Viewer", "has_role", "requires"]

ROLE_LEVELS = {"viewer": 1, "editor": 2, "admin": 3}


def has_role(identity: Identity, minimum: str) -> bool:
    """True when one of the caller's roles is ``minimum`` or above it."""
    level = max((ROLE_LEVELS.get(r, 0) for r in identity.roles), default=0)
    return level >= ROLE_LEVELS[minimum]


def requires(minimum: str) -> Callable[[Identity], Awaitable[Identity]]:
    """A dependency returning the caller when they have ``minimum`` (403 otherwise); async,
    so FastAPI runs it on the event loop, not in its thread pool."""

    async def check(identity: CurrentIdentity) -> Identity:
        if not has_role(identity, minimum):
            raise ApiError(403, f"this needs the {minimum} role")
        return identity

    return check


Viewer = Annotated[Identity, Depends(requires("viewer"))]
Editor = Annotated[Identity, Depends(requires("editor"))]
Admin = Annotated[Identity, Depends(requires("admin"))]
