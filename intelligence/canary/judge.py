"""The judge: one metric (`judge_metric`) and the whole run (`judge`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from numpy.typing import ArrayLike

from intelligence.canary.continuous import judge_continuous
from intelligence.canary.proportion import judge_proportion
from intelligence.canary.types import (
    CanaryJudgement,
    JudgeConfig,
    MetricConfig,
    MetricKind,
    MetricResult,
    MetricVerdict,
    Outcome,
)

__all__ = ["judge", "judge_metric"]

_CREDIT = {MetricVerdict.PASS: 1.0, MetricVerdict.MARGINAL: 0.5}
_NO_DATA = (MetricVerdict.NODATA, MetricVerdict.UNDERPOWERED)


def judge_metric(
    stable: ArrayLike,
    canary: ArrayLike,
    metric: MetricConfig,
    *,
    config: JudgeConfig | None = None,
    look: int = 1,
) -> MetricResult:
    """Judge one metric's canary samples against its stable samples (see the package
    docstring).

    For a ``continuous`` metric, ``stable`` and ``canary`` are 1-D samples; for a
    ``proportion`` metric they are ``(events, trials)`` rows (shape ``(n, 2)``) or one such
    pair of totals. ``look`` (1-based, at most ``config.looks``) is the analysis interval the
    samples run up to; it selects the level this call tests at.
    """
    cfg = config or JudgeConfig()
    alpha = cfg.alpha_at(look)
    if metric.kind is MetricKind.PROPORTION:
        return judge_proportion(stable, canary, metric, cfg, alpha)
    return judge_continuous(stable, canary, metric, cfg, alpha)


def _run_reasons(results: tuple[MetricResult, ...]) -> list[str]:
    """What the run's outcome must take into account beyond its score."""
    reasons: list[str] = []
    if any(r.failed for r in results):
        reasons.append("MetricFailed")
    if any(r.critical and r.verdict == MetricVerdict.NODATA for r in results):
        reasons.append("CriticalMetricNoData")
    total_w = sum(r.weight for r in results)
    data_w = sum(r.weight for r in results if r.verdict not in _NO_DATA)
    if total_w and data_w < 0.5 * total_w:
        reasons.append("MostlyNoData")
    if any(r.verdict == MetricVerdict.UNDERPOWERED for r in results):
        reasons.append("MetricUnderpowered")
    return reasons


def judge(
    samples: Mapping[str, tuple[ArrayLike, ArrayLike]],
    metrics: Sequence[MetricConfig],
    *,
    config: JudgeConfig | None = None,
    look: int = 1,
) -> CanaryJudgement:
    """Judge a canary run: ``samples[name] = (stable, canary)`` for every configured metric.

    ``look`` is the analysis interval the samples run up to (see :func:`judge_metric`). A
    metric missing from ``samples`` is ``NoData``. The score is the weighted share of passing
    metrics among those with data (``Marginal`` counts half; ``Underpowered`` counts as no
    data). Outcome: Failed if a critical metric regressed or the score is below
    ``marginal_score``; Inconclusive if a critical metric or more than half the weight has no
    data, a metric is underpowered, or the score is between the two levels; Successful
    otherwise.
    """
    cfg = config or JudgeConfig()
    if not metrics:
        raise ValueError("at least one metric is needed")
    results = tuple(
        judge_metric(*samples.get(m.name, ([], [])), m, config=cfg, look=look) for m in metrics
    )
    data = [r for r in results if r.verdict not in _NO_DATA]
    data_w = sum(r.weight for r in data)
    score = (
        100.0 * sum(r.weight * _CREDIT.get(r.verdict, 0.0) for r in data) / data_w
        if data_w
        else 0.0
    )
    if any(r.critical and r.failed for r in results):
        return CanaryJudgement(Outcome.FAILED, 0.0, results, ("CriticalMetricFailed",))
    reasons = _run_reasons(results)
    # Marginal metrics lower the score (no Success) but never fail a run: only regressions do.
    regressed_w = sum(r.weight for r in data if r.failed)
    fail_score = 100.0 * (1.0 - regressed_w / data_w) if data_w else 100.0
    if data_w and fail_score < cfg.marginal_score:
        return CanaryJudgement(Outcome.FAILED, score, results, (*reasons, "ScoreBelowMarginal"))
    if {"CriticalMetricNoData", "MostlyNoData", "MetricUnderpowered"} & set(reasons):
        return CanaryJudgement(Outcome.INCONCLUSIVE, score, results, tuple(reasons))
    if score >= cfg.pass_score:
        return CanaryJudgement(Outcome.SUCCESSFUL, score, results, (*reasons, "ScoreAbovePass"))
    return CanaryJudgement(Outcome.INCONCLUSIVE, score, results, (*reasons, "ScoreMarginal"))
