"""Rolling: move traffic to the new revision in increments of maxSurge + maxUnavailable,
holding each for a moment, without analysis (a Deployment's RollingUpdate, which replaces up
to maxSurge + maxUnavailable instances at a time, expressed as traffic)."""

from __future__ import annotations

import math

from apis.v1alpha1.rollout import RollingStrategy, Rollout
from controllers.rollout.strategy import Move, MoveKind, Progress, StepContext

__all__ = ["Rolling", "increment"]


def _percent(value: int | str, replicas: int) -> int:
    """A count or percent of the target's instances, as a percent of them."""
    if isinstance(value, str) and value.endswith("%"):
        return int(value[:-1])
    return math.ceil(100 * int(value) / max(1, replicas))


def increment(surge: int | str, replicas: int, unavailable: int | str = 0) -> int:
    """The traffic increment (percent) maxSurge and maxUnavailable allow together: their
    percents, or their counts of the target's instances; at least 1, at most 100."""
    return max(1, min(100, _percent(surge, replicas) + _percent(unavailable, replicas)))


def _spec(rollout: Rollout) -> RollingStrategy:
    rolling = rollout.spec.strategy.rolling
    assert rolling is not None, "the rolling strategy needs spec.strategy.rolling"
    return rolling


class Rolling:
    """The rolling strategy (spec.strategy.rolling)."""

    def initial_weight(self, rollout: Rollout) -> int:
        return 0

    def preview(self, rollout: Rollout) -> bool:
        return False

    async def advance(self, progress: Progress, ctx: StepContext) -> Move:
        held = (ctx.now - progress.started).total_seconds()
        if progress.weight > 0 and held < ctx.dwell:
            return Move(
                MoveKind.HOLD, progress, f"holding {progress.weight}%", wait=ctx.dwell - held
            )
        spec = _spec(ctx.rollout)
        step = increment(spec.max_surge, ctx.replicas, spec.max_unavailable)
        weight = min(100, progress.weight + step)
        if weight >= 100:
            return Move(MoveKind.PROMOTE, progress, "last increment: all traffic moved")
        return Move(
            MoveKind.HOLD,
            progress.next_step(ctx.now, weight=weight),
            f"rolling: {weight}% on the new revision",
            wait=ctx.dwell,
        )
