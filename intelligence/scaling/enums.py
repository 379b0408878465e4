"""The closed vocabularies of scaling decisions, as `StrEnum`s.

Each member equals its string value (`DecisionMode.REACTIVE == "reactive"`), so status
messages, events and JSON read the same as plain strings would.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CalibrationBase",
    "DecisionMode",
    "Fallback",
    "PolicyType",
    "Reason",
    "RiskTail",
    "SelectPolicy",
]


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


class DispersionComposition(StrEnum):
    """How the dispersion headroom's per-second noise composes with the mode's level.

    `Demand` (the adopted default, as first built): the noise of the mode's demand, the load
    that provisioned at the target gives the mode's instances (for the envelope and the
    forecast's upper quantile that is their level scaled by target / capacity, so the noise is
    that of a smaller rate). `Level`: the noise of the level the mode provisions, in the
    metric's unit, stacked on it (`level + z sqrt(level x index)`). `Quadrature`: the mode's
    margin and the noise added as independent deviations (`centre + sqrt(margin^2 + z^2 x
    centre x index)`, centre the envelope's base or the forecast's point peak, margin what the
    mode adds above it), as Cantelli's bound on the sum of two uncorrelated deviations asks;
    for the current load (no margin) all three are the same.
    """

    DEMAND = "Demand"
    LEVEL = "Level"
    QUADRATURE = "Quadrature"


class RiskTail(StrEnum):
    """The tail the dispersion headroom's risk ratio is priced with (`relative_sigmas`).

    `Normal` (the default): the per-second load's exceedance of a level `z` sigmas up is
    `Q(z)`, the normal upper tail. `Cantelli`: it is at most `1 / (1 + z^2)` whatever the
    distribution (Cantelli's one-sided bound, as the burst envelope uses), a heavier tail
    that buys more sigmas for the same ratio where bursts make the normal one optimistic.
    """

    NORMAL = "Normal"
    CANTELLI = "Cantelli"
