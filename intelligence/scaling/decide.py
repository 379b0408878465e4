"""`decide`: how many instances a service should run now, and why.

Steps, in HPA's order: the demand (current load, or more when a trusted forecast or the burst
envelope asks for it), the raw recommendation (kept at the current count within the
tolerance), the stabilization windows, the Pods / Percent step limits, then the bounds (the
minimum raised by active schedules).

Cost: a call builds its new `ScalingState` once, at the end. The steps work on the state's
parts (the recommendation and event tuples, each estimator's frozen state) and on a mutable
`_Demand`, rather than on a copy of the whole state per step (about fourteen copies a call
before, a fifth of its instructions; docs/intelligence/scaling.md, "Cost").
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from intelligence.scaling._evolve import evolve
from intelligence.scaling.budget import Budget, move_budget
from intelligence.scaling.calibration import Calibration, observe, open_prediction
from intelligence.scaling.dispersion import (
    Dispersion,
    dispersion_level,
    observe_dispersion,
    quadrature_level,
    relative_sigmas,
)
from intelligence.scaling.enums import (
    CalibrationBase,
    DecisionMode,
    DispersionComposition,
    Fallback,
    Reason,
    RiskTail,
)
from intelligence.scaling.envelope import envelope_for
from intelligence.scaling.exceedance import Exceedance, observe_exceedance
from intelligence.scaling.feedback import Feedback, update_feedback
from intelligence.scaling.predictive import forecast_demand, lead_peak
from intelligence.scaling.rules import (
    History,
    kept_history,
    limit_of,
    recorded_events,
    stabilized_history,
    within_tolerance,
)
from intelligence.scaling.schedules import CronSchedule
from intelligence.scaling.types import (
    Decision,
    Observation,
    Recommendation,
    ScalingParams,
    ScalingState,
)

__all__ = ["bounds_at", "decide"]


@dataclass(slots=True)
class _Demand:
    """The load to provision, where it came from, and why the forecast was not used.

    Mutable: each call builds its own and the steps after the mode raise it in place."""

    load: float
    source: Reason
    mode: DecisionMode
    fallback: tuple[Fallback, str] | None = None
    instead: str = ""
    note: str = ""  # what raised it after its mode (dispersion headroom), for the message
    centre: float | None = None  # the mode's level in the metric's unit (centre + margin);
    # None: the demand is the current load itself
    margin: float = 0.0


def decide(
    observed: Observation, *, params: ScalingParams, state: ScalingState | None = None
) -> Decision:
    """Desired instances at `observed.now`, with the reason, the evidence and the new state.

    The raw recommendation is the larger of current load and, when the forecast is trusted,
    the forecast's upper quantile over start-up lead time + horizon, divided by
    `target_per_instance`. When the forecast is not trusted and `observed.recent_load` covers
    `burst_min_history_seconds`, the burst envelope replaces the forecast (mode envelope);
    otherwise the mode is reactive. Either way `fallback` names why the forecast was not used.
    Pass `state` from the previous decision.
    """
    fresh = state is None or not state.recommendations
    state = state or ScalingState()
    now = observed.now
    recs, ups, downs = kept_history(
        state, now=now, rates=params.behavior, extra_window=_longest_window(params)
    )
    current, load, evidence = _inputs(observed, params)
    # 1. Demand (after the observed under-provisioning, which only reports): the mode's,
    # then raised in place by the dispersion headroom, the miss feedback and the cost budget
    exceedance = _observed(params, state, now=now, load=load, current=current, evidence=evidence)
    demand, calibration = _mode_demand(observed, params, state.calibration, load, evidence)
    dispersion = _with_dispersion(observed, params, state.dispersion, demand, load, evidence)
    feedback = _with_feedback(
        params, state.feedback, demand, now=now, current=current, load=load, evidence=evidence
    )
    budget, shadow = _with_budget(
        params, state, demand, now=now, current=current, load=load, evidence=evidence
    )
    # 2. Raw recommendation
    raw, reason = _raw_recommendation(demand, current=current, params=params, evidence=evidence)
    # 3. Stabilization windows
    stabilized, recs, reason = _stabilized(
        params,
        demand.mode,
        raw,
        reason,
        now=now,
        current=current,
        recommendations=recs,
        fresh=fresh,
        evidence=evidence,
    )
    # 4. and 5. Rate limits, then bounds
    desired, reason, active = _bound(
        params,
        now=now,
        current=current,
        stabilized=stabilized,
        history=(recs, ups, downs),
        reason=reason,
        evidence=evidence,
    )
    evidence["desired"] = float(desired)
    message = _message(
        params, demand, feedback, budget, (raw, stabilized, desired, current), reason
    )
    ups, downs = recorded_events(ups, downs, now=now, current=current, desired=desired)
    return Decision(
        desired=desired,
        mode=demand.mode,
        reason=reason,
        message=message,
        evidence=evidence,
        state=evolve(  # the one copy of the state a call makes
            state,
            recommendations=recs,
            scale_up_events=ups,
            scale_down_events=downs,
            calibration=calibration,
            exceedance=exceedance,
            feedback=feedback,
            dispersion=dispersion,
            budget=budget,
            shadow=shadow,
        ),
        fallback=demand.fallback[0] if demand.fallback is not None else None,
        active_schedules=active,
    )


def _inputs(observed: Observation, params: ScalingParams) -> tuple[int, float, dict[str, float]]:
    """The current count and load (never negative) and the evidence they open."""
    current = max(0, int(observed.current_instances))
    load = max(0.0, float(observed.current_load))
    evidence: dict[str, float] = {
        "currentInstances": float(current),
        "currentLoad": load,
        "targetPerInstance": params.target_per_instance,
    }
    return current, load, evidence


def _longest_window(params: ScalingParams) -> int:
    """The longest scale-down window a mode or the start-up hold can put in effect, beyond
    `behavior`'s: how long the recommendations are kept for (`kept_history`)."""
    return max(
        params.predictive_scale_down_window_seconds or 0,
        params.burst_scale_down_window_seconds or 0,
        params.calibrated_scale_down_window_seconds or 0,
        _hold_seconds(params) or 0,
    )


