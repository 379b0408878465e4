"""Blue-green: the new revision runs beside the old one with no traffic, reachable through a
preview tag/route; it is judged there (spec.analysis, when set) and promoted by a human or
after autoPromotionSeconds: all traffic switches at once, and the old revision is kept
scaleDownDelaySeconds for a fast rollback."""

from __future__ import annotations

from apis.v1alpha1.rollout import BlueGreenStrategy, Rollout
from controllers.rollout.strategy import (
    Move,
    MoveKind,
    Progress,
    StepContext,
    analysis_look,
)

__all__ = ["BlueGreen"]


def _spec(rollout: Rollout) -> BlueGreenStrategy:
    blue_green = rollout.spec.strategy.blue_green
    assert blue_green is not None, "the blue-green strategy needs spec.strategy.blueGreen"
    return blue_green


class BlueGreen:
    """The blue-green strategy (spec.strategy.blueGreen). Step 0: preview; then promote."""

    def initial_weight(self, rollout: Rollout) -> int:
        return 0

    def preview(self, rollout: Rollout) -> bool:
        return True

    async def advance(self, progress: Progress, ctx: StepContext) -> Move:
        spec = _spec(ctx.rollout)
        if ctx.promote:
            return Move(MoveKind.PROMOTE, progress, "preview promoted by hand")
        analysis = ctx.rollout.spec.analysis
        auto = spec.auto_promotion_seconds
        if analysis is not None and progress.step == 0:
            duration = float(auto) if auto else 0.0
            move = await analysis_look(progress, ctx, analysis=analysis, duration=duration)
            if move.reason != "AnalysisPassed":
                return Move(
                    move.kind,
                    move.progress,
                    f"preview: {move.message}",
                    wait=move.wait,
                    run=move.run,
                    reason=move.reason,
                )
            progress = move.progress.next_step(ctx.now)
            if auto is not None:
                return Move(MoveKind.PROMOTE, progress, "preview passed analysis", run=move.run)
            return Move(
                MoveKind.PAUSE,
                progress,
                "preview passed analysis; waiting for promotion",
                run=move.run,
                reason="PausedForPromotion",
            )
        if auto is None:
            return Move(
                MoveKind.PAUSE,
                progress,
                "preview ready; waiting for promotion",
                reason="PausedForPromotion",
            )
        left = auto - (ctx.now - progress.started).total_seconds()
        if left > 0:
            return Move(MoveKind.HOLD, progress, f"preview; promoting in {left:.0f}s", wait=left)
        return Move(MoveKind.PROMOTE, progress, "preview promoted after autoPromotionSeconds")
