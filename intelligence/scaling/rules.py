"""HPA v2's rules: tolerance, stabilization windows and the Pods / Percent step limits.

Reproduced from the Kubernetes documentation and the HPA controller's source, so that a
ScalingPolicy behaves as users of HPA expect. Each function takes the state HPA keeps in
memory (`ScalingState`) and returns a new one: nothing is kept here. `decide()` calls the
`*_history` / `*_events` forms, which take and return the recommendation and event tuples
themselves, so it builds its new `ScalingState` once per call instead of once per rule.
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
    "History",
    "kept_history",
    "limit_of",
    "prune",
    "recorded_events",
    "scale_down_limit",
    "scale_up_limit",
    "stabilize",
    "stabilized_history",
    "within_tolerance",
]

History = tuple[tuple[Recommendation, ...], tuple[ScaleEvent, ...], tuple[ScaleEvent, ...]]
"""A `ScalingState`'s recommendations, scale-up events and scale-down events."""


def _change_in_period(events: tuple[ScaleEvent, ...], *, now: float, period: int) -> int:
    cutoff = now - period
    return sum(e.replicas for e in events if e.timestamp > cutoff)


def _period_start(limit: StepLimit, *, current: int, history: History, now: float) -> int:
    """The instance count at the start of the limit's period (HPA reads it off its events)."""
    _, ups, downs = history
    added = _change_in_period(ups, now=now, period=limit.period_seconds)
    removed = _change_in_period(downs, now=now, period=limit.period_seconds)
    return current - added + removed


def limit_of(*, current: int, rules: RateRules, history: History, now: float, up: bool) -> int:
    """The step limit of one direction (`up`) read off `history`'s events: the most
    instances scale-up allows, or the fewest scale-down allows."""
    if rules.select_policy is SelectPolicy.DISABLED or not rules.policies:
        return current
    sign = 1 if up else -1
    proposals = []
    for limit in rules.policies:
        start = _period_start(limit, current=current, history=history, now=now)
        if limit.type is PolicyType.PODS:
            proposals.append(start + sign * limit.value)
        elif up:
            proposals.append(math.ceil(start * (1 + limit.value / 100)))
        else:
            proposals.append(int(start * (1 - limit.value / 100)))
    # Min selects the smallest change, which for scale-down is the highest limit.
    smallest_change = rules.select_policy is SelectPolicy.MIN
    return max(proposals) if smallest_change != up else min(proposals)


def _history(state: ScalingState) -> History:
    return state.recommendations, state.scale_up_events, state.scale_down_events


def scale_up_limit(*, current: int, rules: RateRules, state: ScalingState, now: float) -> int:
    """The most instances the scale-up step limits allow now (HPA's scale-up limit)."""
    return limit_of(current=current, rules=rules, history=_history(state), now=now, up=True)


def scale_down_limit(*, current: int, rules: RateRules, state: ScalingState, now: float) -> int:
    """The fewest instances the scale-down step limits allow now (HPA's scale-down limit)."""
    return limit_of(current=current, rules=rules, history=_history(state), now=now, up=False)


def prune(state: ScalingState, *, now: float, rates: Rates, extra_window: int = 0) -> ScalingState:
    """Drop what no window (nor `extra_window`) and no step-limit period can still see."""
    recs, ups, downs = kept_history(state, now=now, rates=rates, extra_window=extra_window)
    return evolve(state, recommendations=recs, scale_up_events=ups, scale_down_events=downs)


def kept_history(
    state: ScalingState, *, now: float, rates: Rates, extra_window: int = 0
) -> History:
    """`state`'s recommendations and events that a window (or `extra_window`) or a
    step-limit period can still see (what `prune` keeps)."""
    keep_rec = max(
        rates.scale_up.stabilization_window_seconds,
        rates.scale_down.stabilization_window_seconds,
        extra_window,
    )
    periods = [p.period_seconds for p in rates.scale_up.policies + rates.scale_down.policies]
    keep_ev = max(periods, default=0)
    return (
        tuple(r for r in state.recommendations if r.timestamp > now - keep_rec),
        tuple(e for e in state.scale_up_events if e.timestamp > now - keep_ev),
        tuple(e for e in state.scale_down_events if e.timestamp > now - keep_ev),
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
    stabilized, recs = stabilized_history(
        raw=raw,
        current=current,
        now=now,
        up_window=rates.scale_up.stabilization_window_seconds,
        down_window=rates.scale_down.stabilization_window_seconds,
        recommendations=state.recommendations,
        fresh=fresh,
    )
    return stabilized, evolve(state, recommendations=recs)


def stabilized_history(
    *,
    raw: int,
    current: int,
    now: float,
    up_window: int,
    down_window: int,
    recommendations: tuple[Recommendation, ...],
    fresh: bool,
) -> tuple[int, tuple[Recommendation, ...]]:
    """`stabilize` on the recommendations themselves, with the scale-up and scale-down
    stabilization windows in seconds: the stabilized count and the recommendations with
    `raw` recorded."""
    recs = recommendations
    if fresh and down_window > 0:
        # HPA seeds the scale-down window with the current count so a restart cannot drop
        recs = (Recommendation(now, current),)
    up_cut = now - up_window
    down_cut = now - down_window
    up_rec, down_rec = raw, raw
    for rec in recs:
        if rec.timestamp > up_cut:
            up_rec = min(up_rec, rec.replicas)
        if rec.timestamp > down_cut:
            down_rec = max(down_rec, rec.replicas)
    stabilized = min(max(current, up_rec), down_rec)
    return stabilized, (*recs, Recommendation(now, raw))


def recorded_events(
    ups: tuple[ScaleEvent, ...],
    downs: tuple[ScaleEvent, ...],
    *,
    now: float,
    current: int,
    desired: int,
) -> tuple[tuple[ScaleEvent, ...], tuple[ScaleEvent, ...]]:
    """The scale-up and scale-down events with the change from `current` to `desired`
    instances at `now`."""
    if desired > current:
        return (*ups, ScaleEvent(now, desired - current)), downs
    if desired < current:
        return ups, (*downs, ScaleEvent(now, current - desired))
    return ups, downs
