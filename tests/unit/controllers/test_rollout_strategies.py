"""The four strategies behind one interface, and the shared analysis step: pure decisions."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from apis.v1alpha1.rollout import Rollout, Verdict
from controllers.rollout.analysis import MetricOutcome, RunResult
from controllers.rollout.bluegreen import BlueGreen
from controllers.rollout.canary import Canary
from controllers.rollout.immediate import Immediate
from controllers.rollout.rolling import Rolling, increment
from controllers.rollout.strategy import AnalysisRequest, MoveKind, Progress, StepContext
from intelligence.canary import MetricVerdict

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
ANALYSIS = {
    "interval": "30s",
    "failureLimit": 0,
    "inconclusiveLimit": 1,
    "metrics": [{"name": "latency", "query": "q"}],
}


def rollout(strategy: dict[str, Any], **spec: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"targetRef": {"name": "crm"}, "image": "crm:2", "strategy": strategy, **spec},
        }
    )


def run(verdict: Verdict, *, needs_data: bool = False) -> RunResult:
    outcome = MetricOutcome(
        "latency",
        MetricVerdict.HIGH if verdict is Verdict.FAILED else MetricVerdict.PASS,
        1.0,
        False,
        "latency: High mannWhitney p=0.0001 effect=0.05 MDE=0.01",
    )
    return RunResult(verdict, 50.0, needs_data, (outcome,), ())


class Judge:
    """Answers analysis requests with the verdicts given, recording each request."""

    def __init__(self, *results: RunResult) -> None:
        self.results = list(results)
        self.requests: list[AnalysisRequest] = []

    async def __call__(self, request: AnalysisRequest) -> RunResult:
        self.requests.append(request)
        return self.results.pop(0)


def ctx(ro: Rollout, now: dt.datetime, judge: Judge | None = None, **kw: Any) -> StepContext:
    return StepContext(ro, now, judge or Judge(), **kw)


def advance(strategy: Any, progress: Progress, context: StepContext) -> Any:
    return asyncio.run(strategy.advance(progress, context))


CANARY = {
    "canary": {
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": "60s"}},
            {"analysis": {"duration": "60s"}},
            {"setWeight": 50},
            {"pause": {}},
        ]
    }
}


def test_canary_set_weight_then_timed_pause_then_next_step() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)
    move = advance(Canary(), Progress(0, 0, T0), ctx(ro, T0))
    assert move.kind is MoveKind.HOLD
    assert move.progress.step == 1
    assert move.progress.weight == 10
    later = T0 + dt.timedelta(seconds=20)
    move = advance(Canary(), move.progress, ctx(ro, later))
    assert move.kind is MoveKind.HOLD
    assert move.progress.step == 1
    assert move.wait == 40
    done = T0 + dt.timedelta(seconds=61)
    move = advance(Canary(), move.progress, ctx(ro, done))
    assert move.progress.step == 2
    assert move.progress.started == done


def test_canary_indefinite_pause_waits_for_promotion_and_ends_in_promote() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)
    paused = Progress(4, 50, T0)
    assert advance(Canary(), paused, ctx(ro, T0)).kind is MoveKind.PAUSE
    moved = advance(Canary(), paused, ctx(ro, T0, promote=True))
    assert moved.progress.step == 5
    assert advance(Canary(), moved.progress, ctx(ro, T0)).kind is MoveKind.PROMOTE


def test_analysis_waits_for_the_interval_then_failure_rolls_back_with_evidence() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)
    step = Progress(2, 10, T0)
    early = advance(Canary(), step, ctx(ro, T0 + dt.timedelta(seconds=10)))
    assert early.kind is MoveKind.HOLD
    assert early.wait == 20
    assert early.run is None
    judge = Judge(run(Verdict.FAILED))
    move = advance(Canary(), step, ctx(ro, T0 + dt.timedelta(seconds=31), judge))
    assert move.kind is MoveKind.ROLLBACK
    assert move.reason == "AnalysisFailed"
    assert "p=0.0001" in move.message
    assert "MDE=0.01" in move.message
    assert judge.requests[0].start == T0
    assert judge.requests[0].look == 1


def test_analysis_passes_after_its_planned_looks() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)
    judge = Judge(run(Verdict.SUCCESSFUL), run(Verdict.SUCCESSFUL))
    first = advance(Canary(), Progress(2, 10, T0), ctx(ro, T0 + dt.timedelta(seconds=30), judge))
    assert first.progress.step == 2
    assert first.progress.looks == 1
    second = advance(Canary(), first.progress, ctx(ro, T0 + dt.timedelta(seconds=60), judge))
    assert second.progress.step == 3
    assert second.run is not None


def test_underpowered_analysis_is_extended_with_a_weight_step_never_passed() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)
    judge = Judge(*[run(Verdict.INCONCLUSIVE, needs_data=True)] * 4)
    progress = Progress(2, 10, T0)
    kinds, weights = [], []
    for look in range(1, 5):
        move = advance(Canary(), progress, ctx(ro, T0 + dt.timedelta(seconds=30 * look), judge))
        kinds.append(move.kind)
        weights.append(move.progress.weight)
        progress = move.progress
    # planned 2 looks; extended at look 2 (weight raised to the next setWeight, 50), again at
    # look 3; at the ceiling (2x planned) it pauses for a human: never a pass
    assert kinds == [MoveKind.HOLD, MoveKind.HOLD, MoveKind.HOLD, MoveKind.PAUSE]
    assert weights == [10, 50, 50, 50]
    assert progress.step == 2
    assert progress.extended == 2
    assert all(r.looks == 4 for r in judge.requests)


def test_inconclusive_past_its_limit_pauses() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)  # inconclusiveLimit 1
    judge = Judge(run(Verdict.INCONCLUSIVE), run(Verdict.INCONCLUSIVE))
    first = advance(Canary(), Progress(2, 10, T0), ctx(ro, T0 + dt.timedelta(seconds=30), judge))
    assert first.kind is MoveKind.HOLD
    second = advance(Canary(), first.progress, ctx(ro, T0 + dt.timedelta(seconds=60), judge))
    assert second.kind is MoveKind.PAUSE
    assert second.reason == "AnalysisInconclusive"


def test_failure_limit_tolerates_failed_runs() -> None:
    ro = rollout(CANARY, analysis={**ANALYSIS, "failureLimit": 1})
    judge = Judge(run(Verdict.FAILED), run(Verdict.FAILED))
    first = advance(Canary(), Progress(2, 10, T0), ctx(ro, T0 + dt.timedelta(seconds=30), judge))
    assert first.kind is MoveKind.HOLD
    assert first.progress.failed == 1
    second = advance(Canary(), first.progress, ctx(ro, T0 + dt.timedelta(seconds=60), judge))
    assert second.kind is MoveKind.ROLLBACK


def test_blue_green_previews_then_promotes_by_hand_or_after_the_delay() -> None:
    manual = rollout({"blueGreen": {}})
    assert BlueGreen().preview(manual)
    assert advance(BlueGreen(), Progress(0, 0, T0), ctx(manual, T0)).kind is MoveKind.PAUSE
    promoted = advance(BlueGreen(), Progress(0, 0, T0), ctx(manual, T0, promote=True))
    assert promoted.kind is MoveKind.PROMOTE
    auto = rollout({"blueGreen": {"autoPromotionSeconds": 30}})
    wait = advance(BlueGreen(), Progress(0, 0, T0), ctx(auto, T0 + dt.timedelta(seconds=10)))
    assert wait.kind is MoveKind.HOLD
    assert wait.wait == 20
    late = T0 + dt.timedelta(seconds=31)
    assert advance(BlueGreen(), Progress(0, 0, T0), ctx(auto, late)).kind is MoveKind.PROMOTE


def test_blue_green_preview_analysis_failure_rolls_back() -> None:
    ro = rollout({"blueGreen": {"autoPromotionSeconds": 30}}, analysis=ANALYSIS)
    judge = Judge(run(Verdict.FAILED))
    move = advance(BlueGreen(), Progress(0, 0, T0), ctx(ro, T0 + dt.timedelta(seconds=30), judge))
    assert move.kind is MoveKind.ROLLBACK


@pytest.mark.parametrize(
    ("surge", "replicas", "unavailable", "expected"),
    [
        ("25%", 4, 0, 25),
        (1, 4, 0, 25),
        (2, 3, 0, 67),
        ("0%", 2, 0, 1),
        ("25%", 4, "25%", 50),  # a Deployment replaces up to surge + unavailable at a time
        (0, 4, 1, 25),
        (1, 3, 1, 68),  # each count as its share, rounded up: 34 + 34
        ("60%", 4, "60%", 100),
    ],
)
def test_rolling_increment(
    surge: int | str, replicas: int, unavailable: int | str, expected: int
) -> None:
    assert increment(surge, replicas, unavailable) == expected


def rolling_weights(spec: dict[str, Any], replicas: int = 1) -> list[int]:
    ro = rollout({"rolling": spec})
    weights: list[int] = []
    progress, now = Progress(0, 0, T0), T0
    for _ in range(10):
        move = advance(Rolling(), progress, ctx(ro, now, dwell=5.0, replicas=replicas))
        if move.kind is MoveKind.PROMOTE:
            return weights
        if move.progress.weight != progress.weight:
            weights.append(move.progress.weight)
        progress, now = move.progress, now + dt.timedelta(seconds=move.wait or 0)
    raise AssertionError(f"not promoted: {weights}")


def test_rolling_moves_in_increments_and_holds_each() -> None:
    assert rolling_weights({"maxSurge": "40%"}) == [40, 80]


@pytest.mark.parametrize(
    ("spec", "replicas", "weights"),
    [
        ({"maxSurge": "20%", "maxUnavailable": "20%"}, 1, [40, 80]),
        ({"maxSurge": 0, "maxUnavailable": 1}, 4, [25, 50, 75]),
        ({"maxSurge": 1, "maxUnavailable": 1}, 8, [26, 52, 78]),
    ],
)
def test_rolling_max_unavailable_adds_to_each_increment(
    spec: dict[str, Any], replicas: int, weights: list[int]
) -> None:
    assert rolling_weights(spec, replicas) == weights


@pytest.mark.parametrize("surge", [0, "0%", "00%"])
def test_rolling_with_nothing_to_move_is_refused_naming_both_fields(surge: int | str) -> None:
    with pytest.raises(ValueError, match=r"rolling\.maxSurge and rolling\.maxUnavailable must not"):
        rollout({"rolling": {"maxSurge": surge, "maxUnavailable": "0%"}})


def test_immediate_promotes_at_once() -> None:
    move = advance(Immediate(), Progress(0, 0, T0), ctx(rollout({"immediate": {}}), T0))
    assert move.kind is MoveKind.PROMOTE


def no_data() -> RunResult:
    outcome = MetricOutcome(
        "errors", MetricVerdict.NODATA, 1.0, True, "errors: NoData mannWhitney n=3/0"
    )
    return RunResult(Verdict.INCONCLUSIVE, 0.0, True, (outcome,), ("CriticalMetricNoData",))


def test_a_first_look_without_canary_samples_is_not_spent_for_one_interval() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)  # interval 30 s
    judge = Judge(no_data(), run(Verdict.FAILED))
    step = Progress(2, 10, T0)
    waiting = advance(Canary(), step, ctx(ro, T0 + dt.timedelta(seconds=30), judge))
    assert waiting.kind is MoveKind.HOLD
    assert waiting.progress.looks == 0  # not spent
    assert waiting.run is None  # nothing judged, nothing recorded
    assert waiting.wait == 7.5
    failed = advance(Canary(), waiting.progress, ctx(ro, T0 + dt.timedelta(seconds=38), judge))
    assert failed.kind is MoveKind.ROLLBACK
    assert judge.requests[-1].look == 1


def test_no_canary_samples_after_the_grace_spends_the_look() -> None:
    ro = rollout(CANARY, analysis=ANALYSIS)
    judge = Judge(no_data())
    late = advance(Canary(), Progress(2, 10, T0), ctx(ro, T0 + dt.timedelta(seconds=61), judge))
    assert late.progress.looks == 1
    assert late.run is not None
