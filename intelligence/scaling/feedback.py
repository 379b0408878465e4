"""Miss feedback: a headroom factor the policy moves from its own visible misses.

A *visible miss* is a decision at which the metric is above what the instances the policy runs
can serve (`current_load > current_instances * capacity_per_instance`, the target when no
capacity is given). Whatever mode provisions (forecast, burst envelope, calibrated level or
current load), the demand is multiplied by `1 + headroom`, and the headroom follows adaptive
conformal inference (Gibbs and Candes 2021) on that miss indicator, per 15 s of elapsed time
so the sync interval does not change its speed:

    headroom += step * (miss - target) * dt / 15,   clipped to [floor, cap]

A miss raises it by about `step`; a run of hits lowers it by `step * target` per 15 s, so over
a long trace the visible miss rate approaches `target` when some headroom in [floor, cap] can
reach it. A negative floor lets a policy that never misses shed part of the margin its mode
adds (the forecast's upper quantile, the burst envelope); current load still bounds the demand
from below. The state is two numbers (bounded, JSON-friendly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Feedback", "update_feedback"]

FEEDBACK_PERIOD = 15.0  # seconds per unit of the step (HPA's sync)
MAX_GAP = 300.0  # a longer gap between decisions counts as this long


@dataclass(frozen=True)
class Feedback:
    """The headroom factor and when it was last moved (None: never)."""

    headroom: float = 0.0
    last: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"headroom": self.headroom, "last": self.last}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feedback:
        last = data.get("last")
        return cls(float(data.get("headroom", 0.0)), None if last is None else float(last))


def update_feedback(
    fb: Feedback,
    *,
    now: float,
    missed: bool,
    target: float,
    step: float,
    cap: float,
    floor: float = 0.0,
) -> Feedback:
    """`fb` moved by one decision at `now` (the first decision only starts the clock)."""
    if fb.last is None or now <= fb.last:
        return Feedback(fb.headroom, now if fb.last is None else fb.last)
    dt = min(now - fb.last, MAX_GAP) / FEEDBACK_PERIOD
    headroom = fb.headroom + step * (float(missed) - target) * dt
    return Feedback(min(max(headroom, floor), cap), now)
