"""Pure: what one sync saw and decided -> the ScalingPolicy's status, conditions and Events.

Conditions: Ready (True while the policy decides; False when it holds because metrics are
unavailable, or when Stalled), Degraded (only while True: a fallback is in force, with the
fallback's reason: ForecastErrorTooHigh, HistoryTooShort, MetricsUnavailable...) and Stalled
(the user must act: another autoscaler on the target, no target, an invalid spec).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from apis.conditions import (
    Condition,
    mark_ready,
    mark_stalled,
    set_condition,
)
from apis.v1alpha1.scalingpolicy import (
    ForecastPoint,
    ScaledTarget,
    ScalingDecision,
    ScalingMode,
    ScalingPolicy,
    ScalingPolicyStatus,
)
from controllers.core.events import Event
from controllers.scalingpolicy.models import Fitted
from controllers.scalingpolicy.state import encode
from intelligence.forecasting import Forecast
from intelligence.scaling import Decision

__all__ = [
    "DEGRADED",
    "Bounded",
    "Outcome",
    "decision_view",
    "disabled_status",
    "forecast_points",
    "held_status",
    "paused_status",
    "ready_note",
    "stalled_status",
    "stored_conditions",
    "stored_record",
    "synced_status",
    "target_paused_status",
]

DEGRADED = "Degraded"
MAX_FORECAST_POINTS = 24


@dataclass(frozen=True)
class Outcome:
    """One sync: the target's instances, the load, the decision and whether it was applied."""

    current: int
    load: float
    decision: Decision
    fitted: Fitted | None
    applied: bool
    dry_run: bool
    note: str = ""
    """What the Ready message adds (a raised minimum, a dry run beside another autoscaler)."""


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def forecast_points(
    forecast: Forecast | None, *, now: float, horizon: float
) -> list[ForecastPoint] | None:
    """The forecast over (now, now + horizon], at most 24 evenly spaced points."""
    if forecast is None:
        return None
    ts = forecast.timestamps
    idx = np.flatnonzero((ts > now) & (ts <= now + horizon))
    if idx.size == 0:
        return None
    if idx.size > MAX_FORECAST_POINTS:
        idx = idx[np.linspace(0, idx.size - 1, MAX_FORECAST_POINTS).round().astype(int)]
    return [
        ForecastPoint(
            time=_utc(float(ts[i])),
            value=round(float(forecast.point[i]), 4),
            lower=round(float(forecast.lower[i]), 4),
            upper=round(float(forecast.upper[i]), 4),
        )
        for i in idx
    ]


def mode_in_force(policy: ScalingPolicy, decision: Decision) -> tuple[ScalingMode, str]:
    """The mode in effect and why (a predictive policy falls back to reactive)."""
    spec_mode = policy.spec.mode
    active = ", ".join(decision.active_schedules)
    if spec_mode is ScalingMode.SCHEDULED:
        return spec_mode, f"schedules active: {active}" if active else "no schedule window active"
    if spec_mode is ScalingMode.REACTIVE:
        return spec_mode, "scaling on current load (mode reactive)"
    if decision.fallback is not None:
        return ScalingMode.REACTIVE, f"{decision.fallback}: {_why(decision.message)}"
    return ScalingMode.PREDICTIVE, f"forecast trusted ({decision.mode})"


def _why(message: str) -> str:
    """The fallback part of a decision's message (after its first '; ')."""
    parts = message.split("; ")
    return "; ".join(parts[2:]) if len(parts) > 2 else message


# What moves with every sync without changing the decision: written with a changed
# decision and at the periodic refresh, never on their own.
REFRESHED = (
    "currentLoad",
    "forecast",
    "lastReconcileTime",
    "modeReason",
    "observedUnderProvisioning",
    "scalingState",
)


def decision_view(status: ScalingPolicyStatus | None) -> dict[str, Any]:
    """The status as far as a decision shows in it: instances, mode, the last decision's
    from/to, scale time, model, and each condition's status and reason (the decision's reason
    and the messages carry the sync's numbers: which of load and forecast was higher, by how
    much). The behaviour state is compared on its own (`state`)."""
    if status is None:
        return {}
    data = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    for key in REFRESHED:
        data.pop(key, None)
    if "lastDecision" in data:
        data["lastDecision"] = {k: data["lastDecision"].get(k) for k in ("from", "to")}
    data["conditions"] = [
        (c.type, c.status, c.reason, c.observed_generation) for c in status.conditions
    ]
    return data


_READY_NOTE = re.compile(r"^[^()]*\(\w+\)(.*)$", re.DOTALL)


def ready_note(status: ScalingPolicyStatus | None) -> str | None:
    """The note a decided sync's Ready message ends with (after `(<reason>)`: a raised or
    lowered bound, a dry run beside another autoscaler), '' for none, None when the Ready
    message is not a decided sync's."""
    ready = next((c for c in (status.conditions if status else []) if c.type == "Ready"), None)
    if ready is None or ready.status != "True":
        return None
    found = _READY_NOTE.match(ready.message or "")
    return found.group(1) if found else None


