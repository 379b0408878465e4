"""kopf registration for Rollout, and nothing else: every trigger is one call into the core
controller (reconciler.py).

Triggers: the Rollout's own events (creation, spec changes such as abort or paused, the
initial listing after a restart, and a new `xynergy.io/rollout-action` annotation, which the
reconciler declares as a trigger annotation to the core), events
of the new revision's Deployment it owns on Kubernetes (the operator's one server-side
selector), and the core scheduler, which comes back when the strategy's clock says (the next
analysis interval, the end of a pause). Deletion needs us only while a Rollout may hold its
target's traffic split on Cloud Run, or a Kubernetes blue-green promotion is in its keep window
(`status.needs_finalizer`): then the finalizer holds it until all traffic is back on the stable
revision, or the target runs the promoted revision (or a bound is reached), retried in the
handler with a bounded back-off (`Controller.finalize_waiting`); otherwise on
Kubernetes the new revision's children go by garbage collection and the gateway drops a
deleted Rollout.

The reconciler (the analysis: numpy, scipy, scikit-learn) is imported on the first Rollout's
event, never in an operator without Rollouts.
"""

from __future__ import annotations

from typing import Any

import kopf

from apis.v1alpha1.rollout import Rollout
from controllers.core import Kind, KindReconciler, OperatorContext, context_of, register
from controllers.rollout.resources import ROLLOUT_LABEL
from controllers.rollout.status import needs_finalizer
from controllers.xynergyservice.resources import MANAGED_BY, MANAGED_BY_LABEL, OWNED_SELECTOR

KIND = Kind.of(Rollout)


def _reconciler(ctx: OperatorContext) -> KindReconciler:
    from controllers.rollout.reconciler import from_context

    return from_context(ctx)


register(KIND, _reconciler)


@kopf.on.startup()
def watch_only_our_children(settings: kopf.OperatorSettings, **_: Any) -> None:
    """The same server-side selector as the XynergyService's children (one watch per kind);
    `labels=` below then picks the Rollout's own."""
    settings.watching.label_selectors["apps", "v1", "deployments"] = OWNED_SELECTOR


@kopf.on.event(KIND.group, KIND.version, KIND.plural)
async def on_rollout(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await context_of(memo).controllers[KIND].on_event(body, type)


@kopf.on.event(
    "apps", "v1", "deployments", labels={MANAGED_BY_LABEL: MANAGED_BY, ROLLOUT_LABEL: kopf.PRESENT}
)
async def on_revision(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """The new revision's Deployment (Kubernetes backend) moved: converge its Rollout."""
    await context_of(memo).controllers[KIND].on_child_event("Deployment", body, type)


def _needs_finalizer(body: kopf.Body, **_: Any) -> bool:
    return needs_finalizer(body)


@kopf.on.delete(KIND.group, KIND.version, KIND.plural, when=_needs_finalizer)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Rollout deleted mid-rollout: all traffic back on the stable revision first (or, in
    a blue-green keep window, the target on the promoted revision). The wait is normal, so
    it is retried here with the core's bounded back-off, not by raising kopf.TemporaryError
    (an ERROR log line and an Error Event per try); the Rollout's status and one Event say
    what it waits for."""
    await context_of(memo).controllers[KIND].finalize_waiting(body)
