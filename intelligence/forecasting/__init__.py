"""Forecasting: one module per model behind the `Forecaster` protocol, plus model selection.

Pure and computational: numpy and scipy only, no I/O, no clock reads. Timestamps are seconds
since the epoch, passed in. Models: `SeasonalNaive` (the baseline), `HoltWinters`,
`RidgeSeasonal`; `AutoForecaster` picks one by rolling-origin backtest and reports its
MAPE / sMAPE / MASE.
"""

from intelligence.forecasting.base import DAY, WEEK, Forecast, Forecaster, NotFittedError
from intelligence.forecasting.holtwinters import HoltWinters
from intelligence.forecasting.levelshift import LevelShift, detect_level_shift
from intelligence.forecasting.metrics import mape, mase, naive_scale, smape
from intelligence.forecasting.naive import SeasonalNaive
from intelligence.forecasting.resampling import RegularSeries, prepare, relevel, resample
from intelligence.forecasting.ridge import RidgeSeasonal
from intelligence.forecasting.selection import AutoForecaster, BacktestScore, backtest

__all__ = [
    "DAY",
    "WEEK",
    "AutoForecaster",
    "BacktestScore",
    "Forecast",
    "Forecaster",
    "HoltWinters",
    "LevelShift",
    "NotFittedError",
    "RegularSeries",
    "RidgeSeasonal",
    "SeasonalNaive",
    "backtest",
    "detect_level_shift",
    "mape",
    "mase",
    "naive_scale",
    "prepare",
    "relevel",
    "resample",
    "smape",
]