def _observed(
    params: ScalingParams,
    state: ScalingState,
    *,
    now: float,
    load: float,
    current: int,
    evidence: dict[str, float],
) -> Exceedance:
    """The observed under-provisioning moved by this decision (`exceedance`), into evidence."""
    exceedance = observe_exceedance(
        state.exceedance,
        now=now,
        load=load,
        current=current,
        serves=params.capacity_per_instance or params.target_per_instance,
        startup=params.startup_seconds,
    )
    evidence["observedUnderProvisioning"] = exceedance.share
    evidence["observedSeconds"] = exceedance.seconds
    return exceedance


def _message(
    params: ScalingParams,
    demand: _Demand,
    feedback: Feedback,
    budget: Budget,
    counts: tuple[int, int, int, int],
    reason: Reason,
) -> str:
    """The decision in one line: demand, the counts (raw, stabilized, desired, current), the
    reason, then why the forecast was not used and what raised the demand."""
    raw, stabilized, desired, current = counts
    message = (
        f"{demand.mode}: demand {demand.load:.4g} / {params.target_per_instance:.4g} per "
        f"instance -> raw {raw}, stabilized {stabilized}, desired {desired} (was {current}); "
        f"{reason}"
    )
    if demand.fallback is not None:
        message += f"; {demand.fallback[1]}; {demand.instead}"
    if demand.note:
        message += f"; {demand.note}"
    if feedback.headroom != 0:
        message += f"; miss feedback x{1 + feedback.headroom:.3f}"
    if params.cost_budget is not None and params.predictive:
        message += (
            f"; cost budget {params.cost_budget:.3g}x reactive ({budget.shadow}):"
            f" x{1 + budget.headroom:.3f}"
        )
    return message


def _mode_demand(
    observed: Observation,
    params: ScalingParams,
    cal: Calibration,
    load: float,
    evidence: dict[str, float],
) -> tuple[_Demand, Calibration]:
    """The mode's demand: the calibrated level once calibrated (`_calibrated`), else the
    forecast, the burst envelope or the current load (`_demand`); and the moved calibration."""
    demand, cal = _calibrated(observed, params, cal, load, evidence)
    if demand is None:
        demand = _demand(observed, params, load, evidence)
    return demand, cal


