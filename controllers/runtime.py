"""Operator-wide kopf configuration, the operator context's life cycle and handler loading,
shared by `python -m controllers` and the tests' KopfRunner."""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import kopf
import prometheus_client

from controllers.core.context import OperatorContext, registered
from controllers.core.controller import FINALIZER
from controllers.core.peering import ActivityGate
from controllers.settings import OperatorSettings

__all__ = ["HANDLER_MODULES", "LevelDiffBaseStorage", "configure", "load_handlers"]

# One entry per kind; each module registers its kind and @kopf.on handlers on import.
HANDLER_MODULES: tuple[str, ...] = (
    "controllers.xynergyservice.handlers",
    "controllers.scalingpolicy.handlers",
    "controllers.rollout.handlers",
    "controllers.oauthconnection.handlers",
)


def load_handlers() -> None:
    """Import every kind's handlers so kopf registers them."""
    for name in HANDLER_MODULES:
        importlib.import_module(name)


def configure(settings: OperatorSettings) -> None:
    """Start the metrics server when configured."""
    if settings.metrics_port is not None:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.metrics_address)


class LevelDiffBaseStorage(kopf.DiffBaseStorage):
    """No diff base: every object is always "as last handled".

    Our controllers are level-based: they converge on every event and compare before they
    write, so they need no record of the last handled spec. kopf's default keeps one in an
    annotation, which costs a write per object and per spec change; here nothing is stored.
    (kopf still detects deletions, which do not depend on the diff base.)"""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.login()
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Credentials as client-go picks them, read when kopf logs in (not when kopf is imported).

    kopf's fallback login handlers are chosen once, when kopf is first imported: a process
    that imports kopf before KUBECONFIG is set (a test session, an embedding) gets none, and
    with the kubernetes client library installed the kubeconfig path is frozen at that
    import. An explicit KUBECONFIG wins; else the pod's ServiceAccount; else ~/.kube/config."""
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf settings, then the operator context every handler reaches through `memo`."""
    ours = OperatorSettings()
    settings.posting.level = logging.ERROR  # our own events are posted explicitly
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="xynergy.io")
    settings.persistence.diffbase_storage = LevelDiffBaseStorage()
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.queueing.worker_limit = ours.worker_limit
    settings.queueing.idle_timeout = 0.5
    gate = getattr(memo, "gate", None)  # set by `python -m controllers` (peering); else open
    ctx = OperatorContext.create(
        ours, kinds=registered(), gate=gate if isinstance(gate, ActivityGate) else None
    )
    ctx.start()
    memo.ctx = ctx


@kopf.on.cleanup()
async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx = getattr(memo, "ctx", None)
    if isinstance(ctx, OperatorContext):
        await ctx.close()
