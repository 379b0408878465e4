"""ScalingPolicy: predictive scaling of a XynergyService.

Forecast load (seasonality, trend), scale ahead of it within bounds, and fall back to reactive
scaling when the forecast is poor. `behavior` follows HPA v2 (stabilization windows, policies).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from apis.base import (
    Duration,
    PositiveDuration,
    SpecModel,
    StatusModel,
    cel,
    duration_at_least,
    validations,
)
from apis.conditions import Condition
from apis.v1alpha1.common import (
    CrdInfo,
    PrinterColumn,
    Resource,
    TargetRef,
    conditions_field,
    ready_columns,
)

__all__ = [
    "Behavior",
    "ForecastPoint",
    "ForecastSpec",
    "MetricSource",
    "MetricSpec",
    "ScaledTarget",
    "ScalingDecision",
    "ScalingMode",
    "ScalingPolicy",
    "ScalingPolicyRule",
    "ScalingPolicySpec",
    "ScalingPolicyStatus",
    "ScalingRules",
    "Schedule",
]


class ScalingMode(StrEnum):
    """How desired instances are decided."""

    REACTIVE = "reactive"
    PREDICTIVE = "predictive"
    SCHEDULED = "scheduled"


class MetricSource(StrEnum):
    """Where the load metric comes from."""

    PROMETHEUS = "prometheus"
    CLOUD_MONITORING = "cloudMonitoring"


class MetricSpec(SpecModel):
    """The load signal and how much of it one instance handles."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.source != 'prometheus' || has(self.query)",
                "metric.query (PromQL) is required when metric.source is prometheus",
                field_path=".query",
            ),
            cel(
                "self.source != 'cloudMonitoring' || has(self.metricType)",
                "metric.metricType is required when metric.source is cloudMonitoring",
                field_path=".metricType",
            ),
            cel(
                "!has(self.averagingWindowSeconds) || self.source == 'prometheus'",
                "metric.averagingWindowSeconds is read with Prometheus range queries: set it "
                "only when metric.source is prometheus",
                field_path=".averagingWindowSeconds",
            ),
            cel(
                "!has(self.capacityPerInstance) || self.capacityPerInstance >= "
                "self.targetPerInstance",
                "metric.capacityPerInstance must be at least metric.targetPerInstance",
                field_path=".capacityPerInstance",
            ),
        )
    )

    source: MetricSource
    """prometheus or cloudMonitoring."""
    query: str | None = Field(default=None, min_length=1, max_length=4096)
    """PromQL query returning the load (e.g. requests per second) as one series."""
    metric_type: str | None = Field(
        default=None, max_length=512, pattern=r"^[a-z0-9_.]+(/[A-Za-z0-9_.]+)+$"
    )
    """Cloud Monitoring metric type, e.g. run.googleapis.com/request_count."""
    prometheus_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    """Prometheus base URL; the operator's default when unset."""
    target_per_instance: float = Field(gt=0)
    """Load one instance should carry, in the metric's unit (e.g. 50 requests/s)."""
    capacity_per_instance: float | None = Field(default=None, gt=0)
    """The most load one instance can serve, in the same unit (as Knative's
    containerConcurrency is to its target), at least targetPerInstance. Set, the margins for
    load above the expected one (the forecast's upper quantile, the burst envelope, the
    dispersion headroom) need only fit under it, while the expected load is still provisioned
    at the target. Unset, the target counts as the limit and the margins are provisioned at
    it."""

    averaging_window_seconds: int | None = Field(default=None, ge=1, le=3600)
    """The span the query averages over, in seconds (15 for `rate(x[15s])`). Set, a predictive
    policy adds headroom for the per-second load the average hides (the dispersion headroom):
    every sync reads the query at 5 s steps (or the largest of 4, 3, 2, 1 s dividing the
    window) since the last one, estimates how far the per-second load scatters around its
    average, and provisions for a per-second level exceeded 0.4 times as often as the level
    the target alone leaves (at most 3 sigmas of that scatter, and at most 30 % above the
    demand without it). Unset (a gauge, or a window not known): no such headroom."""

    @model_validator(mode="after")
    def _capacity_above_target(self) -> MetricSpec:
        capacity = self.capacity_per_instance
        if capacity is not None and capacity < self.target_per_instance:
            raise ValueError(
                "metric.capacityPerInstance must be at least metric.targetPerInstance "
                f"({self.target_per_instance}), got {capacity}"
            )
        return self


