"""How a converge fails, split the way status needs it.

`StalledError`: retrying will not help until the user changes the spec or the environment
(400/403/404, a missing Secret). `TransientError`: retrying later may succeed (429, 5xx,
timeouts, conflicts). Providers raise them; reconcilers turn them into conditions.
"""

from __future__ import annotations

__all__ = ["ProviderError", "StalledError", "TransientError"]


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
