"""Tenancy: the verified identity of a caller and the rules for tenant identifiers.

Pure data and checks, no I/O. Every place that scopes data by tenant (cache keys, rate-limit
keys, event rooms, Redis channels) builds its key from :func:`tenant_key`, which refuses
identifiers that could collide with a separator.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

__all__ = ["Identity", "InvalidTenantError", "tenant_key", "user_key", "valid_tenant_id"]

_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class InvalidTenantError(ValueError):
    """A tenant or user identifier that cannot be used safely inside a key."""


def valid_tenant_id(value: object) -> bool:
    """True when ``value`` is a usable tenant (or user) id: short, no separators."""
    return isinstance(value, str) and _TENANT_RE.match(value) is not None


def tenant_key(*parts: str) -> str:
    """Join identifiers into a key segment, refusing any part with a separator in it."""
    for part in parts:
        if not valid_tenant_id(part):
            raise InvalidTenantError(f"unusable identifier {part!r}")
    return ":".join(parts)


def user_key(user_id: str) -> str:
    """A key-safe form of a user id: itself when usable, else a stable digest of it."""
    if valid_tenant_id(user_id):
        return user_id
    return "h-" + hashlib.sha256(user_id.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, as verified by the gateway (or by a service from the internal token)."""

    user_id: str
    tenant_id: str
    email: str | None = None
    roles: tuple[str, ...] = field(default_factory=tuple)
    source: str = "jwt"

    def has_role(self, role: str) -> bool:
        return role in self.roles