Seasonality = Literal["daily", "weekly"]


class ForecastSpec(SpecModel):
    """How load is forecast and when the forecast is trusted."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "duration(self.minimumHistory) <= duration(self.historyWindow)",
                "forecast.minimumHistory must not exceed forecast.historyWindow",
                field_path=".minimumHistory",
            ),
        )
    )

    horizon: PositiveDuration = "30m"
    """How far ahead to forecast: the model's reach and status.forecast's window. Decisions
    provision over startupSeconds + bufferSeconds, not over the horizon."""
    seasonalities: list[Seasonality] = Field(
        default_factory=lambda: list[Seasonality](["daily", "weekly"]),
        max_length=2,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Seasonal cycles to model."""
    history_window: PositiveDuration = "336h"
    """How much history to fit on (default 14 days)."""
    minimum_history: Duration = "24h"
    """Below this much history the policy scales reactively and says so."""
    max_error_percent: float = Field(default=30.0, gt=0, le=1000)
    """Recent forecast error (MAPE, percent) above which the policy falls back to reactive."""
    quantile: float = Field(default=0.9, gt=0.5, lt=1.0)
    """Upper quantile of the forecast to provision for."""
    startup_seconds: int = Field(default=30, ge=0, le=3600)
    """Start-up lead time of one instance; scaling happens this much ahead."""
    buffer_seconds: int = Field(default=15, ge=0, le=3600)
    """How much further than startupSeconds a trusted forecast is provisioned for: the
    decision provisions the forecast's upper peak over the next startupSeconds +
    bufferSeconds (like the scheduling buffer of AWS predictive scaling). 15 s covers one
    interval and one metric window; each minute more costs instance-hours on every rise."""


class Schedule(SpecModel):
    """A floor on instances during a recurring time window."""

    cron: str = Field(min_length=9, max_length=128, pattern=r"^\s*(\S+\s+){4}\S+\s*$")
    """Five-field cron expression for when the window starts, e.g. `0 8 * * 1-5`."""
    duration: PositiveDuration
    """How long the window lasts."""
    min_instances: int = Field(ge=0, le=1000)
    """Fewest instances during the window."""
    timezone: str = Field(default="UTC", max_length=64, pattern=r"^[A-Za-z_]+(/[A-Za-z_+-]+)*$")
    """IANA time zone of the cron expression."""


MIN_INTERVAL = "1s"
"""The shortest `spec.interval` (shorter is a hot sync loop; HPA's own period is 15 s)."""

_INTERVAL_CHECK, _INTERVAL_SCHEMA = duration_at_least(
    MIN_INTERVAL,
    f"spec.interval must be a duration of at least {MIN_INTERVAL}, such as 15s "
    "(a shorter interval is a hot sync loop)",
)
SyncInterval = Annotated[str, _INTERVAL_CHECK, _INTERVAL_SCHEMA]


class ScalingPolicyRule(SpecModel):
    """One HPA v2 scaling policy: at most `value` Pods or Percent per `periodSeconds`."""

    type: Literal["Pods", "Percent"]
    """Pods (absolute) or Percent (of current instances)."""
    value: int = Field(gt=0, le=10000)
    """Amount of change allowed per period."""
    period_seconds: int = Field(gt=0, le=1800)
    """Window the change is measured over."""


class ScalingRules(SpecModel):
    """Behaviour in one direction (HPAScalingRules)."""

    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    """Look back this long and take the safest recommendation (HPA default 0 up, 300 down)."""
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    """Which policy wins when several apply; Disabled stops scaling in this direction."""
    policies: list[ScalingPolicyRule] | None = Field(
        default=None, max_length=10, json_schema_extra={"x-kubernetes-list-type": "atomic"}
    )
    """Limits on how fast instances change."""
    tolerance: float | None = Field(default=None, ge=0, le=1)
    """Ignore changes smaller than this fraction (HPA default 0.1)."""


class Behavior(SpecModel):
    """Scale-up and scale-down behaviour, as in HPA v2."""

    scale_up: ScalingRules | None = None
    """Rules when adding instances."""
    scale_down: ScalingRules | None = None
    """Rules when removing instances. With no stabilizationWindowSeconds, the predictive and
    envelope modes use 120 s and the reactive fallback HPA's 300 s; a written window is every
    mode's."""


