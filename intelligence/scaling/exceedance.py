"""Observed under-provisioning: the share of recent time the load was above what was serving.

`ScalingPolicy.spec.targetUnderProvisioning` states the operating point: the share of time the
load may exceed what is provisioned. This module reports the other half, what the policy
achieved, from what each decision sees:

- **What serves.** The instances asked for (`current_instances`) less those added within the
  last start-up (`startup_seconds`): an increase of the count between two decisions is
  stamped at the earlier one (when it was asked for) and serves from a start-up later. A
  decrease takes the newest additions first (a ReplicaSet removes pods that are not ready
  first). Instances are inferred from the count alone, so any scaler's changes count.
- **A miss** is the metric above what serves times `capacity_per_instance` (the target
  without a capacity). It is taken to hold until the next decision.
- **The share** of time it held is an exponentially weighted average over elapsed time with
  half-life `HALF_LIFE_SECONDS`, normalised by the weight of the time seen so far (a new
  policy's first minutes are not averaged with zeros it never saw):

      share' = (w seen(s) share + (1 - w) missed_before) / (w seen(s) + 1 - w),
      w = 2 ** (-dt / half_life),   seen(s) = 1 - 2 ** (-s / half_life)

`seconds` is how much time the average has seen (at most ten half-lives: beyond that the
oldest time weighs under 0.1 %). A gap between decisions longer than `MAX_GAP` (an operator
down, a metric unreadable, a paused policy) counts as `MAX_GAP`: nobody saw the load then.

The metric is an average over its window (15 s for `rate(x[15s])`), so load above capacity
for a few seconds inside a window that averages below it is not seen: on bursty per-second
traffic the share reads below the time actually short (docs/intelligence/scaling.md has the
replays). The state is a few numbers and at most `MAX_PENDING` recent additions (bounded,
JSON-friendly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["HALF_LIFE_SECONDS", "MAX_GAP", "MAX_PENDING", "Exceedance", "observe_exceedance"]

HALF_LIFE_SECONDS = 6 * 3600.0
MAX_GAP = 300.0
MAX_SECONDS = 10 * HALF_LIFE_SECONDS
MAX_PENDING = 32
"""Most additions still starting that are kept; older ones beyond it count as serving."""


@dataclass(frozen=True)
class Exceedance:
    """The share of recent time the load was above what served, and what it is read from."""

    share: float = 0.0
    seconds: float = 0.0
    last: float | None = None
    missed: bool = False
    instances: int | None = None  # the count asked for at the last decision
    pending: tuple[tuple[float, int], ...] = ()  # (asked at, instances added) still starting

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "seconds": self.seconds,
            "last": self.last,
            "missed": self.missed,
            "instances": self.instances,
            "pending": [list(p) for p in self.pending],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exceedance:
        """The inverse of `to_dict`; missing or unreadable numbers start afresh."""
        share, seconds, last = data.get("share"), data.get("seconds"), data.get("last")
        if not isinstance(share, int | float) or not isinstance(seconds, int | float):
            return cls()
        if not math.isfinite(share) or not math.isfinite(seconds):
            return cls()
        instances = data.get("instances")
        try:
            pending = tuple(
                (float(t), int(n)) for t, n in data.get("pending") or () if math.isfinite(t)
            )[-MAX_PENDING:]
        except (TypeError, ValueError):
            pending = ()
        return cls(
            share=min(max(float(share), 0.0), 1.0),
            seconds=min(max(float(seconds), 0.0), MAX_SECONDS),
            last=float(last) if isinstance(last, int | float) and math.isfinite(last) else None,
            missed=bool(data.get("missed", False)),
            instances=instances if isinstance(instances, int) and instances >= 0 else None,
            pending=pending,
        )


def observe_exceedance(
    state: Exceedance,
    *,
    now: float,
    load: float,
    current: int,
    serves: float,
    startup: float,
) -> Exceedance:
    """`state` after a decision at `now` that sees `load` with `current` instances asked for,
    each serving `serves` once `startup` seconds have passed since it was asked for: the time
    since the previous decision folded in with that decision's miss."""
    if state.last is not None and now <= state.last:
        return state
    before = state.instances
    if state.pending or (before is not None and current > before):
        pending = _pending(state, now=now, current=current, startup=startup)
        starting = sum(n for _, n in pending)
    else:  # nothing starting and nothing added: the common case, kept cheap
        pending, starting = (), 0
    missed = load > max(current - starting, 0) * serves * (1 + 1e-9)
    if state.last is None:
        return Exceedance(state.share, state.seconds, now, missed, current, pending)
    dt = min(now - state.last, MAX_GAP)
    weight = math.exp2(-dt / HALF_LIFE_SECONDS)
    old = seen(state.seconds) * weight  # the earlier time's weight now
    share = (old * state.share + (1.0 - weight) * state.missed) / (old + 1.0 - weight)
    seconds = min(state.seconds + dt, MAX_SECONDS)
    return Exceedance(min(share, 1.0), seconds, now, missed, current, pending)


def _pending(
    state: Exceedance, *, now: float, current: int, startup: float
) -> tuple[tuple[float, int], ...]:
    """Additions still starting at `now`: the earlier ones, newest removed first on a
    decrease, plus an increase since the last decision (stamped at it)."""
    pending = [(t, n) for t, n in state.pending if t > now - startup]
    before, last = state.instances, state.last
    if before is not None and last is not None and current > before and last > now - startup:
        pending.append((last, current - before))
    elif before is not None and current < before:
        gone = before - current
        while gone and pending:
            t, n = pending.pop()
            if n > gone:
                pending.append((t, n - gone))
            gone = max(gone - n, 0)
    return tuple(pending[-MAX_PENDING:])


def seen(seconds: float) -> float:
    """The weight of `seconds` of observed time in the average, `1 - 2 ** (-s / half_life)`;
    `seen(s + dt) = w seen(s) + 1 - w` is the update's normaliser."""
    return -math.expm1(seconds * _MINUS_LN2_PER_HALF_LIFE)


_MINUS_LN2_PER_HALF_LIFE = -math.log(2.0) / HALF_LIFE_SECONDS
