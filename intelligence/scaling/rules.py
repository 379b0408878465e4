"""HPA v2's rules: tolerance, stabilization windows and the Pods / Percent step limits.

Reproduced from the Kubernetes documentation and the HPA controller's source, so that a
ScalingPolicy behaves as users of HPA expect. Each function takes the state HPA keeps in
memory (`ScalingState`) and returns a new one: nothing is kept here.
"""

from __future__ import annotations

import math

from intelligence.scaling._evolve import evolve
from intelligence.scaling.enums import PolicyType, SelectPolicy
from intelligence.scaling.types import (
    RateRules,
    Rates,
    Recommendation,
    ScaleEvent,
    ScalingState,
    StepLimit,
)

__all__ = [
    "prune",
    "record_change",
    "scale_down_limit",
    "scale_up_limit",
    "stabilize",
    "with_scale_down_window",
    "within_tolerance",
]


def _change_in_period(events: tuple[ScaleEvent, ...], *, now: float, period: int) -> int:
    cutoff = now - period
    return sum(e.replicas for e in events if e.timestamp > cutoff)


def _period_start(limit: StepLimit, *, current: int, state: ScalingState, now: float) -> int:
    """The instance count at the start of the limit's period (HPA reads it off its events)."""
    added = _change_in_period(state.scale_up_events, now=now, period=limit.period_seconds)
    removed = _change_in_period(state.scale_down_events, now=now, period=limit.period_seconds)
    return current - added + removed


def _limit(*, current: int, rules: RateRules, state: ScalingState, now: float, up: bool) -> int:
    if rules.select_policy is SelectPolicy.DISABLED or not rules.policies:
        return current
    sign = 1 if up else -1
    proposals = []
    for limit in rules.policies:
        start = _period_start(limit, current=current, state=state, now=now)
        if limit.type is PolicyType.PODS:
            proposals.append(start + sign * limit.value)
        elif up:
            proposals.append(math.ceil(start * (1 + limit.value / 100)))
        else:
            proposals.append(int(start * (1 - limit.value / 100)))
    # Min selects the smallest change, which for scale-down is the highest limit.
    smallest_change = rules.select_policy is SelectPolicy.MIN
    return max(proposals) if smallest_change != up else min(proposals)


def scale_up_limit(*, current: int, rules: RateRules, state: ScalingState, now: float) -> int:
    """The most instances the scale-up step limits allow now (HPA's scale-up limit)."""
    return _limit(current=current, rules=rules, state=state, now=now, up=True)


def scale_down_limit(*, current: int, rules: RateRules, state: ScalingState, now: float) -> int:
    """The fewest instances the scale-down step limits allow now (HPA's scale-down limit)."""
    return _limit(current=current, rules=rules, state=state, now=now, up=False)


def prune(state: ScalingState, *, now: float, rates: Rates, extra_window: int = 0) -> ScalingState:
    """Drop what no window (nor `extra_window`) and no step-limit period can still see."""
    keep_rec = max(
        rates.scale_up.stabilization_window_seconds,
        rates.scale_down.stabilization_window_seconds,
        extra_window,
    )
    periods = [p.period_seconds for p in rates.scale_up.policies + rates.scale_down.policies]
    keep_ev = max(periods, default=0)
    return evolve(
        state,
        recommendations=tuple(r for r in state.recommendations if r.timestamp > now - keep_rec),
        scale_up_events=tuple(e for e in state.scale_up_events if e.timestamp > now - keep_ev),
        scale_down_events=tuple(e for e in state.scale_down_events if e.timestamp > now - keep_ev),
    )


def within_tolerance(
    *, demand: float, current: int, target: float, rates: Rates
) -> tuple[bool, float]:
    """Whether `demand` is close enough to `current` instances at `target` to keep them, and
    the ratio of demand to what they carry at the target."""
    if current <= 0:
        return False, math.inf if demand > 0 else 1.0
    ratio = demand / (current * target)
    if ratio >= 1.0:
        return ratio - 1.0 <= rates.scale_up.tolerance, ratio
    return 1.0 - ratio <= rates.scale_down.tolerance, ratio


def stabilize(
    *, raw: int, current: int, now: float, rates: Rates, state: ScalingState, fresh: bool
) -> tuple[int, ScalingState]:
    """The stabilized recommendation (scale-up: lowest in its window, scale-down: highest)
    and the state with `raw` recorded. `fresh`: no earlier recommendation is known."""
    recs = state.recommendations
    if fresh and rates.scale_down.stabilization_window_seconds > 0:
        # HPA seeds the scale-down window with the current count so a restart cannot drop
        recs = (Recommendation(now, current),)
    up_cut = now - rates.scale_up.stabilization_window_seconds
    down_cut = now - rates.scale_down.stabilization_window_seconds
    up_rec, down_rec = raw, raw
    for rec in recs:
        if rec.timestamp > up_cut:
            up_rec = min(up_rec, rec.replicas)
        if rec.timestamp > down_cut:
            down_rec = max(down_rec, rec.replicas)
    stabilized = min(max(current, up_rec), down_rec)
    new_state = evolve(state, recommendations=(*recs, Recommendation(now, raw)))
    return stabilized, new_state


def with_scale_down_window(rates: Rates, seconds: int | None) -> Rates:
    """`rates` with the scale-down stabilization window replaced (unchanged for None)."""
    if seconds is None:
        return rates
    return evolve(rates, scale_down=evolve(rates.scale_down, stabilization_window_seconds=seconds))


def record_change(state: ScalingState, *, now: float, current: int, desired: int) -> ScalingState:
    """`state` with the scale event from `current` to `desired` instances at `now`."""
    if desired > current:
        return evolve(
            state, scale_up_events=(*state.scale_up_events, ScaleEvent(now, desired - current))
        )
    if desired < current:
        return evolve(
            state,
            scale_down_events=(*state.scale_down_events, ScaleEvent(now, current - desired)),
        )
    return state
