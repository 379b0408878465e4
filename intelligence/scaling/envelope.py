"""The burst envelope: an upper bound on the load when no forecast can be trusted.

Bursty load nobody predicts makes every point forecast fail its backtest, yet the recent past
still shows how high bursts go and how often; by Cantelli's inequality that gives a level the
load exceeds at most a chosen share of the time, whatever the shape of the bursts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from intelligence.scaling.types import ScalingParams

__all__ = ["BurstEnvelope", "burst_envelope", "envelope_for"]


@dataclass(frozen=True)
class BurstEnvelope:
    """A level the recent load exceeds at most a share `exceedance` of the time.

    `level = min(mean + sigmas * std, peak)` over the samples of the last `window_seconds`,
    with `sigmas = sqrt(1 / exceedance - 1)` (Cantelli's one-sided Chebyshev bound, so the
    share holds whatever the shape of the bursts, as long as the window is representative of
    the next few minutes). Never above the highest sample in the window (`peak`): a smooth
    series has a small spread and needs no more than what it did.
    """

    level: float
    mean: float
    std: float
    peak: float
    sigmas: float
    exceedance: float
    samples: int
    span_seconds: float
    window_seconds: float
    trend_seconds: float | None = None  # set: `mean` is the recent level, `std` about the trend

    def describe(self) -> str:
        """What is provisioned, in words (for decision messages)."""
        mean, sd = "mean", "sd"
        if self.trend_seconds is not None:
            mean, sd = f"last {self.trend_seconds:.0f}s mean", "sd about the trend"
        return (
            f"provisioning the burst envelope min({mean} {self.mean:.4g} + "
            f"{self.sigmas:.2f} x {sd} {self.std:.4g}, peak {self.peak:.4g}) "
            f"= {self.level:.4g} over the last {self.span_seconds:.0f}s, "
            f"exceeded at most {self.exceedance:.0%} of the time"
        )


def burst_envelope(
    timestamps: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    now: float,
    window_seconds: float,
    exceedance: float,
    trend_seconds: float | None = None,
    lead_seconds: float | None = None,
) -> BurstEnvelope | None:
    """The burst envelope of the samples in (now - window_seconds, now]; None with < 3.

    When a forecast cannot be trusted (bursts nobody predicts), this is still a calibrated
    upper quantile of the load over the coming lead time: the level that the load at any
    moment stays under with probability at least `1 - exceedance`, if the recent window is
    representative. `span_seconds` is how far back the samples used reach.

    With `trend_seconds`, the spread is that of the deviations from the load's trend (a centred
    moving mean over `trend_seconds` of the window's samples), and the base is the mean of the
    last `trend_seconds`: a slow swing inside the window (a daily cycle when the window holds
    much of one) is the trend's, not a burst, and is not provisioned as one. Samples sparser
    than four per `trend_seconds` cannot show a trend from bursts, and get the plain envelope.

    With `lead_seconds` too, the deviations are those of each sample from the trailing mean
    over `trend_seconds` as it stood `lead_seconds` before it, and the level adds their mean:
    Cantelli on the base's own error at the lead time the level is provisioned for (a load
    that drifts within the lead time widens it; the centred trend does not see the drift).
    Too few samples for a lead error fall back to the centred trend.
    """
    if not 0 < exceedance < 1:
        raise ValueError("exceedance must be in (0, 1)")
    t = np.asarray(timestamps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if t.size != v.size:
        raise ValueError(f"timestamps ({t.size}) and values ({v.size}) differ in length")
    keep = np.isfinite(t) & np.isfinite(v) & (t > now - window_seconds) & (t <= now)
    t, v = t[keep], np.maximum(v[keep], 0.0)
    if v.size < 3:
        return None
    sigmas = math.sqrt(1.0 / exceedance - 1.0)
    peak = float(v.max())
    mean, std, trend_seconds = _spread(
        t, v, now=now, trend_seconds=trend_seconds, lead_seconds=lead_seconds
    )
    return BurstEnvelope(
        level=min(mean + sigmas * std, peak),
        mean=mean,
        std=std,
        peak=peak,
        sigmas=sigmas,
        exceedance=exceedance,
        samples=int(v.size),
        span_seconds=float(now - t.min()),
        window_seconds=float(window_seconds),
        trend_seconds=trend_seconds,
    )


def _spread(
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    *,
    now: float,
    trend_seconds: float | None,
    lead_seconds: float | None,
) -> tuple[float, float, float | None]:
    """(base, spread, the trend in effect) of the window's samples: with `trend_seconds`, those
    about the trend (`_lead_errors` with `lead_seconds`, else `_detrended`); without it, or
    when the samples are too sparse to tell a trend from bursts (trend None), their plain mean
    and standard deviation."""
    if trend_seconds is None:
        return float(v.mean()), float(v.std(ddof=1)), None
    gaps = np.diff(t)
    if np.any(gaps < 0):
        order = np.argsort(t, kind="stable")
        t, v, gaps = t[order], v[order], np.diff(t[order])
    step = float(np.median(gaps))
    if 4 * step > trend_seconds:  # too sparse to tell a trend from bursts
        return float(v.mean()), float(v.std(ddof=1)), None
    detrended: tuple[float, float] | None = None
    if lead_seconds is not None:
        detrended = _lead_errors(
            v, step=step, trend_seconds=trend_seconds, lead_seconds=lead_seconds
        )
    if detrended is None:
        detrended = _detrended(t, v, now=now, step=step, trend_seconds=trend_seconds)
    mean, std = detrended
    return mean, std, trend_seconds


def _detrended(
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    *,
    now: float,
    step: float,
    trend_seconds: float,
) -> tuple[float, float]:
    """(mean of the last `trend_seconds`, standard deviation of the samples less their centred
    moving mean over `trend_seconds`), the samples (in time order) taken as evenly spaced `step`
    apart."""
    half = max(1, round(trend_seconds / max(step, 1e-9) / 2))
    cumsum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(v.size)
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, v.size)
    trend = (cumsum[hi] - cumsum[lo]) / (hi - lo)
    base = v[t > now - trend_seconds]
    return float(base.mean() if base.size else v[-1]), float(np.std(v - trend, ddof=1))


def _lead_errors(
    v: npt.NDArray[np.float64],
    *,
    step: float,
    trend_seconds: float,
    lead_seconds: float,
) -> tuple[float, float] | None:
    """(trailing mean of the last `trend_seconds` + the mean lead error, the lead errors'
    standard deviation): the error of each sample against the trailing mean as it stood
    `lead_seconds` before it, the samples (in time order) taken as evenly spaced `step` apart;
    None with fewer than 3 such errors."""
    width = max(1, round(trend_seconds / max(step, 1e-9)))
    lag = max(1, round(lead_seconds / max(step, 1e-9)))
    if v.size - lag - (width - 1) < 3:  # errors against full trailing windows only
        return None
    cumsum = np.concatenate([[0.0], np.cumsum(v)])
    trailing = (cumsum[width:] - cumsum[:-width]) / width  # the means ending at width-1, ...
    errors = v[width - 1 + lag :] - trailing[:-lag]
    return float(trailing[-1] + errors.mean()), float(np.std(errors, ddof=1))


def envelope_for(
    params: ScalingParams,
    *,
    now: float,
    recent_load: tuple[npt.ArrayLike, npt.ArrayLike] | None,
) -> tuple[BurstEnvelope | None, str]:
    """The burst envelope to provision, or None and why not ("" when it is switched off)."""
    if params.burst_exceedance is None:
        return None, ""
    if recent_load is None:
        return None, "no recent load for a burst envelope"
    envelope = burst_envelope(
        recent_load[0],
        recent_load[1],
        now=now,
        window_seconds=params.burst_window_seconds,
        exceedance=params.burst_exceedance,
        trend_seconds=params.burst_trend_seconds,
        lead_seconds=(
            params.startup_seconds + params.horizon_seconds if params.burst_trend_lead else None
        ),
    )
    have = 0.0 if envelope is None else envelope.span_seconds
    if envelope is None or have < params.burst_min_history_seconds:
        return None, (
            f"recent load spans {have:.0f}s < {params.burst_min_history_seconds:.0f}s "
            "for a burst envelope"
        )
    return envelope, ""