def _calibrated(
    observed: Observation,
    params: ScalingParams,
    cal: Calibration,
    load: float,
    evidence: dict[str, float],
) -> tuple[_Demand | None, Calibration]:
    """Score the policy's earlier predictions against `load`, open one for now, then the
    calibrated demand (None until calibrated, or while a trusted forecast decides)."""
    alpha = params.target_under_provisioning
    if alpha is None or not params.predictive:
        return None, cal
    now, lead = observed.now, params.startup_seconds + params.horizon_seconds
    cal = observe(
        cal,
        now=now,
        load=load,
        lead=lead,
        target=alpha,
        step=params.calibration_step,
        window=params.calibration_window,
        half_life=params.calibration_scale_seconds,
    )
    peak, fallback = lead_peak(params, observed)
    base = load if peak is None or not params.calibrate_forecast else max(load, peak[1])
    if cal.mean is not None and params.calibration_base is not CalibrationBase.LOAD:
        mean_only = params.calibration_base is CalibrationBase.MEAN
        base = cal.mean if mean_only else max(base, cal.mean)
    scale = cal.scale(params.target_per_instance)
    headroom = cal.headroom(target=alpha, min_scores=params.calibration_min_scores)
    level = math.inf
    if headroom is not None:
        level = max(0.0, base + headroom * scale)
        if params.calibration_cap_at_peak and cal.high is not None:  # as the burst envelope
            level = min(level, max(cal.high, base))
    cal = open_prediction(
        cal, now=now, base=base, scale=scale, headroom=(level - base) / scale, lead=lead
    )
    if headroom is None or (fallback is None and not params.calibrate_forecast):
        return None, cal
    demand = _calibrated_demand(
        params, cal, load=load, base=base, scale=scale, headroom=headroom, level=level
    )
    evidence.update(demand.evidence)
    demand.demand.fallback = fallback
    return demand.demand, cal


@dataclass(frozen=True)
class _Calibrated:
    demand: _Demand
    evidence: dict[str, float]


def _calibrated_demand(
    params: ScalingParams,
    cal: Calibration,
    *,
    load: float,
    base: float,
    scale: float,
    headroom: float,
    level: float,
) -> _Calibrated:
    """The covering `level` under capacity (at least current load), its evidence and words."""
    target, alpha = params.target_per_instance, params.target_under_provisioning or 0.0
    needed = level
    if params.capacity_per_instance is not None:
        needed = level * target / params.capacity_per_instance
    miss_level = alpha if cal.level is None else cal.level
    evidence = {
        "targetUnderProvisioning": alpha,
        "calibrationBase": base,
        "calibrationScale": scale,
        "calibrationHeadroom": headroom,
        "calibrationMissLevel": miss_level,
        "calibrationMissRate": cal.miss_rate,
        "calibrationScores": float(len(cal.scores)),
        "coveringLevel": level,
        "calibratedDemand": needed,
    }
    cap = f", recent peak {cal.high:.4g}" if params.calibration_cap_at_peak and cal.high else ""
    instead = (
        f"provisioning the calibrated level min({base:.4g} + {headroom:.3g} x {scale:.4g}{cap})"
        f" = {level:.4g} (quantile {1 - miss_level:.3f} of {len(cal.scores)} scored "
        f"predictions, recent miss rate {cal.miss_rate:.1%}, target {alpha:.1%})"
    )
    if needed > load:
        demand = _Demand(
            needed,
            Reason.CALIBRATED_LEVEL,
            DecisionMode.CALIBRATED,
            None,
            instead,
            centre=base,
            margin=max(0.0, level - base),
        )
    else:
        demand = _Demand(load, Reason.CURRENT_LOAD, DecisionMode.CALIBRATED, None, instead)
    return _Calibrated(demand, evidence)


def _demand(
    observed: Observation, params: ScalingParams, load: float, evidence: dict[str, float]
) -> _Demand:
    """Current load, raised to what a trusted forecast or else the burst envelope asks for."""
    if not params.predictive:
        return _Demand(load, Reason.CURRENT_LOAD, DecisionMode.REACTIVE)
    needed, peak, fallback = forecast_demand(params, observed, evidence)
    smape = observed.forecast_smape
    if smape is not None and math.isfinite(smape):
        evidence["forecastSmape"] = float(smape)
    if fallback is None:
        if needed is not None and peak is not None and needed > load:
            upper, point = peak
            return _Demand(
                needed,
                Reason.FORECAST_PEAK,
                DecisionMode.PREDICTIVE,
                centre=point,
                margin=max(0.0, upper - point),
            )
        return _Demand(load, Reason.CURRENT_LOAD, DecisionMode.PREDICTIVE)
    envelope, why_not = envelope_for(params, now=observed.now, recent_load=observed.recent_load)
    if envelope is None:
        instead = "scaling on current load" + (f" ({why_not})" if why_not else "")
        return _Demand(load, Reason.CURRENT_LOAD, DecisionMode.REACTIVE, fallback, instead)
    needed = envelope.level
    if params.capacity_per_instance is not None:
        needed = envelope.level * params.target_per_instance / params.capacity_per_instance
    evidence.update(
        burstLevel=envelope.level,
        burstMean=envelope.mean,
        burstStd=envelope.std,
        burstPeak=envelope.peak,
        burstSigmas=envelope.sigmas,
        burstExceedance=envelope.exceedance,
        burstSamples=float(envelope.samples),
        burstWindowSeconds=envelope.window_seconds,
        burstTrendSeconds=envelope.trend_seconds or 0.0,
        burstDemand=needed,
    )
    if needed > load:
        return _Demand(
            needed,
            Reason.BURST_ENVELOPE,
            DecisionMode.ENVELOPE,
            fallback,
            envelope.describe(),
            centre=envelope.mean,
            margin=max(0.0, envelope.level - envelope.mean),
        )
    return _Demand(load, Reason.CURRENT_LOAD, DecisionMode.ENVELOPE, fallback, envelope.describe())


