"""kopf registration for ScalingPolicy, and nothing else.

Triggers: the policy's own events (creation, spec changes, the initial listing after a
restart; each also keeps the conflict index), HorizontalPodAutoscaler events (an HPA that
starts or stops scaling a policy's target), and the core scheduler, which brings every policy
back at its own `interval`. Deletion needs the operator only once the policy has scaled its
target (status.scaledTarget, `ScalingPolicyReconciler.needs_finalizer`): the target is then
given back the spec.replicas it had before (`release`), retried with the core's bounded
back-off (`Controller.finalize_waiting`).
XynergyService events keep the targets' cache (`target.TargetCache`) a sync reads instead of
a GET.

The reconciler (numpy, scipy, the forecasting models) is imported on the first policy's event,
never in an operator without ScalingPolicies.
"""

from __future__ import annotations

from typing import Any

import kopf

from apis.v1alpha1.scalingpolicy import ScalingPolicy
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core import Kind, KindReconciler, OperatorContext, context_of, register
from controllers.scalingpolicy.target import TARGETS, TargetCache

KIND = Kind.of(ScalingPolicy)
TARGET = Kind.of(XynergyService)


def _reconciler(ctx: OperatorContext) -> KindReconciler:
    from controllers.scalingpolicy.reconciler import from_context

    return from_context(ctx)


register(KIND, _reconciler)


@kopf.on.event(KIND.group, KIND.version, KIND.plural)
async def on_policy(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    from controllers.scalingpolicy.reconciler import policy_event

    await policy_event(context_of(memo), body, type)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
async def on_hpa(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    ctx = context_of(memo)
    if not ctx.controllers[KIND].built:
        return  # no policy seen yet: the first one's converge lists every HPA (index seed)
    from controllers.scalingpolicy.reconciler import hpa_event

    await hpa_event(ctx, body, type)


@kopf.on.event(TARGET.group, TARGET.version, TARGET.plural)
async def on_target(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    context_of(memo).provider(TARGETS, TargetCache).observe(body, deleted=type == "DELETED")


def _needs_finalizer(body: kopf.Body, **_: Any) -> bool:
    return bool((body.get("status") or {}).get("scaledTarget"))


@kopf.on.delete(KIND.group, KIND.version, KIND.plural, when=_needs_finalizer)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A policy that scaled its target is deleted: the target gets its spec.replicas back
    (reconciler.release), unless someone changed it since the policy's last write."""
    await context_of(memo).controllers[KIND].finalize_waiting(body)
