"""A stand-in for the operator context (`controllers.core.context.OperatorContext`) where a
test builds a kind's reconciler with its `from_context` and only the providers matter."""

from __future__ import annotations

from typing import Any

__all__ = ["ProviderContext"]


class ProviderContext:
    """What a `from_context` uses of the operator context: providers built on first use,
    kept by name (`providers`), and no Kubernetes client."""

    def __init__(self) -> None:
        self.providers: dict[str, Any] = {}
        self.client = None

    def provider(self, name: str, build: Any) -> Any:
        if name not in self.providers:
            self.providers[name] = build()
        return self.providers[name]
