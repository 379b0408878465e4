"""Judging a continuous metric (latency, saturation) from raw samples.

Unpaired samples (one per request, best): a Mann-Whitney U test with the Hodges-Lehmann shift,
and a tail-exceedance test, combined by a weighted Holm procedure; points of overlapping
windows count as ``n / overlap`` samples (``MetricConfig.overlap``). Paired series (a gauge per
bucket, the same buckets for both versions): Wilcoxon's signed-rank test bucket by bucket,
``n / overlap`` buckets likewise.
Then the anomaly detectors watch the canary's own series, and the power guard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from intelligence.anomaly import Severity
from intelligence.canary.anomalies import canary_anomalies
from intelligence.canary.power import mde_mean_shift, mde_shift
from intelligence.canary.samples import clean, infinite_sign, quantile
from intelligence.canary.significance import (
    alternative,
    hodges_lehmann,
    holm,
    mann_whitney_p,
    paired_test,
    tail_test,
)
from intelligence.canary.types import (
    JudgeConfig,
    MetricConfig,
    MetricResult,
    MetricVerdict,
)
from intelligence.canary.verdicts import Shift, classify, no_data, result

__all__ = ["judge_continuous"]

_NAN = float("nan")


@dataclass(frozen=True)
class _Samples:
    """The finite samples of both versions, sorted (`stable`, `canary`) and in time order
    (`canary_series`; for a paired metric the `pairs` of buckets finite on both sides)."""

    stable: NDArray[np.float64]
    canary: NDArray[np.float64]
    canary_series: NDArray[np.float64]
    pairs: tuple[NDArray[np.float64], NDArray[np.float64]] | None
    nan_dropped: int
    nan_share: float

    @property
    def identical(self) -> bool:
        """Every sample of both versions has the same value."""
        s, c = self.stable, self.canary
        return bool(min(s[0], c[0]) == max(s[-1], c[-1]))


def _samples(stable: ArrayLike, canary: ArrayLike, metric: MetricConfig) -> _Samples:
    s_raw = np.asarray(stable, dtype=np.float64).ravel()
    c_raw = np.asarray(canary, dtype=np.float64).ravel()
    s, s_nan = clean(s_raw)
    c_series, c_nan = clean(c_raw)
    pairs = None
    if metric.paired:  # a bucket counts only with both sides
        if s_raw.shape != c_raw.shape:
            raise ValueError(
                f"paired metric {metric.name!r} needs the same buckets on both sides, got "
                f"{s_raw.size} and {c_raw.size}"
            )
        both = np.isfinite(s_raw) & np.isfinite(c_raw)
        pairs = (s_raw[both], c_raw[both])
        s, c_series = pairs
    # Sorted once: every later sort (timsort) of these is a linear pass; the detectors get the
    # canary in time order.
    return _Samples(
        stable=np.sort(s, kind="stable"),
        canary=np.sort(c_series, kind="stable"),
        canary_series=c_series,
        pairs=pairs,
        nan_dropped=s_nan + c_nan,
        nan_share=max(s_nan / max(s_raw.size, 1), c_nan / max(c_raw.size, 1)),
    )


def _paired_shift(
    pairs: tuple[NDArray[np.float64], NDArray[np.float64]],
    metric: MetricConfig,
    cfg: JudgeConfig,
    *,
    alpha: float,
    ref: float,
) -> Shift:
    """The paired test's relative change, in the metric's unit via the stable median (its
    mean when that is 0; 1 when both are)."""
    p_value, relative, rel_low, rel_high, mde_rel = paired_test(
        *pairs,
        direction=metric.bad_direction,
        confidence=1.0 - alpha,
        power=cfg.power,
        overlap=metric.overlap,
    )
    scale = ref or 1.0
    return Shift(
        p_value=p_value,
        effect=relative * scale,
        low=rel_low * scale,
        high=rel_high * scale,
        relative=relative,
        mde=mde_rel * scale,
        mde_relative=mde_rel,
    )


def _unpaired_shift(
    x: _Samples, metric: MetricConfig, cfg: JudgeConfig, *, alpha: float, ref: float
) -> Shift:
    """The U test's p-value and the Hodges-Lehmann shift at level `alpha` (the shift test's
    share of the look's level); on a zero baseline the mean shift when it is larger (many
    zeros make the median shift 0 even when the canary has errors)."""
    s, c = x.stable, x.canary
    k = metric.overlap
    p_value = (
        1.0
        if x.identical
        else mann_whitney_p(s, c, alternative=alternative(metric.bad_direction), overlap=k)
    )
    effect, low, high = hodges_lehmann(s, c, confidence=1.0 - alpha, overlap=k)
    if ref == 0.0:
        mean_shift = float(np.mean(c) - np.mean(s))
        if abs(mean_shift) > abs(effect):
            effect = mean_shift
        relative = infinite_sign(effect)
    else:
        relative = effect / ref
    mde, mde_rel = mde_shift(
        s, c.size, alpha=alpha, power=cfg.power, direction=metric.bad_direction, overlap=k
    )
    if s[0] == s[-1]:  # a stable sample without spread cannot tell the metric's noise
        pooled = np.concatenate([s, c])
        mde = max(
            mde,
            mde_mean_shift(
                pooled, s.size / k, c.size / k, alpha=alpha, power=cfg.power,
                direction=metric.bad_direction,
            ),
        )  # fmt: skip
        mde_rel = mde / ref if ref else math.inf
    return Shift(p_value, effect, low, high, relative, mde, mde_rel)


def _tail(x: _Samples, metric: MetricConfig, cfg: JudgeConfig) -> tuple[float, float, float]:
    """The tail test's (p, change of the quantile, relative change); NaN when not run."""
    if x.pairs is not None:
        return _NAN, _NAN, _NAN
    if x.identical:
        return 1.0, 0.0, 0.0
    if cfg.tail_weight > 0.0:
        return tail_test(
            x.stable,
            x.canary,
            direction=metric.bad_direction,
            quantile=cfg.tail_quantile,
            overlap=metric.overlap,
        )
    return _NAN, _NAN, _NAN


