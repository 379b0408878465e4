"""The operator context: clients, settings, the converge machinery and every kind's controller,
created once at startup and handed to handlers through kopf's `memo` (no module globals).

Kinds register a factory at import (`register`); each kind's controller calls it with the
context when the kind's first object is converged, so a reconciler gets its clients from here,
never from a global, and a kind with no objects costs no imports (its factory imports the
reconciler module inside, see the handlers modules).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lightkube import AsyncClient

from controllers.core.children import ChildCache
from controllers.core.controller import Controller, Kind, KindReconciler
from controllers.core.events import EventRecorder
from controllers.core.peering import ActivityGate
from controllers.core.queue import ObjectQueue
from controllers.core.retry import RetryPolicy
from controllers.core.scheduler import ObjectKey, ResyncScheduler
from controllers.core.status import StatusWriter
from controllers.settings import OperatorSettings

__all__ = ["FIELD_MANAGER", "OperatorContext", "context_of", "register", "registered"]

FIELD_MANAGER = "xynergy-operator"
T = TypeVar("T")
Factory = Callable[["OperatorContext"], KindReconciler]

_FACTORIES: dict[Kind, Factory] = {}


def register(kind: Kind, factory: Factory) -> Kind:
    """Make a kind known to the operator (called by the kind's handlers module on import)."""
    _FACTORIES[kind] = factory
    return kind


def registered() -> Mapping[Kind, Factory]:
    """The kinds registered so far."""
    return dict(_FACTORIES)


@dataclass
class OperatorContext:
    """Everything a converge needs besides the object itself."""

    settings: OperatorSettings
    client: AsyncClient
    api_limit: asyncio.Semaphore
    queue: ObjectQueue
    scheduler: ResyncScheduler
    writer: StatusWriter
    recorder: EventRecorder
    children: ChildCache = field(default_factory=ChildCache)
    controllers: dict[Kind, Controller] = field(default_factory=dict)
    providers: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        settings: OperatorSettings,
        *,
        client: AsyncClient | None = None,
        kinds: Mapping[Kind, Factory] | None = None,
        gate: ActivityGate | None = None,
    ) -> OperatorContext:
        """The context with one controller per registered kind (call inside the event loop);
        `gate` pauses its scheduler and converges while another replica acts (peering)."""
        client = client or AsyncClient(field_manager=FIELD_MANAGER)
        limit = asyncio.Semaphore(settings.api_concurrency)
        controllers: dict[Kind, Controller] = {}

        async def check(key: ObjectKey) -> object:
            by_name = {k.kind: c for k, c in controllers.items()}
            return await by_name[key.kind].converge(key)

        scheduler = ResyncScheduler(
            check,
            concurrency=settings.resync_concurrency,
            deadline=settings.resync_deadline_seconds,
            backoff=RetryPolicy(initial=2.0, maximum=60.0),
            gate=gate,
        )
        ctx = cls(
            settings=settings,
            client=client,
            api_limit=limit,
            queue=ObjectQueue(),
            scheduler=scheduler,
            writer=StatusWriter(client, limit=limit),
            recorder=EventRecorder(client, limit=limit),
        )
        for kind, factory in (kinds if kinds is not None else _FACTORIES).items():
            controllers[kind] = ctx.controller_for(kind, functools.partial(factory, ctx))
        ctx.controllers = controllers
        return ctx

    def controller_for(self, kind: Kind, build: Callable[[], KindReconciler]) -> Controller:
        """A controller of `kind` on this context's machinery; `build` makes its reconciler
        when the kind's first object is converged."""
        return Controller(
            kind=kind,
            build=build,
            client=self.client,
            queue=self.queue,
            scheduler=self.scheduler,
            writer=self.writer,
            recorder=self.recorder,
            children=self.children,
            resync_seconds=self.settings.drift_check_seconds,
            clock=lambda: dt.datetime.now(dt.UTC),
        )

    def provider(self, name: str, build: Callable[[], T]) -> T:
        """The provider called `name`, built on first use (the Cloud Run client library is
        imported only when a Cloud Run object appears)."""
        if name not in self.providers:
            self.providers[name] = build()
        provider: T = self.providers[name]
        return provider

    def start(self) -> None:
        self.scheduler.start()

    async def close(self) -> None:
        await self.scheduler.close()
        await self.client.close()


def context_of(memo: Any) -> OperatorContext:
    """The context kept in kopf's memo by the startup handler (runtime.py)."""
    ctx = getattr(memo, "ctx", None)
    if not isinstance(ctx, OperatorContext):
        raise RuntimeError("the operator context is created at startup (controllers.runtime)")
    return ctx