def _raw_recommendation(
    demand: _Demand, *, current: int, params: ScalingParams, evidence: dict[str, float]
) -> tuple[int, Reason]:
    """`ceil(demand / target)`, or the current count within the tolerance."""
    evidence["demand"] = demand.load
    within, ratio = within_tolerance(
        demand=demand.load,
        current=current,
        target=params.target_per_instance,
        rates=params.behavior,
    )
    evidence["ratio"] = ratio
    raw = current if within else math.ceil(demand.load / params.target_per_instance - 1e-9)
    evidence["rawRecommendation"] = float(raw)
    return raw, Reason.WITHIN_TOLERANCE if within else demand.source


def _stabilized(
    params: ScalingParams,
    mode: DecisionMode,
    raw: int,
    reason: Reason,
    *,
    now: float,
    current: int,
    recommendations: tuple[Recommendation, ...],
    fresh: bool,
    evidence: dict[str, float],
) -> tuple[int, tuple[Recommendation, ...], Reason]:
    """`raw` through the stabilization windows (the scale-down one as `mode` has it): the
    stabilized count, the recommendations with `raw` recorded, and the reason (the window's
    when it held the count back)."""
    window = _scale_down_window(mode, params)
    evidence["scaleDownWindowSeconds"] = float(window)
    stabilized, recommendations = stabilized_history(
        raw=raw,
        current=current,
        now=now,
        up_window=params.behavior.scale_up.stabilization_window_seconds,
        down_window=window,
        recommendations=recommendations,
        fresh=fresh,
    )
    evidence["stabilizedRecommendation"] = float(stabilized)
    if stabilized != raw:
        reason = Reason.SCALE_DOWN_STABILIZED if stabilized > raw else Reason.SCALE_UP_STABILIZED
    return stabilized, recommendations, reason


def _scale_down_window(mode: DecisionMode, params: ScalingParams) -> int:
    """The scale-down stabilization window in effect: the mode's own replaces `behavior`'s,
    raised to `scale_down_window_startups` x (start-up + horizon) when that is set."""
    window = {
        DecisionMode.PREDICTIVE: params.predictive_scale_down_window_seconds,
        DecisionMode.ENVELOPE: params.burst_scale_down_window_seconds,
        DecisionMode.CALIBRATED: params.calibrated_scale_down_window_seconds,
    }.get(mode)
    if window is None:
        window = params.behavior.scale_down.stabilization_window_seconds
    hold = _hold_seconds(params)
    return window if hold is None else max(window, hold)


def _hold_seconds(params: ScalingParams) -> int | None:
    if params.scale_down_window_startups is None:
        return None
    lead = params.startup_seconds + params.horizon_seconds
    return math.ceil(params.scale_down_window_startups * lead)


