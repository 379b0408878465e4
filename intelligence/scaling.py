"""Scaling decisions: how many instances a service should run now, and why.

Reactive part: the Kubernetes HPA v2 algorithm (desired = ceil(load / targetPerInstance),
a tolerance around the target, `behavior` with stabilization windows, Pods / Percent policies
per period and selectPolicy), reproduced from its documentation and controller source so a
ScalingPolicy behaves as users of HPA expect. Predictive part: the recommendation also covers
the upper quantile of the forecast over the service's start-up lead time plus a horizon, so
capacity is ready when load arrives. When the forecast's recent error is too high, or history
too short, the decision falls back and says why: to the burst envelope when recent load is
given (an upper bound on the load at any moment of the lead time, from the recent mean and
volatility; see `burst_envelope`), else to plain reactive scaling on current load.

Pure: time is an argument; the state HPA keeps in memory (recent recommendations and scale
events) is passed in and returned (`ScalingState`), so a controller can keep it in status.
Every decision carries its evidence (numbers) and a CamelCase reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from intelligence.forecasting.base import Forecast

__all__ = [
    "DEFAULT_BEHAVIOR",
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "Behavior",
    "BurstEnvelope",
    "CronSchedule",
    "PolicyType",
    "Recommendation",
    "ScaleEvent",
    "ScalingDecision",
    "ScalingPolicy",
    "ScalingRules",
    "ScalingSpec",
    "ScalingState",
    "SelectPolicy",
    "burst_envelope",
    "decide",
    "scale_down_limit",
    "scale_up_limit",
]


class PolicyType(StrEnum):
    """HPAScalingPolicy type: a number of instances or a percentage of the current count."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which policy wins when several apply: the largest change, the smallest, or none."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True)
class ScalingPolicy:
    """At most `value` instances (or percent) of change per `period_seconds`."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """HPAScalingRules for one direction, plus the tolerance around the target ratio."""

    stabilization_window_seconds: int
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX
    tolerance: float = 0.1


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_seconds=0,
    policies=(
        ScalingPolicy(PolicyType.PERCENT, 100, 15),
        ScalingPolicy(PolicyType.PODS, 4, 15),
    ),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_seconds=300,
    policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
)


@dataclass(frozen=True)
class Behavior:
    """HPA v2 `behavior`; the defaults are Kubernetes' documented defaults."""

    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


DEFAULT_BEHAVIOR = Behavior()


@dataclass(frozen=True)
class Recommendation:
    """An unstabilized recommendation made at `timestamp` (seconds)."""

    timestamp: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A change of `replicas` instances (always positive) made at `timestamp`."""

    timestamp: float
    replicas: int


@dataclass(frozen=True)
class ScalingState:
    """What HPA keeps in memory between syncs; keep it in status and pass it back."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()

    def to_dict(self) -> dict[str, list[list[float]]]:
        """A JSON-friendly form: lists of [timestamp, replicas]."""
        return {
            "recommendations": [[r.timestamp, r.replicas] for r in self.recommendations],
            "scaleUpEvents": [[e.timestamp, e.replicas] for e in self.scale_up_events],
            "scaleDownEvents": [[e.timestamp, e.replicas] for e in self.scale_down_events],
        }

    @classmethod
    def from_dict(cls, data: dict[str, list[list[float]]]) -> ScalingState:
        """The inverse of `to_dict`; missing keys are empty."""
        return cls(
            recommendations=tuple(
                Recommendation(float(t), int(r)) for t, r in data.get("recommendations", [])
            ),
            scale_up_events=tuple(
                ScaleEvent(float(t), int(r)) for t, r in data.get("scaleUpEvents", [])
            ),
            scale_down_events=tuple(
                ScaleEvent(float(t), int(r)) for t, r in data.get("scaleDownEvents", [])
            ),
        )


# ---------------------------------------------------------------------------------------------
# cron-like schedules