class ScalingPolicySpec(SpecModel):
    """Desired behaviour of a ScalingPolicy."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.minInstances) || !has(self.maxInstances)"
                " || self.minInstances <= self.maxInstances",
                "minInstances must be less than or equal to maxInstances",
                field_path=".minInstances",
            ),
            cel(
                "self.mode != 'scheduled' || (has(self.schedules) && size(self.schedules) > 0)",
                "schedules must list at least one window when mode is scheduled",
                field_path=".schedules",
            ),
            cel(
                "!has(self.schedules) || !has(self.maxInstances)"
                " || self.schedules.all(s, s.minInstances <= self.maxInstances)",
                "schedules[].minInstances must not exceed maxInstances",
                field_path=".schedules",
            ),
        )
    )

    target_ref: TargetRef
    """The XynergyService to scale."""
    metric: MetricSpec
    """The load signal."""
    mode: ScalingMode = ScalingMode.PREDICTIVE
    """reactive (like HPA), predictive (forecast, reactive fallback) or scheduled."""
    forecast: ForecastSpec = Field(default_factory=ForecastSpec)
    """Forecasting settings (predictive mode)."""
    schedules: list[Schedule] | None = Field(
        default=None, max_length=32, json_schema_extra={"x-kubernetes-list-type": "atomic"}
    )
    """Recurring windows with an instance floor (honoured in every mode)."""
    min_instances: int | None = Field(default=None, ge=0, le=1000)
    """Fewest instances; the target's (its scaling.minInstances, else 1) when unset. Never
    below the target's own minimum (a lower value is raised to it)."""
    max_instances: int | None = Field(default=None, ge=1, le=1000)
    """Most instances; the target's (its scaling.maxInstances, else its profile's) when unset.
    Never above the target's own maximum, nor below its minimum."""
    behavior: Behavior | None = None
    """How fast to scale up and down."""
    target_under_provisioning: float | None = Field(default=None, gt=0, le=0.5)
    """The operating point: the share of time the load may exceed what is provisioned (0.02:
    more headroom and instance-hours, 0.2: fewer). It is the burst envelope's exceedance and,
    unless forecast.quantile is set, the forecast's upper quantile is 1 minus it. Unset: 0.1
    (the envelope's default; the forecast keeps forecast.quantile, 0.9 by default)."""
    interval: SyncInterval = "15s"
    """How often to decide; at least 1s, 15 s by default, HPA's own sync period. A policy that
    decides less often than HPA cannot follow a rise HPA follows (docs/intelligence/scaling.md:
    deciding every 30 s it was worse than HPA on a third of the replayed traces); 5 s gives the
    replay protocol's figures on a metric averaged over 15 s or less."""
    dry_run: bool = False
    """Decide and report in status, but do not change the target. A dry run is never stalled
    by another autoscaler on the target (its Ready message names it) and owns nothing."""
    paused: bool = False
    """When true the policy neither reads metrics nor decides nor acts (status says so), and
    owns nothing: a younger policy on the target may act."""


class ScalingDecision(StatusModel):
    """One decision of desired instances."""

    time: dt.datetime
    """When it was decided."""
    from_instances: int = Field(alias="from")
    """Instances before."""
    to_instances: int = Field(alias="to")
    """Instances decided."""
    reason: str
    """Why, as a CamelCase word (e.g. ForecastPeak, ScaleDownStabilized, MetricsUnavailable)."""
    message: str | None = Field(default=None, max_length=2048)
    """The decision in words, with the numbers that led to it."""


class ForecastPoint(StatusModel):
    """One forecast value."""

    time: dt.datetime
    """Time the value is for."""
    value: float
    """Point forecast."""
    lower: float | None = None
    """Lower bound (the quantile mirroring the policy's)."""
    upper: float | None = None
    """Upper bound at the policy's quantile."""


