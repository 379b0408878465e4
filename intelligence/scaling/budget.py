"""Cost budget: spend a set share of what reactive scaling would, and spend it on headroom.

The replay protocol's target is relative to HPA (under-provisioned time at most 0.5x HPA's at
instance-hours at most 1.05x its), and a user's question is the same one: "how much more than
plain HPA may this policy cost?". No fixed headroom answers it across traffic shapes: the
same setting spends 0.93x HPA's hours on one trace and 1.2x on another. The budget makes the
operating point that ratio and holds it online.

The policy runs a *reactive shadow* beside itself: `decide` with `predictive=False` (HPA's
rule: tolerance, stabilization windows, step limits, bounds) on the same metric, on its own
state, stepped at most every 15 s (HPA's sync period: a reactive rule that looked more often
would see more of the metric's peaks and hold more). A headroom factor `h` multiplies every
mode's demand (never below current load) and follows the gap between the budget and the
cost, as adaptive conformal inference follows a miss rate (Gibbs and Candes 2021), per 15 s
of elapsed time:

    h += step * (budget * shadow - current) / level * dt / 15,  clipped to [floor, cap]

`current` is the instances the policy runs, `shadow` the reactive count standing over the
same interval and `level` the shadow's count smoothed over half an hour: the gap is counted
in instances, so its running sum is the instance-hours gap, and the factor's speed does not
depend on the service's size. While the policy spends less than `budget` times the shadow,
`h` rises and the savings go to headroom; while it spends more, `h` falls and sheds its
modes' margin (down to current load). Over a long run the summed gap stays bounded, so
instance-hours approach `budget` times the reactive rule's whenever some `h` in [floor, cap]
reaches it. The state is the factor, the smoothed level, two times and the shadow's own
(bounded) scaling state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intelligence.scaling._evolve import evolve

__all__ = ["BUDGET_PERIOD", "Budget", "move_budget"]

BUDGET_PERIOD = 15.0  # seconds per unit of the step, and the shadow's sync period (HPA's)
MAX_GAP = 300.0  # a longer gap between decisions counts as this long
LEVEL_HALF_LIFE = 1800.0  # seconds, of the shadow's smoothed count


@dataclass(frozen=True)
class Budget:
    """The headroom factor, the reactive shadow's count (None: not started) and when it last
    stepped, the shadow's smoothed count (the gap's unit), when the factor last moved."""

    headroom: float = 0.0
    shadow: int | None = None
    stepped: float | None = None
    level: float | None = None
    last: float | None = None

    def due(self, now: float) -> bool:
        """Whether the shadow steps at `now` (its first decision, or a sync period on)."""
        return self.stepped is None or now - self.stepped >= BUDGET_PERIOD - 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {
            "headroom": self.headroom,
            "shadow": self.shadow,
            "stepped": self.stepped,
            "level": self.level,
            "last": self.last,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        shadow = data.get("shadow")
        return cls(
            float(data.get("headroom", 0.0)),
            None if shadow is None else int(shadow),
            number("stepped"),
            number("level"),
            number("last"),
        )


def move_budget(
    budget: Budget,
    *,
    now: float,
    current: int,
    ratio: float,
    step: float,
    cap: float,
    floor: float,
) -> Budget:
    """The factor moved by the gap over the interval since the last decision (the first
    decision only starts the clock; a decision not after the last changes nothing)."""
    if budget.last is None:
        return evolve(budget, last=now)
    if now <= budget.last:
        return budget
    standing = current if budget.shadow is None else budget.shadow
    elapsed = min(now - budget.last, MAX_GAP)
    level = standing if budget.level is None else budget.level
    level += (standing - level) * (1.0 - 0.5 ** (elapsed / LEVEL_HALF_LIFE))
    gap = (ratio * standing - current) / max(level, 1.0)
    headroom = min(max(budget.headroom + step * gap * elapsed / BUDGET_PERIOD, floor), cap)
    return evolve(budget, headroom=headroom, level=level, last=now)
