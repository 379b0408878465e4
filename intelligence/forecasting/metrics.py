"""Forecast error measures: MAPE, sMAPE and MASE (Hyndman and Koehler, 2006).

MASE divides the forecast's mean absolute error by the in-sample mean absolute error of the
seasonal naive forecast, so 1.0 means "as good as repeating the last season" on any scale.
"""

from __future__ import annotations

import numpy as np

from intelligence.forecasting.base import FloatArray

__all__ = ["mape", "mase", "naive_scale", "smape"]


def mape(actual: FloatArray, predicted: FloatArray) -> float:
    """Mean absolute percentage error in percent, over points where `actual` is not zero."""
    nz = actual != 0
    if not nz.any():
        return float("nan")
    return float(100.0 * np.mean(np.abs((actual[nz] - predicted[nz]) / actual[nz])))


def smape(actual: FloatArray, predicted: FloatArray) -> float:
    """Symmetric MAPE in percent (0 to 200); points where both are zero count as exact."""
    denom = np.abs(actual) + np.abs(predicted)
    ratio = np.zeros_like(denom)
    nz = denom > 0
    ratio[nz] = 2.0 * np.abs(actual[nz] - predicted[nz]) / denom[nz]
    return float(100.0 * np.mean(ratio)) if ratio.size else float("nan")


def naive_scale(history: FloatArray, *, period: int) -> float:
    """In-sample MAE of the seasonal naive forecast (lag `period`, or lag 1 if too short)."""
    m = period if history.size > period else 1
    if history.size <= m:
        return float("nan")
    return float(np.mean(np.abs(history[m:] - history[:-m])))


def mase(actual: FloatArray, predicted: FloatArray, *, scale: float) -> float:
    """Mean absolute scaled error: MAE of the forecast divided by `scale` (see naive_scale)."""
    mae = float(np.mean(np.abs(actual - predicted)))
    if not scale > 0:
        return 0.0 if mae == 0 else float("inf")
    return mae / scale
