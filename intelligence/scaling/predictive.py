"""When a forecast may be trusted, and the load it asks to provision over the lead time."""

from __future__ import annotations

import math

import numpy as np

from intelligence.forecasting.base import Forecast
from intelligence.scaling.enums import Fallback
from intelligence.scaling.types import Observation, ScalingParams

__all__ = ["forecast_demand", "forecast_peak", "lead_peak", "trust_forecast"]


def forecast_peak(forecast: Forecast, *, now: float, until: float) -> tuple[float, float] | None:
    """The forecast's highest (upper, point) values in (now, until]; None when it does not
    reach that far: its last point is before `until` (a forecast that stops inside the lead
    time would provision for part of it only). A coarse grid may step over the window: then
    the first step at or after `until` counts."""
    ts = forecast.timestamps
    if ts.size == 0 or ts[-1] < until:
        return None
    window = (ts > now) & (ts <= until)
    if not window.any():
        after = ts > now
        if not after.any() or forecast.start > until + forecast.step:
            return None
        window = after & (ts <= until + forecast.step)
    return float(np.max(forecast.upper[window])), float(np.max(forecast.point[window]))


def trust_forecast(params: ScalingParams, observed: Observation) -> tuple[Fallback, str] | None:
    """None when the observation's forecast may be used, else the fallback and a message."""
    if observed.forecast is None:
        return Fallback.NO_FORECAST, "no forecast given"
    history = observed.history_seconds
    if history is None or history < params.min_history_seconds:
        have = 0.0 if history is None else history
        return (
            Fallback.HISTORY_TOO_SHORT,
            f"history {have:.0f}s < {params.min_history_seconds:.0f}s",
        )
    smape = observed.forecast_smape
    if smape is None or not math.isfinite(smape):
        return Fallback.FORECAST_ERROR_UNKNOWN, "forecast error not measured"
    if smape > params.max_forecast_smape:
        return (
            Fallback.FORECAST_ERROR_TOO_HIGH,
            f"forecast sMAPE {smape:.1f}% > {params.max_forecast_smape:.1f}%",
        )
    return None


def lead_peak(
    params: ScalingParams, observed: Observation
) -> tuple[tuple[float, float] | None, tuple[Fallback, str] | None]:
    """A trusted forecast's (upper, point) peak over start-up lead time + horizon, or None
    and the fallback that says why it cannot be used."""
    fallback = trust_forecast(params, observed)
    if fallback is not None or observed.forecast is None:
        return None, fallback
    until = observed.now + params.startup_seconds + params.horizon_seconds
    peak = forecast_peak(observed.forecast, now=observed.now, until=until)
    if peak is None:
        return None, (
            Fallback.FORECAST_DOES_NOT_COVER_LEAD_TIME,
            "forecast does not reach start-up lead time + horizon",
        )
    return peak, None


def forecast_demand(
    params: ScalingParams, observed: Observation, evidence: dict[str, float]
) -> tuple[float | None, tuple[float, float] | None, tuple[Fallback, str] | None]:
    """The load a trusted forecast asks to provision over start-up lead time + horizon (its
    upper quantile at the target, or with `capacity_per_instance` its point peak at the
    target and its upper quantile under capacity) and the peak it comes from (upper, point);
    or None, None and the fallback. Records its numbers in `evidence`."""
    peak, fallback = lead_peak(params, observed)
    if peak is None:
        return None, None, fallback
    upper, point = peak
    needed = upper
    if params.capacity_per_instance is not None:
        needed = max(point, upper * params.target_per_instance / params.capacity_per_instance)
    evidence.update(
        forecastPeakUpper=upper,
        forecastPeakPoint=point,
        forecastDemand=needed,
        forecastSmape=float(observed.forecast_smape or 0.0),
        leadSeconds=params.startup_seconds + params.horizon_seconds,
    )
    return needed, peak, None
