"""The one interface every delivery strategy implements, and what they share.

A strategy moves a rollout one decision at a time: given where it stands (`Progress`, kept in
the status so a restarted operator resumes exactly there) and the moment's facts
(`StepContext`), `advance` returns a `Move`: keep going at a weight (and when to look again),
promote (all traffic to the new revision, done), roll back (with the evidence), or pause for
a human. Strategies do no I/O of their own: an analysis is asked for through `ctx.analyze`,
and the reconciler applies the weights the move names through the target's backend.

`analysis_look` is the analysis step shared by the canary and blue-green strategies: one look
per `analysis.interval`, failures against `failureLimit`, inconclusive runs against
`inconclusiveLimit`, and Kayenta's answer to an underpowered judge: extend (more looks, and a
weight raised one step where the strategy can), never a success.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from apis.base import parse_duration
from apis.v1alpha1.rollout import AnalysisSpec, Rollout, Verdict
from controllers.rollout.analysis import RunResult
from intelligence.canary import MetricVerdict

__all__ = [
    "AnalysisRequest",
    "Move",
    "MoveKind",
    "Progress",
    "StepContext",
    "Strategy",
    "analysis_look",
]


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands (mirrors status fields)."""

    step: int
    weight: int
    started: dt.datetime
    """When the current step began."""
    looks: int = 0
    extended: int = 0
    failed: int = 0
    inconclusive: int = 0

    def next_step(self, now: dt.datetime, *, weight: int | None = None) -> Progress:
        """The following step, its clock and look count reset."""
        return replace(
            self,
            step=self.step + 1,
            weight=self.weight if weight is None else weight,
            started=now,
            looks=0,
            extended=0,
        )


class MoveKind(enum.Enum):
    HOLD = "hold"
    """Keep going at `progress.weight`; look again after `wait`."""
    PROMOTE = "promote"
    """Send all traffic to the new revision: it becomes stable."""
    ROLLBACK = "rollback"
    """Send all traffic back to the stable revision (analysis failed)."""
    PAUSE = "pause"
    """Hold the weight and wait for a human (promote, abort)."""


@dataclass(frozen=True)
class AnalysisRequest:
    """Judge the canary over [start, end] as look `look` of `looks`."""

    start: dt.datetime
    end: dt.datetime
    look: int
    looks: int


@dataclass(frozen=True)
class AnalysisRun:
    """An analysis run a move made (recorded in the status history)."""

    request: AnalysisRequest
    result: RunResult
    weight: int


@dataclass(frozen=True)
class Move:
    kind: MoveKind
    progress: Progress
    message: str
    wait: float | None = None
    run: AnalysisRun | None = None
    reason: str = ""


@dataclass(frozen=True)
class StepContext:
    rollout: Rollout
    now: dt.datetime
    analyze: Callable[[AnalysisRequest], Awaitable[RunResult]]
    promote: bool = False
    """A human asked to finish the current pause/analysis step now."""
    replicas: int = 1
    """Instances of the target (for count-valued surge settings)."""
    dwell: float = 5.0
    """How long the rolling strategy holds each increment."""


class Strategy(Protocol):
    """One delivery strategy."""

    def initial_weight(self, rollout: Rollout) -> int:
        """The canary's weight when the new revision is first ready."""
        ...

    def preview(self, rollout: Rollout) -> bool:
        """Whether the new revision gets a preview tag/route while it has no traffic."""
        ...

    async def advance(self, progress: Progress, ctx: StepContext) -> Move:
        """The next decision."""
        ...


def _seconds_until(now: dt.datetime, then: dt.datetime) -> float:
    return max(0.0, (then - now).total_seconds())


def _nothing_to_judge_yet(result: RunResult) -> bool:
    """A critical metric has too few samples to be judged at all (NoData, not Underpowered:
    its series has not been scraped yet), and nothing failed."""
    return not result.failures and any(
        m.critical and m.verdict is MetricVerdict.NODATA for m in result.metrics
    )


async def analysis_look(
    progress: Progress,
    ctx: StepContext,
    *,
    analysis: AnalysisSpec,
    duration: float,
    raise_weight: Callable[[int], int] | None = None,
) -> Move:
    """The analysis step's move now; reason `AnalysisPassed` once the step has passed (the
    strategy goes on to its next step, keeping the move's run)."""
    interval = parse_duration(analysis.interval)
    planned = max(1, math.ceil(duration / interval))
    ceiling = 2 * planned  # extensions allowed, in looks; also the judge's planned looks
    due = progress.started + dt.timedelta(seconds=interval * (progress.looks + 1))
    if ctx.now < due:
        waiting = f"analysis look {progress.looks + 1}/{planned + progress.extended}"
        return Move(MoveKind.HOLD, progress, waiting, wait=_seconds_until(ctx.now, due))
    look = progress.looks + 1
    request = AnalysisRequest(start=progress.started, end=ctx.now, look=look, looks=ceiling)
    result = await ctx.analyze(request)
    grace = progress.started + dt.timedelta(seconds=2 * interval)
    if progress.looks == 0 and ctx.now < grace and _nothing_to_judge_yet(result):
        # the first look, and a critical metric cannot be judged yet (the canary's series not
        # scraped yet): no evidence was weighed, so the look is not spent; ask again soon,
        # for at most one more interval
        waiting = f"analysis look {look}: waiting for the canary's first samples"
        return Move(MoveKind.HOLD, progress, waiting, wait=max(1.0, interval / 4))
    run = AnalysisRun(request, result, progress.weight)
    done = replace(progress, looks=look)
    summary = f"analysis look {look}: {result.verdict.value} (score {result.score:.0f})"
    if result.verdict is Verdict.FAILED:
        done = replace(done, failed=done.failed + 1)
        if done.failed > analysis.failure_limit:
            evidence = "; ".join(result.failures) or ", ".join(result.reasons)
            return Move(
                MoveKind.ROLLBACK, done, f"{summary}: {evidence}", run=run, reason="AnalysisFailed"
            )
        return Move(MoveKind.HOLD, done, summary, wait=interval, run=run)
    if result.needs_data:
        if look >= ceiling:
            done = replace(done, inconclusive=done.inconclusive + 1)
            message = f"{summary}: still too little data after {look} intervals"
            return Move(MoveKind.PAUSE, done, message, run=run, reason="AnalysisUnderpowered")
        if look >= planned + done.extended:
            bumped = raise_weight(done.weight) if raise_weight and done.extended == 0 else None
            done = replace(done, extended=done.extended + 1, weight=bumped or done.weight)
            summary += f"; extended to {planned + done.extended} intervals"
            if bumped and bumped != progress.weight:
                summary += f", canary weight raised to {bumped}%"
        return Move(MoveKind.HOLD, done, summary, wait=interval, run=run)
    if result.verdict is Verdict.INCONCLUSIVE:
        done = replace(done, inconclusive=done.inconclusive + 1)
        if done.inconclusive > analysis.inconclusive_limit:
            return Move(MoveKind.PAUSE, done, summary, run=run, reason="AnalysisInconclusive")
        return Move(MoveKind.HOLD, done, summary, wait=interval, run=run)
    if look >= planned + done.extended:
        return Move(MoveKind.HOLD, done, summary, wait=0.0, run=run, reason="AnalysisPassed")
    return Move(MoveKind.HOLD, done, summary, wait=interval, run=run)
