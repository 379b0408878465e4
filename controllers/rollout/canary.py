"""Canary: shift traffic to the new revision step by step (setWeight), waiting (pause) and
judging it (analysis) on the way; promote after the last step (Argo Rollouts' canary)."""

from __future__ import annotations

from dataclasses import replace

from apis.base import parse_duration
from apis.v1alpha1.rollout import CanaryStrategy, Rollout
from controllers.rollout.strategy import (
    Move,
    MoveKind,
    Progress,
    StepContext,
    analysis_look,
)

__all__ = ["Canary"]


def _steps(rollout: Rollout) -> CanaryStrategy:
    canary = rollout.spec.strategy.canary
    assert canary is not None, "the canary strategy needs spec.strategy.canary"
    return canary


class Canary:
    """The canary strategy (spec.strategy.canary)."""

    def initial_weight(self, rollout: Rollout) -> int:
        return 0

    def preview(self, rollout: Rollout) -> bool:
        return False

    @staticmethod
    def raise_one_step(rollout: Rollout, index: int) -> int | None:
        """The next setWeight after step `index` above the current weight (None: none left)."""
        later = [s.set_weight for s in _steps(rollout).steps[index + 1 :] if s.set_weight]
        return later[0] if later else None

    async def advance(self, progress: Progress, ctx: StepContext) -> Move:
        steps = _steps(ctx.rollout).steps
        if progress.step >= len(steps):
            return Move(MoveKind.PROMOTE, progress, "all canary steps done")
        step = steps[progress.step]
        where = f"step {progress.step + 1}/{len(steps)}"
        if step.set_weight is not None:
            weight = max(step.set_weight, progress.weight)
            return Move(
                MoveKind.HOLD,
                progress.next_step(ctx.now, weight=weight),
                f"{where}: canary weight {weight}%",
                wait=0.0,
            )
        if ctx.promote:
            return Move(
                MoveKind.HOLD, progress.next_step(ctx.now), f"{where}: promoted by hand", wait=0.0
            )
        if step.pause is not None:
            return self._pause(progress, ctx, where, step.pause.duration)
        assert step.analysis is not None
        analysis = ctx.rollout.spec.analysis
        assert analysis is not None, "admission requires spec.analysis for analysis steps"
        move = await analysis_look(
            progress,
            ctx,
            analysis=analysis,
            duration=parse_duration(step.analysis.duration),
            raise_weight=lambda w: self.raise_one_step(ctx.rollout, progress.step) or w,
        )
        message = f"{where}: {move.message}"
        if move.reason == "AnalysisPassed":
            return replace(move, progress=move.progress.next_step(ctx.now), message=message)
        return replace(move, message=message)

    @staticmethod
    def _pause(progress: Progress, ctx: StepContext, where: str, duration: str | None) -> Move:
        if duration is None:
            return Move(
                MoveKind.PAUSE, progress, f"{where}: paused until promoted", reason="PausedByStep"
            )
        left = parse_duration(duration) - (ctx.now - progress.started).total_seconds()
        if left > 0:
            return Move(MoveKind.HOLD, progress, f"{where}: pausing {left:.0f}s", wait=left)
        return Move(MoveKind.HOLD, progress.next_step(ctx.now), f"{where}: pause done", wait=0.0)
