"""Judging a proportion metric (an error rate) from ``(events, trials)`` counts.

A rate is a binomial proportion: a bucket with no requests carries no information (it is not
a missing value), and a bucket with 3 requests weighs less than one with 300. The test is the
one-sided Fisher exact test on the pooled 2x2 table (mid-p); the effect is the difference of
the two rates with Newcombe's hybrid-score interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from intelligence.canary.power import mde_proportion
from intelligence.canary.samples import counts, infinite_sign, z_critical
from intelligence.canary.significance import direction_p, fisher_midp, wilson
from intelligence.canary.types import JudgeConfig, MetricConfig, MetricResult
from intelligence.canary.verdicts import Shift, classify, no_data, result

__all__ = ["judge_proportion"]


def _rates_shift(
    se: int, st: int, ce: int, ct: int, metric: MetricConfig, cfg: JudgeConfig, alpha: float
) -> Shift:
    """Fisher's mid-p test of `ce / ct` against `se / st` in the bad direction, the
    difference of the rates with Newcombe's interval, and the MDE (`se` > 0: relative)."""
    p_s = se / st if st else math.nan
    p_c = ce / ct if ct else math.nan
    if se + ce == 0 or se + ce == st + ct:
        upper = lower = 1.0
    else:
        upper, lower = fisher_midp(
            canary_events=ce, canary_trials=ct, total_events=se + ce, total_trials=st + ct
        )
    effect = p_c - p_s
    z = z_critical(1.0 - alpha)
    lc, uc = wilson(ce, ct, z)
    ls, us = wilson(se, st, z)
    low = effect - math.sqrt((p_c - lc) ** 2 + (us - p_s) ** 2)
    high = effect + math.sqrt((uc - p_c) ** 2 + (p_s - ls) ** 2)
    mde = mde_proportion(p_s, st, ct, alpha=alpha, power=cfg.power, direction=metric.bad_direction)
    return Shift(
        p_value=direction_p(upper, lower, metric.bad_direction),
        effect=effect,
        low=low,
        high=high,
        relative=infinite_sign(effect) if se == 0 else effect / p_s,
        mde=mde,
        mde_relative=mde / p_s if p_s else math.inf,
    )


def judge_proportion(
    stable: ArrayLike, canary: ArrayLike, metric: MetricConfig, cfg: JudgeConfig, alpha: float
) -> MetricResult:
    """One proportion metric's result at level `alpha` (see the module docstring)."""
    s, s_bad, s_rows = counts(stable)
    c, c_bad, c_rows = counts(canary)
    reasons: list[str] = ["NaNsDropped"] if s_bad + c_bad else []
    se, st = (int(v) for v in np.rint(s.sum(axis=0)))
    ce, ct = (int(v) for v in np.rint(c.sum(axis=0)))
    nan = float("nan")
    base: dict[str, Any] = {
        "name": metric.name,
        "critical": metric.critical,
        "weight": metric.weight,
        "n_stable": st,
        "n_canary": ct,
        "nan_dropped": s_bad + c_bad,
        "stable_median": se / st if st else nan,
        "canary_median": ce / ct if ct else nan,
        "alpha": alpha,
    }
    nan_share = max(s_bad / max(s_rows, 1), c_bad / max(c_rows, 1))
    empty = no_data(metric, cfg, reasons, base, nan_share=nan_share, samples=min(st, ct))
    if empty is not None:
        return empty
    shift = _rates_shift(se, st, ce, ct, metric, cfg, alpha)
    if se == 0:
        reasons.append("ZeroBaseline")
    verdict = classify(
        significant=shift.p_value < alpha,
        effect=shift.effect,
        relative=shift.relative,
        zero_baseline=se == 0,
        metric=metric,
    )
    return result(verdict, shift, metric, level=base["stable_median"], reasons=reasons, base=base)
