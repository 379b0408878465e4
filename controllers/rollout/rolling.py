"""Rolling: move traffic to the new revision in increments of maxSurge, holding each for a
moment, without analysis (a Deployment's RollingUpdate, expressed as traffic where the
backend routes by revision)."""

from __future__ import annotations

import math

from apis.v1alpha1.rollout import RollingStrategy, Rollout
from controllers.rollout.strategy import Move, MoveKind, Progress, StepContext

__all__ = ["Rolling", "increment"]


def increment(surge: int | str, replicas: int) -> int:
    """The traffic increment (percent) maxSurge allows: its percent, or its count of the
    target's instances; at least 1."""
    if isinstance(surge, str) and surge.endswith("%"):
        return max(1, min(100, int(surge[:-1])))
    return max(1, min(100, math.ceil(100 * int(surge) / max(1, replicas))))


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
        step = increment(_spec(ctx.rollout).max_surge, ctx.replicas)
        weight = min(100, progress.weight + step)
        if weight >= 100:
            return Move(MoveKind.PROMOTE, progress, "last increment: all traffic moved")
        return Move(
            MoveKind.HOLD,
            progress.next_step(ctx.now, weight=weight),
            f"rolling: {weight}% on the new revision",
            wait=ctx.dwell,
        )