class ScaledTarget(StatusModel):
    """What the policy must give back to the target it scaled when it is deleted. Written
    whole: its unset fields are written as null, so a status merge patch replaces the record
    rather than keeping a field of an older one (another target's originalReplicas)."""

    name: str
    """The XynergyService the policy scaled (in the policy's namespace)."""
    original_replicas: int | None = None
    """The target's spec.replicas before the policy's first scale (unset: it was unset)."""
    last_written: int | None = None
    """The spec.replicas the policy last wrote (unset: none yet, only `pending`): the target
    is given back its original only while it still holds this or `pending` (never over a
    later edit by someone else)."""
    pending: int | None = None
    """The spec.replicas the policy is about to write: recorded before the scale, cleared
    with the status written after it, so a status write lost after the scale still leaves a
    record of it."""

    @model_serializer(mode="wrap")
    def _whole(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        for name, field in type(self).model_fields.items():
            key = (field.alias or name) if info.by_alias else name
            out.setdefault(key, None)
        return out


class ScalingPolicyStatus(StatusModel):
    """Observed state of a ScalingPolicy."""

    observed_generation: int | None = None
    """The .metadata.generation this status describes."""
    conditions: list[Condition] = conditions_field()
    """Ready, Degraded (a fallback is in force), Reconciling and Stalled, as metav1.Conditions."""
    current_instances: int | None = None
    """Instances the target is asked for now (its scale subresource's spec.replicas)."""
    desired_instances: int | None = None
    """Instances the policy wants."""
    current_load: float | None = None
    """The load metric's latest value."""
    observed_under_provisioning: float | None = Field(default=None, ge=0, le=1)
    """Share of recent time the load was above what the serving instances carry
    (``capacityPerInstance`` each, else ``targetPerInstance``; an instance serves from one
    start-up after it was asked for): an average over the policy's own syncs with a half-life
    of 6 hours, beside ``spec.targetUnderProvisioning``. The metric is an average over its
    window, so seconds above capacity inside a window below it are not seen."""
    mode: ScalingMode | None = None
    """Mode in effect (predictive falls back to reactive when the forecast is poor)."""
    mode_reason: str | None = Field(default=None, max_length=1024)
    """Why that mode is in effect (the fallback and its numbers)."""
    last_decision: ScalingDecision | None = None
    """The last decision: from and to instances, and why."""
    last_scale_time: dt.datetime | None = None
    """When the target's instances were last changed by this policy."""
    forecast: list[ForecastPoint] | None = Field(default=None, max_length=48)
    """Forecast over the horizon (at most 24 points, with bounds)."""
    model_error: float | None = None
    """Recent forecast error (sMAPE, percent, rolling-origin backtest over recent history)."""
    model_mase: float | None = None
    """The same backtest's MASE (below 1 beats the seasonal naive forecast)."""
    model: str | None = None
    """Forecasting model selected."""
    model_fitted_time: dt.datetime | None = None
    """When the model was last fitted (it is refitted on its own schedule, not every sync)."""
    scaling_state: str | None = Field(default=None, max_length=65536)
    """Internal: what HPA-style behaviour needs between syncs (recent recommendations and
    scale events, JSON), kept here so an operator restart cannot cause a jump."""
    last_reconcile_time: dt.datetime | None = None
    """When the policy last synced."""
    scaled_target: ScaledTarget | None = None
    """Set once the policy has scaled its target: the target's spec.replicas before that
    (given back when the policy is deleted, while the target still holds the policy's last
    write) and the policy's last write. While it is set, deleting the policy waits for the
    operator (finalizer)."""


class ScalingPolicy(Resource[ScalingPolicySpec, ScalingPolicyStatus]):
    """Predictive scaling of a XynergyService."""

    kind: Literal["ScalingPolicy"] = "ScalingPolicy"


ScalingPolicy.crd = CrdInfo(
    kind="ScalingPolicy",
    plural="scalingpolicies",
    singular="scalingpolicy",
    short_names=("sp",),
    spec_model=ScalingPolicySpec,
    status_model=ScalingPolicyStatus,
    description=(
        "ScalingPolicy scales a XynergyService ahead of forecast load within safety limits, "
        "falling back to reactive scaling when the forecast is poor."
    ),
    printer_columns=(
        PrinterColumn("Target", ".spec.targetRef.name"),
        PrinterColumn("Mode", ".status.mode", description="Mode in effect"),
        PrinterColumn("Current", ".status.currentInstances", type="integer"),
        PrinterColumn("Desired", ".status.desiredInstances", type="integer"),
        PrinterColumn("Load", ".status.currentLoad", type="number", priority=1),
        PrinterColumn(
            "Under",
            ".status.observedUnderProvisioning",
            type="number",
            priority=1,
            description="Share of recent time the load was above what is asked for",
        ),
        PrinterColumn("sMAPE", ".status.modelError", type="number", priority=1),
        *ready_columns(),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