def _conditions(
    old: list[Condition],
    *,
    ready: tuple[bool, str, str],
    degraded: tuple[str, str] | None,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """Ready (Stalled dropped) and Degraded (dropped when None), each set in place: its
    lastTransitionTime moves only when its status does, so a sync that finds the same
    conditions writes nothing."""
    ok, reason, message = ready
    if ok:
        out = mark_ready(old, reason=reason, message=message, generation=generation, now=now)
    else:
        out = set_condition(
            [c for c in old if c.type != "Stalled"],
            type_="Ready",
            status="False",
            reason=reason,
            message=message,
            observed_generation=generation,
            now=now,
        )
    if degraded is None:
        out = [c for c in out if c.type != DEGRADED]
    else:  # set in place: a Degraded that stays True keeps its lastTransitionTime
        out = set_condition(
            out,
            type_=DEGRADED,
            status="True",
            reason=degraded[0],
            message=degraded[1],
            observed_generation=generation,
            now=now,
        )
    return out


def synced_status(
    policy: ScalingPolicy, outcome: Outcome, *, now: dt.datetime
) -> ScalingPolicyStatus:
    """Status after a sync that decided (applied, or reported in dry run)."""
    old = policy.status or ScalingPolicyStatus()
    d, fitted = outcome.decision, outcome.fitted
    mode, why = mode_in_force(policy, d)
    generation = policy.metadata.generation
    changed = d.desired != outcome.current
    word = "would scale" if outcome.dry_run else "scaled"
    summary = f"{word} {outcome.current} -> {d.desired}" if changed else f"holding {d.desired}"
    ready_reason = "DryRun" if outcome.dry_run else "Scaling"
    degraded = (str(d.fallback), why) if d.fallback is not None else None
    if degraded is None and fitted is not None and fitted.forecast is None and fitted.note:
        degraded = ("NoForecast", fitted.note)
    horizon = _horizon(policy)
    return old.model_copy(
        update={
            "conditions": _conditions(
                old.conditions,
                ready=(True, ready_reason, f"{mode}: {summary} ({d.reason}){outcome.note}"),
                degraded=degraded,
                generation=generation,
                now=now,
            ),
            "current_instances": outcome.current,
            "desired_instances": d.desired,
            "current_load": round(outcome.load, 6),
            "observed_under_provisioning": round(d.evidence["observedUnderProvisioning"], 4),
            "mode": mode,
            "mode_reason": why[:1024],
            "last_decision": ScalingDecision.model_validate(
                {
                    "time": now,
                    "from": outcome.current,
                    "to": d.desired,
                    "reason": str(d.reason),
                    "message": d.message[:2048],
                }
            ),
            "last_scale_time": now if outcome.applied else old.last_scale_time,
            "forecast": forecast_points(
                fitted.forecast if fitted else None, now=now.timestamp(), horizon=horizon
            ),
            "model": fitted.model if fitted else None,
            "model_error": _round(fitted.smape) if fitted else None,
            "model_mase": _round(fitted.mase) if fitted else None,
            "model_fitted_time": _utc(fitted.fitted_at) if fitted else None,
            "scaling_state": encode(d.state),
            "last_reconcile_time": now,
        }
    )


def _horizon(policy: ScalingPolicy) -> float:
    from apis.base import parse_duration

    return parse_duration(policy.spec.forecast.horizon) + policy.spec.forecast.startup_seconds


def _round(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 3)


def held_status(
    policy: ScalingPolicy,
    *,
    current: int | None,
    reason: str,
    message: str,
    now: dt.datetime,
    bounded: Bounded | None = None,
) -> ScalingPolicyStatus:
    """Status when the policy holds the instances because it cannot read its metric (or its
    target: `current` None keeps the last known counts); with `bounded`, the count it set
    (or, in dry run, would set) to stay within its bounds. A dry run holds its plan
    (desiredInstances), never the real count."""
    old = policy.status or ScalingPolicyStatus()
    # unknown (the target could not be read): the last known counts stay; a dry run holds
    # its plan (it plans from it, as if it had been applied)
    desired = current if current is not None else old.desired_instances
    if policy.spec.dry_run and old.desired_instances is not None:
        desired = old.desired_instances
    known = current is not None and desired is not None
    held = f"holding {desired} instances: {message}" if known else message
    if bounded is not None and bounded.desired != desired:
        word = "would scale" if policy.spec.dry_run else "scaled"
        held = (
            f"{word} {desired} -> {bounded.desired} ({bounded.why}) without the metric: {message}"
        )
        desired = bounded.desired
    return old.model_copy(
        update={
            "conditions": _conditions(
                old.conditions,
                ready=(False, reason, held),
                degraded=(reason, held),
                generation=policy.metadata.generation,
                now=now,
            ),
            "current_instances": current if current is not None else old.current_instances,
            "desired_instances": desired,
            "current_load": None,
            "last_scale_time": now
            if bounded is not None and bounded.applied
            else old.last_scale_time,
            "last_reconcile_time": now,
        }
    )


@dataclass(frozen=True)
class Bounded:
    """A sync without its metric that brought the count into the policy's bounds."""

    desired: int
    why: str
    """The bound in words: `minInstances 3`, `schedule 0 12 * * * UTC minimum 6`..."""
    applied: bool


def target_paused_status(
    policy: ScalingPolicy, *, name: str, now: dt.datetime
) -> ScalingPolicyStatus:
    """Status while the target XynergyService is paused: nothing read, decided or done."""
    message = (
        f"target XynergyService {name} is paused (spec.paused): no metrics read, "
        "nothing decided or scaled until it is resumed"
    )
    return _idle_status(policy, "TargetPaused", message, now=now)


def disabled_status(policy: ScalingPolicy, *, name: str, now: dt.datetime) -> ScalingPolicyStatus:
    """Status while a Kubernetes target stays at the 0 someone else scaled it to: as HPA's
    ScalingActive False ScalingDisabled, nothing read, decided or done."""
    message = (
        f"target XynergyService {name} has spec.replicas 0, not written by this "
        "policy: scaling is disabled (no metrics read, nothing decided or scaled) until "
        "someone scales it above 0, as HPA does"
    )
    return _idle_status(policy, "ScalingDisabled", message, now=now)


def _idle_status(
    policy: ScalingPolicy, reason: str, message: str, *, now: dt.datetime
) -> ScalingPolicyStatus:
    old = policy.status or ScalingPolicyStatus()
    conditions = _conditions(
        old.conditions,
        ready=(False, reason, message),
        degraded=None,
        generation=policy.metadata.generation,
        now=now,
    )
    return old.model_copy(update={"conditions": conditions, "last_reconcile_time": now})


def stalled_status(
    policy: ScalingPolicy | None,
    body: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    now: dt.datetime,
) -> ScalingPolicyStatus:
    """Status of a policy that must not or cannot act until the user changes something. A
    policy that cannot be read at all (`policy` None: an invalid spec) keeps its stored
    status.scaledTarget, so its deletion still gives the target back, and its stored
    conditions (a retry that finds the same error writes nothing new)."""
    old = policy.status if policy is not None and policy.status else None
    if old is None and policy is None:
        old = ScalingPolicyStatus(
            scaled_target=stored_record(body), conditions=stored_conditions(body)
        )
    elif old is None:
        old = ScalingPolicyStatus()
    generation = (body.get("metadata") or {}).get("generation")
    conditions = mark_stalled(
        [c for c in old.conditions if c.type != DEGRADED],
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    return old.model_copy(update={"conditions": conditions, "last_reconcile_time": now})


def stored_record(body: Mapping[str, Any]) -> ScaledTarget | None:
    """The status.scaledTarget stored in `body`, None when absent or not a valid record."""
    data = (body.get("status") or {}).get("scaledTarget")
    if not isinstance(data, Mapping):
        return None
    try:
        return ScaledTarget.model_validate(dict(data))
    except ValidationError:
        return None


def stored_conditions(body: Mapping[str, Any]) -> list[Condition]:
    """The valid status.conditions stored in `body` (an invalid one is left out)."""
    data = (body.get("status") or {}).get("conditions")
    out: list[Condition] = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, Mapping):
            try:
                out.append(Condition.model_validate(dict(item)))
            except ValidationError:
                continue
    return out


def paused_status(policy: ScalingPolicy, *, now: dt.datetime) -> ScalingPolicyStatus:
    """Status of a paused policy: no metrics read, nothing decided."""
    old = policy.status or ScalingPolicyStatus()
    conditions = _conditions(
        old.conditions,
        ready=(True, "Paused", "paused: no metrics read, nothing decided"),
        degraded=None,
        generation=policy.metadata.generation,
        now=now,
    )
    return old.model_copy(update={"conditions": conditions, "last_reconcile_time": now})


def events_for(
    old: ScalingPolicyStatus | None, new: ScalingPolicyStatus, outcome: Outcome | None
) -> list[Event]:
    """An Event on every scale change (and on a dry run's changed plan), and on every
    change of the Ready/Degraded/Stalled reason."""
    events: list[Event] = []
    if outcome is not None and outcome.applied:
        events.append(Event("Normal", "Scaled", outcome.decision.message))
    elif outcome is not None and outcome.dry_run:
        desired = outcome.decision.desired
        replanned = old is None or old.desired_instances != desired
        if replanned and desired != outcome.current:
            events.append(Event("Normal", "WouldScale", f"dry run: {outcome.decision.message}"))
    before = {c.type: c.reason for c in (old.conditions if old else [])}
    for cond in new.conditions:
        if cond.type in ("Stalled", DEGRADED) and before.get(cond.type) != cond.reason:
            events.append(Event("Warning", cond.reason, cond.message))
    return events
