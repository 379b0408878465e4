"""kopf registration for XynergyService, and nothing else: every trigger is one call into the
core controller, which runs the same converge path (reconciler.py) for all of them.

Triggers: the object's own events (creation, spec changes, the initial listing after a
restart), events of the Deployments and Services it owns (watched with a server-side label
selector, so a drifted or deleted child is restored at once), changes of the Secrets and
ConfigMaps a service's env reads (sources.py: the operator's own watch of the objects it
labelled; a rotation rolls the workload), and the core resync scheduler.
Deletion needs us only for Cloud Run or deletionPolicy Orphan (a finalizer); Kubernetes
children otherwise go by garbage collection.
"""

from __future__ import annotations

from typing import Any

import kopf

from controllers.core import context_of, register
from controllers.xynergyservice.reconciler import KIND, from_context, needs_finalizer
from controllers.xynergyservice.resources import MANAGED_BY, MANAGED_BY_LABEL, OWNED_SELECTOR

register(KIND, from_context)
OURS = {MANAGED_BY_LABEL: MANAGED_BY}


@kopf.on.startup()
def watch_only_our_children(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf applies `labels=` after an event arrived; the apiserver filters with these."""
    settings.watching.label_selectors["apps", "v1", "deployments"] = OWNED_SELECTOR
    settings.watching.label_selectors["v1", "services"] = OWNED_SELECTOR


@kopf.on.startup()
async def watch_env_sources(memo: kopf.Memo, **_: Any) -> None:
    from controllers.xynergyservice.sources import SourceWatch

    try:
        ctx = context_of(memo)
    except RuntimeError as exc:  # the runtime's startup handler has not run yet
        raise kopf.TemporaryError(str(exc), delay=1) from exc
    memo.env_sources = SourceWatch(ctx)
    memo.env_sources.start()


@kopf.on.cleanup()
async def stop_env_sources(memo: kopf.Memo, **_: Any) -> None:
    watch = getattr(memo, "env_sources", None)
    if watch is not None:
        await watch.stop()


@kopf.on.event(KIND.group, KIND.version, KIND.plural)
async def on_object(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await context_of(memo).controllers[KIND].on_event(body, type)


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
async def on_deployment(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await context_of(memo).controllers[KIND].on_child_event("Deployment", body, type)


@kopf.on.event("v1", "services", labels=OURS)
async def on_service(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await context_of(memo).controllers[KIND].on_child_event("Service", body, type)


def _needs_finalizer(body: kopf.Body, **_: Any) -> bool:
    return needs_finalizer(body)


@kopf.on.delete(KIND.group, KIND.version, KIND.plural, when=_needs_finalizer)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Deletion waits for the backend's service to be deleted (a Cloud Run delete is a
    long-running operation), retried here with the core's bounded back-off rather than by
    raising kopf.TemporaryError, which logs each try at ERROR and posts an Error Event."""
    await context_of(memo).controllers[KIND].finalize_waiting(body)