def _with_dispersion(
    observed: Observation,
    params: ScalingParams,
    disp: Dispersion,
    demand: _Demand,
    load: float,
    evidence: dict[str, float],
) -> Dispersion:
    """`demand` raised in place so that its per-second level fits under capacity: `rate + z
    sqrt(rate x index)` with the rate and the margin as `params.dispersion_composition` says
    (see `DispersionComposition`), the index of dispersion estimated from the window means
    (`observed.recent_means`, then `load` at `observed.now`; see `dispersion`), which are
    returned."""
    sigmas, window = params.dispersion_sigmas, params.dispersion_window_seconds
    if sigmas is None or window is None or not params.predictive:
        return disp
    sample = params.dispersion_sample_seconds or window
    now, half_life = observed.now, params.dispersion_half_life_seconds
    for at, value in (*observed.recent_means, (now, load)):
        if at <= now and math.isfinite(value):
            disp = observe_dispersion(
                disp, now=at, load=max(0.0, value), sample=sample, half_life=half_life
            )
    index = disp.index(window, sample)
    if index is None:
        return disp
    sigmas = _dispersion_sigmas(params, demand.load, index)
    level, words = _composed_level(params.dispersion_composition, demand, index, sigmas)
    needed = level
    if params.capacity_per_instance is not None:
        needed = level * params.target_per_instance / params.capacity_per_instance
    cap = params.dispersion_max_headroom
    capped = cap is not None and needed > demand.load * (1.0 + cap)
    if capped:
        needed = demand.load * (1.0 + (cap or 0.0))
    evidence.update(
        dispersionIndex=index,
        dispersionSigmas=sigmas,
        dispersionLevel=level,
        dispersionDemand=needed,
        dispersionSamples=float(disp.products),
    )
    if needed <= demand.load:
        return disp
    note = f"dispersion headroom: {words} = {level:.4g} under capacity"
    if capped:
        note += f", capped at {cap or 0.0:.0%} above the mode's demand"
    demand.load, demand.source, demand.note = needed, Reason.DISPERSION_HEADROOM, note
    return disp


def _composed_level(
    composition: DispersionComposition, demand: _Demand, index: float, sigmas: float
) -> tuple[float, str]:
    """The per-second level `demand` composes with the dispersion margin as `composition`
    says (see `DispersionComposition`), and the formula in words (for the message)."""
    centre = demand.load if demand.centre is None else demand.centre
    margin = demand.margin
    if composition is DispersionComposition.DEMAND:
        level = dispersion_level(demand.load, index=index, sigmas=sigmas)
        words = (
            f"demand {demand.load:.4g} + {sigmas:.3g} x sqrt({demand.load:.4g} x index {index:.3g})"
        )
    elif composition is DispersionComposition.LEVEL:
        level = dispersion_level(centre + margin, index=index, sigmas=sigmas)
        words = (
            f"per-second level {centre + margin:.4g} + {sigmas:.3g} x "
            f"sqrt({centre + margin:.4g} x index {index:.3g})"
        )
    else:
        level = quadrature_level(centre, margin, index=index, sigmas=sigmas)
        words = (
            f"per-second level {centre:.4g} + sqrt({margin:.4g}^2 + {sigmas:.3g}^2 x "
            f"{centre:.4g} x index {index:.3g})"
        )
    return level, words


def _dispersion_sigmas(params: ScalingParams, rate: float, index: float) -> float:
    """`dispersion_sigmas`, or with `dispersion_risk_ratio` the z that prices the margin
    against the risk the target's own margin leaves at `rate` (`relative_sigmas`)."""
    sigmas = params.dispersion_sigmas or 0.0
    if params.dispersion_risk_ratio is None:
        return sigmas
    spare = 0.0
    if params.capacity_per_instance is not None:
        spare = params.capacity_per_instance / params.target_per_instance - 1.0
    return relative_sigmas(
        rate,
        index=index,
        spare=spare,
        risk_ratio=params.dispersion_risk_ratio,
        sigmas=sigmas,
        cantelli=params.dispersion_risk_tail is RiskTail.CANTELLI,
    )


def _with_feedback(
    params: ScalingParams,
    fb: Feedback,
    demand: _Demand,
    *,
    now: float,
    current: int,
    load: float,
    evidence: dict[str, float],
) -> Feedback:
    """`demand` times 1 + the miss-feedback headroom (in place), moved first by this
    decision's miss; the moved feedback."""
    target = params.miss_feedback_target
    if target is None:
        return fb
    serves = params.capacity_per_instance or params.target_per_instance
    missed = load > current * serves * (1 + 1e-9)
    fb = update_feedback(
        fb,
        now=now,
        missed=missed,
        target=target,
        step=params.miss_feedback_step,
        cap=params.miss_feedback_cap,
        floor=params.miss_feedback_floor,
    )
    evidence.update(
        missFeedbackTarget=target, missFeedbackHeadroom=fb.headroom, visibleMiss=float(missed)
    )
    _raise(demand, fb.headroom, load)
    return fb


