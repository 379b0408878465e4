"""The closed vocabularies of scaling decisions, as `StrEnum`s.

Each member equals its string value (`DecisionMode.REACTIVE == "reactive"`), so status
messages, events and JSON read the same as plain strings would.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CalibrationBase", "DecisionMode", "Fallback", "PolicyType", "Reason", "SelectPolicy"]


class PolicyType(StrEnum):
    """A step limit's unit: a number of instances or a percentage of the current count."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which step limit wins when several apply: the largest change, the smallest, or none."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class DecisionMode(StrEnum):
    """What the demand was based on: a trusted forecast, the calibrated level (a base plus the
    headroom the policy's own recent misses call for), the burst envelope or current load."""

    PREDICTIVE = "predictive"
    CALIBRATED = "calibrated"
    ENVELOPE = "envelope"
    REACTIVE = "reactive"


class Fallback(StrEnum):
    """Why the forecast was not used."""

    NO_FORECAST = "NoForecast"
    HISTORY_TOO_SHORT = "HistoryTooShort"
    FORECAST_ERROR_UNKNOWN = "ForecastErrorUnknown"
    FORECAST_ERROR_TOO_HIGH = "ForecastErrorTooHigh"
    FORECAST_DOES_NOT_COVER_LEAD_TIME = "ForecastDoesNotCoverLeadTime"


class Reason(StrEnum):
    """Why the desired count is what it is (the step that set it last)."""

    CURRENT_LOAD = "CurrentLoad"
    FORECAST_PEAK = "ForecastPeak"
    BURST_ENVELOPE = "BurstEnvelope"
    CALIBRATED_LEVEL = "CalibratedLevel"
    DISPERSION_HEADROOM = "DispersionHeadroom"
    WITHIN_TOLERANCE = "WithinTolerance"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    SCHEDULE_MINIMUM = "ScheduleMinimum"
    OUTSIDE_BOUNDS = "OutsideBounds"


class CalibrationBase(StrEnum):
    """What the calibrated headroom is added to: current load (or a trusted forecast's point
    peak), the larger of that and the load's recent (exponentially weighted) mean, or that
    mean alone (as the burst envelope)."""

    LOAD = "Load"
    LOAD_OR_MEAN = "LoadOrMean"
    MEAN = "Mean"
