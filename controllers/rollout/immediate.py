"""Immediate: all traffic to the new revision as soon as it is ready."""

from __future__ import annotations

from apis.v1alpha1.rollout import Rollout
from controllers.rollout.strategy import Move, MoveKind, Progress, StepContext

__all__ = ["Immediate"]


class Immediate:
    """The immediate strategy (spec.strategy.immediate)."""

    def initial_weight(self, rollout: Rollout) -> int:
        return 0

    def preview(self, rollout: Rollout) -> bool:
        return False

    async def advance(self, progress: Progress, ctx: StepContext) -> Move:
        return Move(MoveKind.PROMOTE, progress, "switching all traffic to the new revision")
