"""kopf registration for ScalingPolicy, and nothing else.

Triggers: the policy's own events (creation, spec changes, the initial listing after a
restart; each also keeps the conflict index), HorizontalPodAutoscaler events (an HPA that
starts or stops scaling a policy's target), and the core scheduler, which brings every policy
back at its own `interval`. Deletion needs no finalizer: the policy made nothing to clean up.
"""

from __future__ import annotations

from typing import Any

import kopf

from controllers.core import context_of, register
from controllers.scalingpolicy.reconciler import KIND, from_context, hpa_event, policy_event

register(KIND, from_context)


@kopf.on.event(KIND.group, KIND.version, KIND.plural)
async def on_policy(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await policy_event(context_of(memo), body, type)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
async def on_hpa(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await hpa_event(context_of(memo), body, type)
