"""kopf registration for Rollout, and nothing else: every trigger is one call into the core
controller (reconciler.py).

Triggers: the Rollout's own events (creation, spec changes such as abort or paused, the
initial listing after a restart, and a pending `xynergy.io/rollout-action` annotation) and the
core scheduler, which comes back when the strategy's clock says (the next analysis interval,
the end of a pause). No finalizer: deleting a Rollout leaves traffic as it is.
"""

from __future__ import annotations

from typing import Any

import kopf

from controllers.core import context_of, register
from controllers.rollout.reconciler import KIND, from_context, rollout_event

register(KIND, from_context)


@kopf.on.event(KIND.group, KIND.version, KIND.plural)
async def on_rollout(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await rollout_event(context_of(memo).controllers[KIND], body, type)