def _with_budget(
    params: ScalingParams,
    state: ScalingState,
    demand: _Demand,
    *,
    now: float,
    current: int,
    load: float,
    evidence: dict[str, float],
) -> tuple[Budget, ScalingState | None]:
    """`demand` times 1 + the cost budget's headroom (in place), moved first by the gap since
    the last decision; the reactive shadow stepped on `load` when it is due (see `budget`).
    Returns the budget and the shadow's state."""
    ratio = params.cost_budget
    if ratio is None or not params.predictive:
        return state.budget, state.shadow
    budget = move_budget(
        state.budget,
        now=now,
        current=current,
        ratio=ratio,
        step=params.cost_budget_step,
        cap=params.cost_budget_cap,
        floor=params.cost_budget_floor,
    )
    shadow_state = state.shadow
    if budget.due(now):
        count = current if budget.shadow is None else budget.shadow
        step = decide(Observation(now, count, load), params=_reactive(params), state=state.shadow)
        budget = evolve(budget, shadow=step.desired, stepped=now)
        shadow_state = step.state
    evidence.update(
        costBudget=ratio,
        costBudgetHeadroom=budget.headroom,
        reactiveInstances=float(budget.shadow or 0),
    )
    _raise(demand, budget.headroom, load)
    return budget, shadow_state


def _raise(demand: _Demand, headroom: float, load: float) -> None:
    """`demand` times `1 + headroom` (a factor of the miss feedback or the cost budget), never
    below current `load`; unchanged at 0."""
    if headroom != 0:
        demand.load = max(demand.load * (1 + headroom), load)


@functools.lru_cache(maxsize=64)
def _reactive(params: ScalingParams) -> ScalingParams:
    """HPA on the same metric: `params` without the forecast, schedules, miss feedback or
    budget (its bounds, target and behavior kept)."""
    return dataclasses.replace(
        params, predictive=False, schedules=(), miss_feedback_target=None, cost_budget=None
    )


def bounds_at(params: ScalingParams, now: float) -> tuple[int, int, tuple[CronSchedule, ...]]:
    """(floor, ceiling, active schedules) at `now`: `min_instances` raised by the schedules
    active then, never above `max_instances`; the ceiling is `max_instances`. What `decide`
    clamps to, and what a caller without a metric holds within."""
    schedules = tuple(s for s in params.schedules if s.active(now))
    floor = max([params.min_instances, *(s.min_instances for s in schedules)])
    return min(floor, params.max_instances), params.max_instances, schedules


def _bound(
    params: ScalingParams,
    *,
    now: float,
    current: int,
    stabilized: int,
    history: History,
    reason: Reason,
    evidence: dict[str, float],
) -> tuple[int, Reason, tuple[str, ...]]:
    """The step limits (read off `history`'s events), then the bounds (min raised by active
    schedules); like HPA, bounds win over step limits when the current count is outside them.
    Returns the desired count, the reason and the names of the active schedules."""
    floor, ceiling, schedules = bounds_at(params, now)
    active = tuple(s.name or s.cron for s in schedules)
    evidence["minBound"] = float(floor)
    evidence["maxBound"] = float(ceiling)
    rates = params.behavior
    if current < floor or current > ceiling:
        desired = min(max(stabilized, floor), ceiling)
        by_schedule = bool(active) and current < floor
        return desired, Reason.SCHEDULE_MINIMUM if by_schedule else Reason.OUTSIDE_BOUNDS, active
    if stabilized > current:
        limit = max(
            current,
            limit_of(current=current, rules=rates.scale_up, history=history, now=now, up=True),
        )
        evidence["scaleUpLimit"] = float(limit)
        if stabilized > min(limit, ceiling):
            why = Reason.SCALE_UP_LIMIT if limit < ceiling else Reason.TOO_MANY_REPLICAS
            return min(limit, ceiling), why, active
    elif stabilized < current:
        limit = min(
            current,
            limit_of(current=current, rules=rates.scale_down, history=history, now=now, up=False),
        )
        evidence["scaleDownLimit"] = float(limit)
        if stabilized < max(limit, floor):
            return max(limit, floor), _scale_down_floor_reason(params, limit, floor, active), active
    return stabilized, reason, active


def _scale_down_floor_reason(
    params: ScalingParams, limit: int, floor: int, active: tuple[str, ...]
) -> Reason:
    if limit > floor:
        return Reason.SCALE_DOWN_LIMIT
    if active and floor > params.min_instances:
        return Reason.SCHEDULE_MINIMUM
    return Reason.TOO_FEW_REPLICAS