def _parse_field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in cron field {text!r}")
        if rng == "*":
            a, b = low, high
        elif "-" in rng:
            a_text, b_text = rng.split("-", 1)
            a, b = int(a_text), int(b_text)
        else:
            a = int(rng)
            b = high if step_text else a
        if not (low <= a <= high and low <= b <= high and a <= b):
            raise ValueError(f"cron field {text!r} out of range {low}-{high}")
        values.update(range(a, b + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """Raise the minimum to `min_instances` for `duration_seconds` after each cron match.

    `cron` has the five classic fields (minute hour day-of-month month day-of-week; `*`,
    lists, ranges and `/step`; Sunday is 0 or 7; when both day fields are restricted a day
    matches either, as in Vixie cron), evaluated at `utc_offset_minutes` from UTC.
    """

    cron: str
    duration_seconds: float
    min_instances: int
    name: str = ""
    utc_offset_minutes: int = 0

    def _fields(self) -> tuple[frozenset[int], ...]:
        parts = self.cron.split()
        if len(parts) != 5:
            raise ValueError(f"cron needs 5 fields, got {self.cron!r}")
        dow = _parse_field(parts[4], 0, 7)
        dow = frozenset({d % 7 for d in dow})
        return (
            _parse_field(parts[0], 0, 59),
            _parse_field(parts[1], 0, 23),
            _parse_field(parts[2], 1, 31),
            _parse_field(parts[3], 1, 12),
            dow,
        )

    def active(self, now: float) -> bool:
        """True when a cron match happened in (now - duration, now]."""
        minutes, hours, doms, months, dows = self._fields()
        parts = self.cron.split()
        dom_any, dow_any = parts[2] == "*", parts[4] == "*"
        offset = timedelta(minutes=self.utc_offset_minutes)
        local_now = datetime.fromtimestamp(now, tz=UTC) + offset
        earliest = local_now - timedelta(seconds=self.duration_seconds)
        day = earliest.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= local_now:
            weekday = (day.weekday() + 1) % 7  # Python Monday=0 -> cron Sunday=0
            dom_ok, dow_ok = day.day in doms, weekday in dows
            # Vixie cron: with both day fields restricted, either one matching is enough
            day_ok = (dom_ok and dow_ok) if (dom_any or dow_any) else (dom_ok or dow_ok)
            if day.month in months and day_ok:
                for hour in sorted(hours):
                    for minute in sorted(minutes):
                        at = day.replace(hour=hour, minute=minute)
                        if earliest < at <= local_now:
                            return True
            day += timedelta(days=1)
        return False


# ---------------------------------------------------------------------------------------------
# the HPA v2 behaviour


def _change_in_period(events: tuple[ScaleEvent, ...], *, now: float, period: int) -> int:
    cutoff = now - period
    return sum(e.replicas for e in events if e.timestamp > cutoff)


def scale_up_limit(*, current: int, rules: ScalingRules, state: ScalingState, now: float) -> int:
    """The most instances the scale-up policies allow now (HPA's scale-up limit)."""
    if rules.select_policy is SelectPolicy.DISABLED or not rules.policies:
        return current
    proposals = []
    for policy in rules.policies:
        added = _change_in_period(state.scale_up_events, now=now, period=policy.period_seconds)
        removed = _change_in_period(state.scale_down_events, now=now, period=policy.period_seconds)
        start = current - added + removed
        if policy.type is PolicyType.PODS:
            proposals.append(start + policy.value)
        else:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    return min(proposals) if rules.select_policy is SelectPolicy.MIN else max(proposals)


def scale_down_limit(*, current: int, rules: ScalingRules, state: ScalingState, now: float) -> int:
    """The fewest instances the scale-down policies allow now (HPA's scale-down limit)."""
    if rules.select_policy is SelectPolicy.DISABLED or not rules.policies:
        return current
    proposals = []
    for policy in rules.policies:
        added = _change_in_period(state.scale_up_events, now=now, period=policy.period_seconds)
        removed = _change_in_period(state.scale_down_events, now=now, period=policy.period_seconds)
        start = current - added + removed
        if policy.type is PolicyType.PODS:
            proposals.append(start - policy.value)
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    # Min selects the smallest change, which for scale-down is the highest limit.
    return max(proposals) if rules.select_policy is SelectPolicy.MIN else min(proposals)


# ---------------------------------------------------------------------------------------------
# the decision


@dataclass(frozen=True)
class ScalingSpec:
    """What a ScalingPolicy asks for.

    `target_per_instance` is the load one instance should carry (same unit as the load).
    `startup_seconds` is how long a new instance takes to serve; the forecast must cover
    that lead time plus `horizon_seconds`, and its upper quantile is what gets provisioned.
    Predictive scaling is used only when the forecast's recent sMAPE is at most
    `max_forecast_smape` (percent) and history spans `min_history_seconds`.
    With `capacity_per_instance` (the most load one instance can serve; above
    `target_per_instance`), the forecast's point peak is provisioned at the target and its upper
    quantile only has to fit under capacity, instead of the upper quantile at the target (which
    would count the headroom twice). `predictive_scale_down_window_seconds`, when set,
    replaces the scale-down stabilization window while the forecast is trusted (its upper
    quantile over the lead time already guards against scaling down before load returns);
    reactive fallbacks keep `behavior`'s window.

    Burst envelope (used only when the forecast is not trusted and `decide` is given the
    recent load): the load over the last `burst_window_seconds` gives a level the load exceeds
    at most a share `burst_exceedance` of the time (see `burst_envelope`); like the forecast's
    upper quantile it is provisioned under `capacity_per_instance` (at the target without
    one). It needs `burst_min_history_seconds` of recent load; `burst_exceedance=None` turns
    it off. `burst_scale_down_window_seconds`, when set, replaces the scale-down
    stabilization window while the envelope provisions: the envelope itself keeps instances
    while load is bursty, so the peaks above it need not be held for the full window.
    """

    target_per_instance: float
    min_instances: int = 1
    max_instances: int = 10
    behavior: Behavior = DEFAULT_BEHAVIOR
    schedules: tuple[CronSchedule, ...] = ()
    startup_seconds: float = 30.0
    horizon_seconds: float = 60.0
    max_forecast_smape: float = 30.0
    min_history_seconds: float = 600.0
    predictive_scale_down_window_seconds: int | None = None
    capacity_per_instance: float | None = None
    burst_exceedance: float | None = 0.1
    burst_window_seconds: float = 3600.0
    burst_min_history_seconds: float = 300.0
    burst_scale_down_window_seconds: int | None = None

    def __post_init__(self) -> None:
        """Reject specs that cannot produce a decision."""
        if not self.target_per_instance > 0:
            raise ValueError("target_per_instance must be positive")
        if not 0 <= self.min_instances <= self.max_instances:
            raise ValueError("need 0 <= min_instances <= max_instances")
        if self.capacity_per_instance is not None and not (
            self.capacity_per_instance >= self.target_per_instance
        ):
            raise ValueError("capacity_per_instance must be at least target_per_instance")
        if self.burst_exceedance is not None and not 0 < self.burst_exceedance < 1:
            raise ValueError("burst_exceedance must be in (0, 1)")
        if not self.burst_window_seconds > 0:
            raise ValueError("burst_window_seconds must be positive")


@dataclass(frozen=True)
class ScalingDecision:
    """The desired instance count, the mode that produced it, why, and the numbers."""

    desired: int
    mode: str
    reason: str
    message: str
    evidence: dict[str, float]
    state: ScalingState
    fallback: str | None = None
    active_schedules: tuple[str, ...] = field(default=())


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


def _forecast_peak(forecast: Forecast, *, now: float, until: float) -> tuple[float, float] | None:
    ts = forecast.timestamps
    window = (ts > now) & (ts <= until)
    if not window.any():
        # a coarse grid may step over the window: take the first step at or after `until`
        after = ts > now
        if not after.any() or forecast.start > until + forecast.step:
            return None
        window = after & (ts <= until + forecast.step)
    return float(np.max(forecast.upper[window])), float(np.max(forecast.point[window]))


def _envelope(
    *,
    spec: ScalingSpec,
    now: float,
    recent_load: tuple[npt.ArrayLike, npt.ArrayLike] | None,
) -> tuple[BurstEnvelope | None, str]:
    """The burst envelope to provision, or None and why not ("" when it is switched off)."""
    if spec.burst_exceedance is None:
        return None, ""
    if recent_load is None:
        return None, "no recent load for a burst envelope"
    envelope = burst_envelope(
        recent_load[0],
        recent_load[1],
        now=now,
        window_seconds=spec.burst_window_seconds,
        exceedance=spec.burst_exceedance,
    )
    have = 0.0 if envelope is None else envelope.span_seconds
    if envelope is None or have < spec.burst_min_history_seconds:
        return None, (
            f"recent load spans {have:.0f}s < {spec.burst_min_history_seconds:.0f}s "
            "for a burst envelope"
        )
    return envelope, ""


def _trust_forecast(
    *,
    spec: ScalingSpec,
    forecast: Forecast | None,
    forecast_smape: float | None,
    history_seconds: float | None,
) -> tuple[str, str] | None:
    """None when the forecast may be used, else (reason, message) for the fallback."""
    if forecast is None:
        return "NoForecast", "no forecast given"
    if history_seconds is None or history_seconds < spec.min_history_seconds:
        have = 0.0 if history_seconds is None else history_seconds
        return (
            "HistoryTooShort",
            f"history {have:.0f}s < {spec.min_history_seconds:.0f}s",
        )
    if forecast_smape is None or not math.isfinite(forecast_smape):
        return "ForecastErrorUnknown", "forecast error not measured"
    if forecast_smape > spec.max_forecast_smape:
        return (
            "ForecastErrorTooHigh",
            f"forecast sMAPE {forecast_smape:.1f}% > {spec.max_forecast_smape:.1f}%",
        )
    return None


def _prune(
    state: ScalingState, *, now: float, behavior: Behavior, extra_window: int = 0
) -> ScalingState:
    keep_rec = max(
        behavior.scale_up.stabilization_window_seconds,
        behavior.scale_down.stabilization_window_seconds,
        extra_window,
    )
    periods = [p.period_seconds for p in behavior.scale_up.policies + behavior.scale_down.policies]
    keep_ev = max(periods, default=0)
    return ScalingState(
        recommendations=tuple(r for r in state.recommendations if r.timestamp > now - keep_rec),
        scale_up_events=tuple(e for e in state.scale_up_events if e.timestamp > now - keep_ev),
        scale_down_events=tuple(e for e in state.scale_down_events if e.timestamp > now - keep_ev),
    )


def _within_tolerance(*, demand: float, current: int, spec: ScalingSpec) -> tuple[bool, float]:
    if current <= 0:
        return False, math.inf if demand > 0 else 1.0
    ratio = demand / (current * spec.target_per_instance)
    if ratio >= 1.0:
        return ratio - 1.0 <= spec.behavior.scale_up.tolerance, ratio
    return 1.0 - ratio <= spec.behavior.scale_down.tolerance, ratio


def _stabilize(
    *, raw: int, current: int, now: float, behavior: Behavior, state: ScalingState, fresh: bool
) -> tuple[int, ScalingState]:
    recs = state.recommendations
    if fresh and behavior.scale_down.stabilization_window_seconds > 0:
        # HPA seeds the scale-down window with the current count so a restart cannot drop
        recs = (Recommendation(now, current),)
    up_cut = now - behavior.scale_up.stabilization_window_seconds
    down_cut = now - behavior.scale_down.stabilization_window_seconds
    up_rec, down_rec = raw, raw
    for rec in recs:
        if rec.timestamp > up_cut:
            up_rec = min(up_rec, rec.replicas)
        if rec.timestamp > down_cut:
            down_rec = max(down_rec, rec.replicas)
    stabilized = min(max(current, up_rec), down_rec)
    new_state = replace(state, recommendations=(*recs, Recommendation(now, raw)))
    return stabilized, new_state


def decide(
    *,
    now: float,
    current_instances: int,
    current_load: float,
    spec: ScalingSpec,
    state: ScalingState | None = None,
    forecast: Forecast | None = None,
    forecast_smape: float | None = None,
    history_seconds: float | None = None,
    recent_load: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> ScalingDecision:
    """Desired instances at `now` (seconds), with the reason, the evidence and the new state.

    Steps, in HPA's order: the raw recommendation (the larger of current load and, when the
    forecast is trusted, the forecast's upper quantile over start-up lead time + horizon,
    divided by `target_per_instance`; kept at the current count within the tolerance), then
    the stabilization windows, then the Pods / Percent rate limits, then the bounds (min
    raised by active schedules). Pass `state` from the previous decision.

    `recent_load` is `(timestamps, values)` of the same metric as `current_load` (what the
    controller fits its forecaster on). When the forecast is not trusted and it covers
    `burst_min_history_seconds`, the burst envelope replaces the forecast (mode "envelope");
    otherwise an untrusted forecast means plain reactive scaling (mode "reactive"). Either
    way `fallback` names why the forecast was not used.
    """
    fresh = state is None or not state.recommendations
    state = _prune(
        state or ScalingState(),
        now=now,
        behavior=spec.behavior,
        extra_window=max(
            spec.predictive_scale_down_window_seconds or 0,
            spec.burst_scale_down_window_seconds or 0,
        ),
    )
    current = max(0, int(current_instances))
    load = max(0.0, float(current_load))
    target = spec.target_per_instance
    evidence: dict[str, float] = {
        "currentInstances": float(current),
        "currentLoad": load,
        "targetPerInstance": target,
    }
    fallback = _trust_forecast(
        spec=spec, forecast=forecast, forecast_smape=forecast_smape, history_seconds=history_seconds
    )
    demand, source = load, "CurrentLoad"
    if fallback is None and forecast is not None:
        until = now + spec.startup_seconds + spec.horizon_seconds
        peak = _forecast_peak(forecast, now=now, until=until)
        if peak is None:
            fallback = (
                "ForecastDoesNotCoverLeadTime",
                "forecast does not reach start-up lead time + horizon",
            )
        else:
            upper, point = peak
            needed = upper
            if spec.capacity_per_instance is not None:
                needed = max(point, upper * target / spec.capacity_per_instance)
            evidence.update(
                forecastPeakUpper=upper,
                forecastPeakPoint=point,
                forecastDemand=needed,
                forecastSmape=float(forecast_smape or 0.0),
                leadSeconds=spec.startup_seconds + spec.horizon_seconds,
            )
            if needed > load:
                demand, source = needed, "ForecastPeak"
    if forecast_smape is not None and math.isfinite(forecast_smape):
        evidence["forecastSmape"] = float(forecast_smape)
    mode = "reactive" if fallback is not None else "predictive"
    instead = "scaling on current load"
    if fallback is not None:
        envelope, why_not = _envelope(spec=spec, now=now, recent_load=recent_load)
        if envelope is None:
            instead += f" ({why_not})" if why_not else ""
        else:
            mode = "envelope"
            needed = envelope.level
            if spec.capacity_per_instance is not None:
                needed = envelope.level * target / spec.capacity_per_instance
            evidence.update(
                burstLevel=envelope.level,
                burstMean=envelope.mean,
                burstStd=envelope.std,
                burstPeak=envelope.peak,
                burstSigmas=envelope.sigmas,
                burstExceedance=envelope.exceedance,
                burstSamples=float(envelope.samples),
                burstWindowSeconds=envelope.window_seconds,
                burstDemand=needed,
            )
            instead = (
                f"provisioning the burst envelope min(mean {envelope.mean:.4g} + "
                f"{envelope.sigmas:.2f} x sd {envelope.std:.4g}, peak {envelope.peak:.4g}) "
                f"= {envelope.level:.4g} over the last {envelope.span_seconds:.0f}s, "
                f"exceeded at most {envelope.exceedance:.0%} of the time"
            )
            if needed > load:
                demand, source = needed, "BurstEnvelope"
    evidence["demand"] = demand
    within, ratio = _within_tolerance(demand=demand, current=current, spec=spec)
    evidence["ratio"] = ratio
    raw = current if within else math.ceil(demand / target - 1e-9)
    evidence["rawRecommendation"] = float(raw)
    reason = "WithinTolerance" if within else source

    behavior = spec.behavior
    if mode == "predictive" and spec.predictive_scale_down_window_seconds is not None:
        down = replace(
            behavior.scale_down,
            stabilization_window_seconds=spec.predictive_scale_down_window_seconds,
        )
        behavior = replace(behavior, scale_down=down)
    if mode == "envelope" and spec.burst_scale_down_window_seconds is not None:
        down = replace(
            behavior.scale_down,
            stabilization_window_seconds=spec.burst_scale_down_window_seconds,
        )
        behavior = replace(behavior, scale_down=down)
    evidence["scaleDownWindowSeconds"] = float(behavior.scale_down.stabilization_window_seconds)
    stabilized, state = _stabilize(
        raw=raw, current=current, now=now, behavior=behavior, state=state, fresh=fresh
    )
    evidence["stabilizedRecommendation"] = float(stabilized)
    if stabilized != raw:
        reason = "ScaleDownStabilized" if stabilized > raw else "ScaleUpStabilized"

    active = tuple(s.name or s.cron for s in spec.schedules if s.active(now))
    floor = max([spec.min_instances, *(s.min_instances for s in spec.schedules if s.active(now))])
    floor = min(floor, spec.max_instances)
    evidence["minBound"] = float(floor)
    evidence["maxBound"] = float(spec.max_instances)

    desired = stabilized
    if current < floor or current > spec.max_instances:
        # like HPA, bounds win over rates when the current count is outside them
        desired = min(max(stabilized, floor), spec.max_instances)
        reason = "ScheduleMinimum" if active and current < floor else "OutsideBounds"
    elif stabilized > current:
        limit = max(
            current,
            scale_up_limit(current=current, rules=spec.behavior.scale_up, state=state, now=now),
        )
        evidence["scaleUpLimit"] = float(limit)
        allowed = min(limit, spec.max_instances)
        if desired > allowed:
            desired = allowed
            reason = "ScaleUpLimit" if limit < spec.max_instances else "TooManyReplicas"
    elif stabilized < current:
        limit = min(
            current,
            scale_down_limit(current=current, rules=spec.behavior.scale_down, state=state, now=now),
        )
        evidence["scaleDownLimit"] = float(limit)
        allowed = max(limit, floor)
        if desired < allowed:
            desired = allowed
            if limit > floor:
                reason = "ScaleDownLimit"
            else:
                reason = (
                    "ScheduleMinimum" if active and floor > spec.min_instances else "TooFewReplicas"
                )
    evidence["desired"] = float(desired)

    if desired > current:
        state = replace(
            state, scale_up_events=(*state.scale_up_events, ScaleEvent(now, desired - current))
        )
    elif desired < current:
        state = replace(
            state,
            scale_down_events=(*state.scale_down_events, ScaleEvent(now, current - desired)),
        )
    message = (
        f"{mode}: demand {demand:.4g} / {target:.4g} per instance -> raw {raw}, "
        f"stabilized {stabilized}, desired {desired} (was {current}); {reason}"
    )
    if fallback is not None:
        message += f"; {fallback[1]}; {instead}"
    return ScalingDecision(
        desired=desired,
        mode=mode,
        reason=reason,
        message=message,
        evidence=evidence,
        state=state,
        fallback=fallback[0] if fallback is not None else None,
        active_schedules=active,
    )
