"""``analyze``: a ScalingPolicy's decision now, made fresh and applied to nothing.

The policy is mapped onto ``intelligence.scaling.ScalingParams`` by ``adapters.scaling`` (the
operator's own mapping), and ``intelligence.scaling.decide`` runs on what the policy's status
last observed: the target's instances, the forecast with its backtest error, and the
HPA behaviour state (stabilization windows, step limits) the controller keeps in status. So the
answer is what the controller would decide if it synced now with that load; ``load`` may be
given to ask "what if the load were this". Pure: no I/O, the clock is a parameter.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from adapters.scaling import scaling_params
from apis.v1alpha1.scalingpolicy import ScalingMode, ScalingPolicy
from apis.v1alpha1.xynergyservice import ResolvedSizing
from intelligence.forecasting import Forecast
from intelligence.scaling import Decision, Observation, ScalingState, decide

__all__ = ["dry_run"]


def _state(text: str | None) -> ScalingState | None:
    """The behaviour state kept in status; unreadable or absent: HPA's fresh start."""
    try:
        data: Any = json.loads(text) if text else None
        return ScalingState.from_dict(data) if isinstance(data, dict) else None
    except (ValueError, TypeError, KeyError):
        return None


def _forecast(policy: ScalingPolicy) -> Forecast | None:
    """The status's forecast points as a regular-grid forecast (None under two points)."""
    st = policy.status
    if st is None or not st.model or len(st.forecast or []) < 2:
        return None
    points = st.forecast or []
    times = [p.time.timestamp() for p in points]
    value = np.array([p.value for p in points], dtype=np.float64)
    quantile = policy.spec.forecast.quantile
    return Forecast(
        start=times[0],
        step=times[1] - times[0],
        point=value,
        lower=np.array([p.value if p.lower is None else p.lower for p in points]),
        upper=np.array([p.value if p.upper is None else p.upper for p in points]),
        level=2 * quantile - 1,
        model=st.model,
    )


def _observation(
    policy: ScalingPolicy, sizing: ResolvedSizing | None, now: float, load: float
) -> Observation:
    st = policy.status
    current = st.current_instances if st is not None else None
    if current is None:
        current = sizing.min_instances if sizing is not None else 0
    forecast = _forecast(policy) if policy.spec.mode is ScalingMode.PREDICTIVE else None
    return Observation(
        now=now,
        current_instances=current,
        current_load=load,
        forecast=forecast,
        forecast_smape=st.model_error if st is not None else None,
        # the controller reports a model only once it was fitted on enough history
        history_seconds=None if forecast is None else float("inf"),
    )


def dry_run(
    policy: ScalingPolicy,
    sizing: ResolvedSizing | None,
    *,
    now: float,
    load: float,
) -> Decision:
    """The decision ``policy`` makes at ``now`` (seconds) with ``load`` for the target sized
    ``sizing`` (None: unknown; the policy's own bounds then).

    Raises ValueError naming the spec field the mapping refuses (``spec.schedules[0]...``).
    """
    params = scaling_params(policy, sizing)
    observed = _observation(policy, sizing, now, load)
    st = policy.status
    return decide(observed, params=params, state=_state(st.scaling_state if st else None))
