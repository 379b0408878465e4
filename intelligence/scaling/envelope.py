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

    def describe(self) -> str:
        """What is provisioned, in words (for decision messages)."""
        return (
            f"provisioning the burst envelope min(mean {self.mean:.4g} + "
            f"{self.sigmas:.2f} x sd {self.std:.4g}, peak {self.peak:.4g}) "
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
) -> BurstEnvelope | None:
    """The burst envelope of the samples in (now - window_seconds, now]; None with < 3.

    When a forecast cannot be trusted (bursts nobody predicts), this is still a calibrated
    upper quantile of the load over the coming lead time: the level that the load at any
    moment stays under with probability at least `1 - exceedance`, if the recent window is
    representative. `span_seconds` is how far back the samples used reach.
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
    mean, std, peak = float(v.mean()), float(v.std(ddof=1)), float(v.max())
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
    )


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
    )
    have = 0.0 if envelope is None else envelope.span_seconds
    if envelope is None or have < params.burst_min_history_seconds:
        return None, (
            f"recent load spans {have:.0f}s < {params.burst_min_history_seconds:.0f}s "
            "for a burst envelope"
        )
    return envelope, ""
