"""Observed under-provisioning: the share of recent time the load was above what is asked for.

`ScalingPolicy.spec.targetUnderProvisioning` states the operating point: the share of time the
load may exceed what is provisioned. This module reports the other half, what the policy
achieved, from its own decisions: at each decision the *visible miss* (the metric above
`current_instances x capacity_per_instance`, the target without a capacity; the same test as
the miss feedback) is taken to hold until the next decision, and the share of time it held is
an exponentially weighted average over elapsed time with half-life `HALF_LIFE_SECONDS`,
normalised by the weight of the time seen so far (so a new policy's first minutes are not
averaged with zeros it never saw):

    seen(s) = 1 - 2 ** (-s / half_life)
    share' = (seen(s) w share + (1 - w) missed_before) / seen(s + dt),   w = 2 ** (-dt / half_life)

`seconds` is how much time the average has seen (at most ten half-lives: beyond that the
oldest time weighs under 0.1 %). A gap between decisions longer than `MAX_GAP` (an operator
down, a paused policy) counts as `MAX_GAP`: nobody saw the load then.

It is a lower bound of the time short of capacity: the test counts instances asked for, and
instances still starting count as serving. The state is three numbers and a flag (bounded,
JSON-friendly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["HALF_LIFE_SECONDS", "Exceedance", "observe_exceedance"]

HALF_LIFE_SECONDS = 6 * 3600.0
MAX_GAP = 300.0
MAX_SECONDS = 10 * HALF_LIFE_SECONDS


@dataclass(frozen=True)
class Exceedance:
    """The share of recent time the load was above what was asked for, and since when."""

    share: float = 0.0
    seconds: float = 0.0
    last: float | None = None
    missed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "seconds": self.seconds,
            "last": self.last,
            "missed": self.missed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exceedance:
        """The inverse of `to_dict`; missing or unreadable numbers start afresh."""
        share, seconds, last = data.get("share"), data.get("seconds"), data.get("last")
        if not isinstance(share, int | float) or not isinstance(seconds, int | float):
            return cls()
        if not math.isfinite(share) or not math.isfinite(seconds):
            return cls()
        return cls(
            share=min(max(float(share), 0.0), 1.0),
            seconds=min(max(float(seconds), 0.0), MAX_SECONDS),
            last=float(last) if isinstance(last, int | float) and math.isfinite(last) else None,
            missed=bool(data.get("missed", False)),
        )


def observe_exceedance(state: Exceedance, *, now: float, missed: bool) -> Exceedance:
    """`state` after a decision at `now` whose load was (`missed`) above what is asked for:
    the time since the previous decision folded in with that decision's miss."""
    if state.last is None or now <= state.last:
        last = now if state.last is None else state.last
        return Exceedance(state.share, state.seconds, last, missed)
    dt = min(now - state.last, MAX_GAP)
    weight = math.exp2(-dt / HALF_LIFE_SECONDS)
    old = seen(state.seconds) * weight  # the earlier time's weight now
    share = (old * state.share + (1.0 - weight) * state.missed) / (old + 1.0 - weight)
    return Exceedance(min(share, 1.0), min(state.seconds + dt, MAX_SECONDS), now, missed)


def seen(seconds: float) -> float:
    """The weight of `seconds` of observed time in the average, `1 - 2 ** (-s / half_life)`;
    `seen(s + dt) = w seen(s) + 1 - w` is the update's normaliser."""
    return -math.expm1(seconds * _MINUS_LN2_PER_HALF_LIFE)


_MINUS_LN2_PER_HALF_LIFE = -math.log(2.0) / HALF_LIFE_SECONDS