def _test_verdict(
    shift: Shift,
    tail: tuple[float, float, float],
    metric: MetricConfig,
    *,
    alpha: float,
    tail_weight: float,
    zero_baseline: bool,
    reasons: list[str],
) -> MetricVerdict:
    """The weighted Holm procedure over the shift and tail tests, then the classification."""
    shift_rejected, tail_rejected = holm(
        shift.p_value, tail[0], alpha=alpha, tail_weight=tail_weight
    )
    verdict = classify(
        significant=shift_rejected,
        effect=shift.effect,
        relative=shift.relative,
        zero_baseline=zero_baseline,
        metric=metric,
    )
    if verdict == MetricVerdict.PASS and tail_rejected:
        verdict = classify(
            significant=True,
            effect=tail[1],
            relative=tail[2],
            zero_baseline=zero_baseline,
            metric=metric,
        )
        if verdict != MetricVerdict.PASS:
            reasons.append("TailRegression")
    return verdict


def _anomalies(x: _Samples, metric: MetricConfig, cfg: JudgeConfig) -> tuple[int, Severity]:
    if not (cfg.detectors and metric.series):
        return 0, Severity.INFO
    if x.pairs is not None:
        return canary_anomalies(*x.pairs, metric, paired=True)
    return canary_anomalies(x.stable, x.canary_series, metric)


def judge_continuous(
    stable: ArrayLike, canary: ArrayLike, metric: MetricConfig, cfg: JudgeConfig, alpha: float
) -> MetricResult:
    """One continuous metric's result at level `alpha` (see the module docstring)."""
    x = _samples(stable, canary, metric)
    s, c = x.stable, x.canary
    reasons: list[str] = ["NaNsDropped"] if x.nan_dropped else []
    base: dict[str, Any] = {
        "name": metric.name,
        "critical": metric.critical,
        "weight": metric.weight,
        "n_stable": int(s.size),
        "n_canary": int(c.size),
        "nan_dropped": x.nan_dropped,
        "stable_median": quantile(s, 0.5) if s.size else _NAN,
        "canary_median": quantile(c, 0.5) if c.size else _NAN,
        "alpha": alpha,
    }
    empty = no_data(metric, cfg, reasons, base, nan_share=x.nan_share, samples=min(s.size, c.size))
    if empty is not None:
        return empty
    tail_weight = 0.0 if x.pairs is not None else cfg.tail_weight
    shift_alpha = alpha * (1.0 - tail_weight) if tail_weight > 0.0 else alpha
    ref = abs(quantile(s, 0.5)) or float(np.mean(np.abs(s)))
    if ref == 0.0:
        reasons.append("ZeroBaseline")
    if x.pairs is not None:
        shift = _paired_shift(x.pairs, metric, cfg, alpha=alpha, ref=ref)
    else:
        shift = _unpaired_shift(x, metric, cfg, alpha=shift_alpha, ref=ref)
    tail = _tail(x, metric, cfg)
    verdict = _test_verdict(
        shift,
        tail,
        metric,
        alpha=alpha,
        tail_weight=tail_weight,
        zero_baseline=ref == 0.0,
        reasons=reasons,
    )
    anomalous, severity = _anomalies(x, metric, cfg)
    if verdict == MetricVerdict.PASS and anomalous >= cfg.anomalous_fraction * c.size:
        verdict = MetricVerdict.MARGINAL
        reasons.append("AnomalousCanarySeries")
    return result(
        verdict,
        shift,
        metric,
        level=ref,
        reasons=reasons,
        base=base,
        anomalous_points=anomalous,
        anomaly_severity=severity,
        tail_p_value=tail[0],
        tail_effect=tail[2],
    )
