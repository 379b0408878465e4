"""Calibrated headroom: the policy's own recent misses set how much it provisions.

The operating point is explicit: `ScalingParams.target_under_provisioning` (alpha) is the
share of decisions whose covering level the load may exceed within the lead time (start-up +
horizon). Each decision predicts a base (current load, or a trusted forecast's point peak) and
covers `base + headroom * scale`, where `scale` is the load's recent standard deviation
(exponentially weighted, half-life `calibration_scale_seconds`; at least a tenth of
`target_per_instance`), so scores of calm and of bursty traffic are on one footing (normalised
conformal scores). When the lead time has passed the policy scores itself:
`score = (highest load seen in the lead time - base) / scale`. The headroom is an empirical
quantile of the last `calibration_window` scores, at a level that adaptive conformal
inference (Gibbs and Candes, 2021) moves after every score: up after a miss, down after a hit,
so the long-run miss rate approaches alpha whatever the shape of the traffic:

    level <- clip(level + step * (alpha - miss), -1, 1),   headroom = Quantile_{1 - level}(scores)

Below level 0 (more misses than even the largest recent score would have prevented) the
headroom grows past the largest score by `-level` times the scores' range, the bounded stand-in
for ACI's infinite interval, so a run of misses always buys more headroom.

State is bounded: at most `calibration_window` scores and `MAX_PENDING` open predictions (a new
one opens at most every lead / MAX_PENDING seconds), whatever the length of the history or the
call rate. Pure: everything lives in the frozen `Calibration`, passed in and returned.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any

from intelligence.scaling._evolve import evolve

__all__ = ["MAX_PENDING", "MIN_SCALE", "Calibration", "Pending", "observe", "open_prediction"]

MAX_PENDING = 32
MIN_SCALE = 0.1  # the smallest scale, in units of target_per_instance
_MISS_MEMORY = 0.01  # weight of the newest miss in the reported recent miss rate


@dataclass(frozen=True)
class Pending:
    """A prediction made at `opened` whose lead time is still running."""

    opened: float
    base: float
    scale: float
    headroom: float  # what was provisioned above the base, in `scale` units (inf: not yet)
    peak: float = -math.inf  # the highest load seen since `opened`


@dataclass(frozen=True)
class Calibration:
    """What the calibration keeps between decisions (bounded; see the module docstring).

    `level` is the miss level the quantile currently aims at (None before the first score:
    the target); `scores` the recent scores in arrival order, `ordered` the same sorted (so a
    quantile is one index); `miss_rate` a slowly decaying average of recent misses (evidence);
    `scored` how many predictions were scored in all; `mean`, `var` and `seen` the load's
    exponentially weighted moments and when they were last updated; `high` its recent peak
    (its distance above the mean decays with the same half-life).
    """

    level: float | None = None
    scores: tuple[float, ...] = ()
    ordered: tuple[float, ...] = ()
    pending: tuple[Pending, ...] = ()
    miss_rate: float = 0.0
    scored: int = 0
    mean: float | None = None  # the load's exponentially weighted mean and variance
    var: float = 0.0
    seen: float | None = None  # when the load was last seen
    high: float | None = None  # the recent peak, decaying towards the mean

    def scale(self, target_per_instance: float) -> float:
        """The load's recent standard deviation, at least MIN_SCALE x target_per_instance."""
        return max(math.sqrt(self.var), MIN_SCALE * target_per_instance)

    def headroom(self, *, target: float, min_scores: int) -> float | None:
        """The (1 - level) conformal quantile of the scores; None with fewer than
        `min_scores` (not calibrated yet)."""
        n = len(self.ordered)
        if n < min_scores:
            return None
        level = target if self.level is None else self.level
        if level < 0:  # past the largest score: ACI's unbounded interval, grown linearly
            return self.ordered[-1] - level * (self.ordered[-1] - self.ordered[0])
        # the conformal rank: ceil((n + 1) * (1 - level)), clipped to the sample
        rank = min(n, max(1, math.ceil((n + 1) * (1.0 - level))))
        return self.ordered[rank - 1]

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly form (for a controller's status)."""
        return {
            "level": self.level,
            "scores": list(self.scores),
            "pending": [
                [p.opened, p.base, p.scale, _finite(p.headroom), _finite(p.peak)]
                for p in self.pending
            ],
            "missRate": self.miss_rate,
            "scored": self.scored,
            "mean": self.mean,
            "var": self.var,
            "seen": self.seen,
            "high": self.high,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Calibration:
        """The inverse of `to_dict`."""
        scores = tuple(float(s) for s in _list(data, "scores"))
        pending = tuple(
            Pending(float(t), float(b), float(s), _float(h, math.inf), _float(k, -math.inf))
            for t, b, s, h, k in _list(data, "pending")
        )
        level, mean, seen = data.get("level"), data.get("mean"), data.get("seen")
        high = data.get("high")
        return cls(
            high=None if high is None else float(str(high)),
            level=None if level is None else float(str(level)),
            mean=None if mean is None else float(str(mean)),
            var=float(str(data.get("var", 0.0))),
            seen=None if seen is None else float(str(seen)),
            scores=scores,
            ordered=tuple(sorted(scores)),
            pending=pending,
            miss_rate=float(str(data.get("missRate", 0.0))),
            scored=int(str(data.get("scored", 0))),
        )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _float(x: object, missing: float) -> float:
    return missing if x is None else float(str(x))


def _list(data: dict[str, object], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"calibration.{key}: expected a list, got {type(value).__name__}")
    return value


def observe(
    cal: Calibration,
    *,
    now: float,
    load: float,
    lead: float,
    target: float,
    step: float,
    window: int,
    half_life: float,
) -> Calibration:
    """Record the load seen at `now` (in the moments, half-life `half_life` seconds); score
    every prediction whose lead time has passed and move the level by adaptive conformal
    inference (`target`: the miss rate aimed at)."""
    moments = _moments(cal, now=now, load=load, half_life=half_life)
    if not cal.pending:
        return cal if moments is None else evolve(cal, **moments)
    level = target if cal.level is None else cal.level
    scores, ordered = list(cal.scores), list(cal.ordered)
    miss_rate, scored = cal.miss_rate, cal.scored
    still: list[Pending] = []
    for p in cal.pending:
        if now > p.opened and load > p.peak:  # a new peak: otherwise the same prediction
            p = Pending(p.opened, p.base, p.scale, p.headroom, load)
        if now < p.opened + lead:
            still.append(p)
            continue
        if not math.isfinite(p.peak):
            continue  # nothing was seen during its lead time: nothing to score
        score = (p.peak - p.base) / p.scale
        miss = 1.0 if score > p.headroom else 0.0
        if math.isfinite(p.headroom):  # a prediction made before calibration moves nothing
            level = min(1.0, max(-1.0, level + step * (target - miss)))
            miss_rate += _MISS_MEMORY * (miss - miss_rate)
        scores.append(score)
        insort(ordered, score)
        while len(scores) > window:
            old = scores.pop(0)
            del ordered[bisect_left(ordered, old)]
        scored += 1
    return evolve(
        cal,
        level=level,
        scores=tuple(scores),
        ordered=tuple(ordered),
        pending=tuple(still),
        miss_rate=miss_rate,
        scored=scored,
        **(moments or {}),
    )


def _moments(
    cal: Calibration, *, now: float, load: float, half_life: float
) -> dict[str, float] | None:
    """The fields of `cal` that change when `load` is folded into the exponentially weighted
    mean and variance (weights decay with time, not with the number of calls); None when
    nothing changes. Fields, not a copy, so `observe` copies `cal` once."""
    if cal.mean is None or cal.seen is None or cal.high is None:
        return {"mean": load, "var": 0.0, "seen": now, "high": load}
    if now <= cal.seen:
        return None
    w = 1.0 - 0.5 ** ((now - cal.seen) / half_life)
    delta = load - cal.mean
    mean = cal.mean + w * delta
    return {
        "mean": mean,
        "var": (1.0 - w) * (cal.var + w * delta * delta),
        "seen": now,
        "high": max(load, mean + (1.0 - w) * (cal.high - mean)),
    }


def open_prediction(
    cal: Calibration, *, now: float, base: float, scale: float, headroom: float, lead: float
) -> Calibration:
    """`cal` with a prediction opened at `now` (skipped when the newest open one is younger
    than lead / MAX_PENDING, so at most MAX_PENDING are ever open)."""
    if cal.pending and now - cal.pending[-1].opened < lead / MAX_PENDING:
        return cal
    pending = (*cal.pending, Pending(now, base, scale, headroom))
    return evolve(cal, pending=pending[-MAX_PENDING:])
