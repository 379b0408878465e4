"""Rollout: deliver a new revision of a XynergyService by canary, blue-green, rolling or at once.

The new revision is judged against the stable one with statistics and anomaly detection
(Kayenta-style), and rolled back on its own when it is worse. Modelled on Argo Rollouts.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from apis.base import (
    DNS_LABEL,
    Duration,
    ImageReference,
    IntOrPercent,
    PositiveDuration,
    SpecModel,
    StatusModel,
    cel,
    is_zero,
    validations,
)
from apis.conditions import Condition
from apis.v1alpha1.common import (
    LABEL_VALUE_MAX,
    CrdInfo,
    NameLimit,
    PrinterColumn,
    Resource,
    TargetRef,
    conditions_field,
    ready_columns,
)
from apis.v1alpha1.xynergyservice import (
    ROUTE_PATH_MESSAGE,
    EnvVar,
    ResourceRequirements,
    route_path_rule,
)

__all__ = [
    "MAX_LOAD_REQUESTS",
    "MAX_ROLLOUT_NAME_LENGTH",
    "ROLLOUT_NAME",
    "ROLLOUT_NAME_MESSAGE",
    "AnalysisMethod",
    "AnalysisMetric",
    "AnalysisRunSummary",
    "AnalysisSpec",
    "AnalysisStep",
    "BlueGreenStrategy",
    "BodyField",
    "CanaryStep",
    "CanaryStrategy",
    "CheckResult",
    "HttpMethod",
    "ImmediateStrategy",
    "LoadTest",
    "MetricSource",
    "PauseStep",
    "RevisionRecord",
    "RollingStrategy",
    "Rollout",
    "RolloutPhase",
    "RolloutSpec",
    "RolloutStatus",
    "SmokeCheck",
    "Strategy",
    "TemplateOverrides",
    "TrafficRouting",
    "TrafficTarget",
    "Verdict",
    "VerificationRun",
    "VerificationSpec",
    "VerificationStage",
]


class AnalysisMethod(StrEnum):
    """How a metric of the new revision is judged."""

    THRESHOLD = "threshold"
    ZSCORE = "zscore"
    IQR = "iqr"
    ISOLATION_FOREST = "isolationForest"
    TREND = "trend"
    MANN_WHITNEY = "mannWhitney"
    PROPORTION = "proportion"
    """`query` counts the bad events of each step and `denominator` all events of the step;
    judged as a binomial proportion (Fisher exact test on the totals)."""


class MetricSource(StrEnum):
    """Where analysis metrics come from."""

    PROMETHEUS = "prometheus"
    CLOUD_MONITORING = "cloudMonitoring"


class RolloutPhase(StrEnum):
    """Where a rollout stands."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ABORTED = "Aborted"
    ROLLED_BACK = "RolledBack"
    DEGRADED = "Degraded"


class TrafficRouting(StrEnum):
    """How the Kubernetes backend splits traffic between the stable and new revisions."""

    AUTO = "auto"
    """gateway when the target has spec.routes (it is behind our gateway), else replicas."""
    GATEWAY = "gateway"
    """Weighted upstreams in the Xynergy gateway (exact percentages, sticky per user optional)."""
    REPLICAS = "replicas"
    """The target's Service spreads over both revisions' Pods; weight by replica ratio."""


class Verdict(StrEnum):
    """Outcome of one analysis run."""

    SUCCESSFUL = "Successful"
    INCONCLUSIVE = "Inconclusive"
    FAILED = "Failed"


class TemplateOverrides(SpecModel):
    """Changes to the target's spec that make up the new revision."""

    env: list[EnvVar] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Environment variables to set or replace."""
    resources: ResourceRequirements | None = None
    """CPU and memory per instance."""
    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, max_length=256, json_schema_extra={"x-kubernetes-list-type": "atomic"}
    )
    """Arguments to the entrypoint."""


class PauseStep(SpecModel):
    """Wait for `duration`, or until promoted by hand when no duration is given."""

    duration: Duration | None = None
    """How long to pause; indefinitely (until promoted) when unset."""


class AnalysisMetric(SpecModel):
    """One metric compared between the canary and the stable revision."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.method != 'threshold' || has(self.maxValue) || has(self.minValue)",
                "analysis.metrics[]: method threshold needs maxValue or minValue",
                field_path=".method",
            ),
            cel(
                "!has(self.maxValue) || !has(self.minValue) || self.minValue <= self.maxValue",
                "analysis.metrics[].minValue must not exceed maxValue",
                field_path=".minValue",
            ),
            cel(
                "!has(self.denominator) || self.source == 'cloudMonitoring'"
                " || self.method == 'proportion'",
                "analysis.metrics[].denominator is for source cloudMonitoring or method "
                "proportion only",
                field_path=".denominator",
            ),
            cel(
                "self.method != 'proportion' || has(self.denominator)",
                "analysis.metrics[]: method proportion needs denominator (a query counting "
                "all events of each step)",
                field_path=".denominator",
            ),
            cel(
                "!has(self.statistic) || self.source == 'cloudMonitoring'",
                "analysis.metrics[].statistic is for source cloudMonitoring only",
                field_path=".statistic",
            ),
            cel(
                "!has(self.statistic) || self.method != 'proportion'",
                "analysis.metrics[].statistic is not for method proportion (query and "
                "denominator are counts)",
                field_path=".statistic",
            ),
            cel(
                "!has(self.pointsPerSample) || self.method == 'mannWhitney'",
                "analysis.metrics[].pointsPerSample is for method mannWhitney only",
                field_path=".pointsPerSample",
            ),
            cel(
                "!has(self.paired) || !self.paired || self.method == 'mannWhitney'",
                "analysis.metrics[].paired is for method mannWhitney only",
                field_path=".paired",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Metric name, unique within the analysis."""
    source: MetricSource = MetricSource.PROMETHEUS
    """prometheus or cloudMonitoring."""
    query: str = Field(min_length=1, max_length=4096)
    """Query (PromQL, or a Monitoring filter for cloudMonitoring); `{{revision}}` is replaced
    with the revision being measured and `{{step}}` with the operator's query step as a
    Prometheus duration (`5s`). For method proportion it counts the bad events of each step,
    e.g. `sum(increase(x_total{status=~"5.."}[{{step}}]))`."""
    denominator: str | None = Field(default=None, min_length=1, max_length=4096)
    """A second query, placeholders replaced as in `query`. Method proportion (required
    there): the count of all events of each step, the trials the bad events are out of.
    Otherwise cloudMonitoring only: the metric is query / denominator per aligned point, e.g.
    5xx request_count over all request_count (a point whose denominator is 0 has no value)."""
    statistic: Literal["mean", "p50", "p95", "p99"] | None = None
    """cloudMonitoring only, for a distribution metric (request_latencies): the value of each
    step, the mean of the step's merged distributions or a percentile of the worst series."""
    method: AnalysisMethod = AnalysisMethod.MANN_WHITNEY
    """How to judge it."""
    direction: Literal["increase", "decrease", "either"] = "increase"
    """Which change is bad: increase (latency, errors), decrease (throughput) or either."""
    max_value: float | None = None
    """Threshold method: the canary fails above this."""
    min_value: float | None = None
    """Threshold method: the canary fails below this."""
    tolerance_percent: float = Field(default=10.0, ge=0, le=1000)
    """Relative change ignored as noise (effect size, percent)."""
    absolute_tolerance: float = Field(default=0.0, ge=0)
    """Change ignored as noise in the metric's own unit (the only tolerance when the stable
    value is zero, e.g. no errors); for method proportion a difference of rates (0.01 = one
    percentage point)."""
    minimum_detectable: float | None = Field(default=None, gt=0)
    """Smallest regression, in the metric's own unit, the analysis must be able to see before
    the metric may pass (needed when the stable value can be zero); tolerancePercent is the
    relative target. For method proportion a rise of the rate (0.02 = two percentage
    points): with too few trials to see it the metric is Underpowered, never a pass."""
    critical: bool = False
    """A failure of a critical metric fails the run on its own."""
    weight: float = Field(default=1.0, gt=0, le=100)
    """Weight in the run's score."""
    points_per_sample: float | None = Field(default=None, ge=1, le=100000)
    """Method mannWhitney: how many consecutive points of the series carry one independent
    sample (the judge then counts `n / pointsPerSample` samples). Unset: a Prometheus query's
    longest range over the query step (`rate(x[1m])` at a 5 s step: 12), 1 for
    cloudMonitoring. Set it when points repeat for another reason, e.g. a gauge scraped every
    15 s read at a 5 s step: 3."""
    paired: bool = False
    """Method mannWhitney: compare the revisions step by step (Wilcoxon's signed-rank test on
    each step's pair, both measured under the same load) instead of as two samples. For a
    gauge or a latency whose level follows the load: the load's swings cancel within a step,
    so a change shows sooner. Steps that one revision lacks are left out."""

    @model_validator(mode="after")
    def _method_fields(self) -> AnalysisMetric:
        where = f"analysis.metrics[{self.name}]"
        for name, set_ in (("pointsPerSample", self.points_per_sample is not None),
                           ("paired", self.paired)):  # fmt: skip
            if set_ and self.method is not AnalysisMethod.MANN_WHITNEY:
                raise ValueError(
                    f"{where}.{name}: for method mannWhitney only, got method {self.method.value}"
                )
        if self.method is AnalysisMethod.PROPORTION:
            if self.denominator is None:
                raise ValueError(
                    f"{where}.denominator: method proportion needs a denominator, a query "
                    "counting all events of each step (query counts the bad ones)"
                )
            if self.statistic is not None:
                raise ValueError(
                    f"{where}.statistic: not for method proportion (query and denominator "
                    f"are counts), got {self.statistic}"
                )
            return self
        for name, value in (("denominator", self.denominator), ("statistic", self.statistic)):
            if value is not None and self.source is not MetricSource.CLOUD_MONITORING:
                also = " or method proportion" if name == "denominator" else ""
                raise ValueError(
                    f"{where}.{name}: only for source cloudMonitoring{also}, "
                    f"got source {self.source.value} and method {self.method.value}"
                )
        return self


class AnalysisSpec(SpecModel):
    """How the new revision is judged."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.successScore > self.marginalScore",
                "analysis.successScore must be greater than analysis.marginalScore",
                field_path=".successScore",
            ),
        )
    )

    interval: PositiveDuration = "1m"
    """Time between measurements."""
    metrics: list[AnalysisMetric] = Field(
        min_length=1,
        max_length=20,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Metrics to compare."""
    failure_limit: int = Field(default=0, ge=0, le=100)
    """Failed runs tolerated before the rollout is rolled back."""
    inconclusive_limit: int = Field(default=2, ge=0, le=100)
    """Inconclusive runs tolerated before the rollout pauses for a human."""
    success_score: float = Field(default=90.0, gt=0, le=100)
    """Score at or above which a run is Successful."""
    marginal_score: float = Field(default=70.0, ge=0, lt=100)
    """Score below which a run is Failed (between: Inconclusive)."""
    minimum_samples: int = Field(default=20, ge=3, le=100000)
    """Fewer samples per revision than this makes a run Inconclusive."""


MAX_LOAD_REQUESTS = 6000
"""At most this many requests in one load test (requestsPerSecond x durationSeconds)."""

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_REQUEST_PATH = r"^/[^\s]*$"


class VerificationStage(StrEnum):
    """When verification checks run against the new revision."""

    PRE_TRAFFIC = "preTraffic"
    """Once the new revision is ready, before it gets any traffic."""
    PRE_PROMOTION = "prePromotion"
    """Before all traffic moves to it."""


class BodyField(SpecModel):
    """One field the JSON response body must hold."""

    path: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    """Dotted path into the JSON body; a number picks a list item (`data.items.0.id`)."""
    equals: str | None = Field(default=None, max_length=1024)
    """Expected value: compared as is with a string field, read as JSON for any other
    (`true`, `3`, `null`); unset: the field only has to exist."""


class SmokeCheck(SpecModel):
    """One HTTP request the new revision must answer as expected."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """Check name, unique within spec.verification.smoke."""
    method: HttpMethod = "GET"
    """HTTP method."""
    path: str = Field(default="/", max_length=2048, pattern=_REQUEST_PATH)
    """Path (and query) on the new revision."""
    body: str | None = Field(default=None, max_length=65536)
    """Request body, sent as application/json."""
    expected_status: int = Field(default=200, ge=100, le=599)
    """Status code the revision must answer with."""
    expected_body: list[BodyField] | None = Field(
        default=None,
        max_length=20,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"]},
    )
    """Fields the JSON response body must hold."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    """The request fails when no answer comes within this."""


class LoadTest(SpecModel):
    """A short, bounded load test with a latency and an error budget."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"self.requestsPerSecond * self.durationSeconds <= {MAX_LOAD_REQUESTS}",
                f"loadTest: requestsPerSecond x durationSeconds must be at most "
                f"{MAX_LOAD_REQUESTS} requests",
                field_path=".durationSeconds",
            ),
        )
    )

    method: HttpMethod = "GET"
    """HTTP method."""
    path: str = Field(default="/", max_length=2048, pattern=_REQUEST_PATH)
    """Path (and query) on the new revision."""
    requests_per_second: int = Field(default=10, ge=1, le=200)
    """Requests started per second."""
    duration_seconds: int = Field(default=10, ge=1, le=60)
    """How long requests are started."""
    max_p99_milliseconds: float = Field(gt=0, le=60000)
    """The 99th percentile latency must not exceed this."""
    max_error_ratio: float = Field(default=0.01, ge=0, le=1)
    """Share of requests that may fail (no answer in timeoutSeconds, or a 5xx)."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    """A request without an answer within this counts as an error."""

    @model_validator(mode="after")
    def _bounded(self) -> LoadTest:
        total = self.requests_per_second * self.duration_seconds
        if total > MAX_LOAD_REQUESTS:
            raise ValueError(
                f"requestsPerSecond x durationSeconds = {total} requests: must be at most "
                f"{MAX_LOAD_REQUESTS} (lower requestsPerSecond or durationSeconds)"
            )
        return self


class VerificationSpec(SpecModel):
    """Checks the new revision must pass before it gets traffic and before promotion."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.smoke) || has(self.loadTest)",
                "verification: set smoke and/or loadTest",
            ),
        )
    )

    smoke: list[SmokeCheck] | None = Field(
        default=None,
        max_length=20,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """HTTP requests with their expected status and body fields."""
    load_test: LoadTest | None = None
    """A bounded load test with a latency and an error budget (after the smoke checks)."""
    pre_traffic: bool = True
    """Run the checks once the new revision is ready, before it gets any traffic."""
    pre_promotion: bool = True
    """Run the checks again before all traffic moves to the new revision."""

    @model_validator(mode="after")
    def _some_check(self) -> VerificationSpec:
        if not self.smoke and self.load_test is None:
            raise ValueError("set smoke and/or loadTest")
        return self


class AnalysisStep(SpecModel):
    """Run the rollout's analysis for a while."""

    duration: PositiveDuration = "5m"
    """How long to measure before judging."""


class CanaryStep(SpecModel):
    """One canary step: exactly one of setWeight, pause, analysis."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0)"
                " + (has(self.analysis) ? 1 : 0) == 1",
                "canary.steps[]: set exactly one of setWeight, pause, analysis",
            ),
        )
    )

    set_weight: int | None = Field(default=None, ge=0, le=100)
    """Percent of traffic to the canary."""
    pause: PauseStep | None = None
    """Wait for a duration or for promotion."""
    analysis: AnalysisStep | None = None
    """Run spec.analysis now, for a while, before going on."""


class CanaryStrategy(SpecModel):
    """Shift traffic to the new revision step by step, judging it on the way."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                "canary.steps[].setWeight must not decrease from one step to the next",
                field_path=".steps",
            ),
        )
    )

    steps: list[CanaryStep] = Field(
        min_length=1, max_length=32, json_schema_extra={"x-kubernetes-list-type": "atomic"}
    )
    """Steps, in order."""
    max_surge: IntOrPercent = "25%"
    """Kubernetes backend: maxSurge of the new revision's Deployment (count or percent): how
    many extra Pods it may run while its own Pods are replaced (a rotated Secret, joining the
    target's Service with replica-ratio routing). It does not cap the instances a weight
    needs: the new revision runs beside the stable one, which keeps its size (docs/rollout.md).
    No effect on Cloud Run, which shifts traffic between revisions and sizes them itself."""


class BlueGreenStrategy(SpecModel):
    """Run the new revision beside the old one, switch all traffic at promotion."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!has(self.previewRoute) || ({route_path_rule('self.previewRoute')})",
                f"blueGreen.previewRoute: {ROUTE_PATH_MESSAGE}",
                field_path=".previewRoute",
            ),
        )
    )

    preview_route: str | None = Field(default=None, max_length=256, pattern=r"^/[A-Za-z0-9/_.~-]*$")
    """Gateway path prefix that reaches the preview (new) revision before promotion."""
    auto_promotion_seconds: int | None = Field(default=None, ge=0, le=604800)
    """Promote this long after the preview is ready; wait for a human when unset."""
    scale_down_delay_seconds: int = Field(default=30, ge=0, le=86400)
    """Keep the old revision this long after promotion, for a fast rollback."""


class RollingStrategy(SpecModel):
    """Replace instances gradually (Deployment RollingUpdate): traffic moves to the new
    revision in increments of maxSurge + maxUnavailable, each held a moment."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(string(self.maxSurge).matches('^0+%?$')"
                " && string(self.maxUnavailable).matches('^0+%?$'))",
                "rolling.maxSurge and rolling.maxUnavailable must not both be 0 (nothing could "
                "be replaced)",
                field_path=".maxSurge",
            ),
        )
    )

    max_surge: IntOrPercent = "25%"
    """Extra instances during the update (count or percent of the target's instances): each
    increment moves this share of the traffic (plus maxUnavailable) to the new revision; on
    Kubernetes also the maxSurge of the new revision's Deployment."""
    max_unavailable: IntOrPercent = 0
    """Instances that may be unavailable during the update (count or percent): added to each
    traffic increment (as a Deployment replaces up to maxSurge + maxUnavailable at a time; the
    stable revision keeps its instances, so none is taken away before the new ones are
    ready); on Kubernetes also the maxUnavailable of the new revision's Deployment."""

    @model_validator(mode="after")
    def _something_moves(self) -> RollingStrategy:
        if is_zero(self.max_surge) and is_zero(self.max_unavailable):
            raise ValueError(
                "rolling.maxSurge and rolling.maxUnavailable must not both be 0 (nothing could "
                f"be replaced), got {self.max_surge!r} and {self.max_unavailable!r}"
            )
        return self


class ImmediateStrategy(SpecModel):
    """Switch everything to the new revision at once."""


class Strategy(SpecModel):
    """Exactly one of canary, blueGreen, rolling, immediate."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.canary) ? 1 : 0) + (has(self.blueGreen) ? 1 : 0)"
                " + (has(self.rolling) ? 1 : 0) + (has(self.immediate) ? 1 : 0) == 1",
                "strategy: set exactly one of canary, blueGreen, rolling, immediate",
            ),
        )
    )

    canary: CanaryStrategy | None = None
    """Progressive traffic shifting with analysis."""
    blue_green: BlueGreenStrategy | None = None
    """Preview, then switch."""
    rolling: RollingStrategy | None = None
    """Gradual replacement of instances."""
    immediate: ImmediateStrategy | None = None
    """All at once."""


class RolloutSpec(SpecModel):
    """Desired delivery of a new revision."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.image) || has(self.template)",
                "a rollout needs the new revision: set image and/or template",
                field_path=".image",
            ),
            cel(
                "!has(self.strategy.canary) || has(self.analysis)"
                " || !self.strategy.canary.steps.exists(s, has(s.analysis))",
                "spec.analysis is required when a canary step runs an analysis",
                field_path=".analysis",
            ),
        )
    )

    target_ref: TargetRef
    """The XynergyService to deliver to."""
    image: ImageReference | None = None
    """Container image of the new revision."""
    template: TemplateOverrides | None = None
    """Spec changes of the new revision besides the image."""
    strategy: Strategy
    """How to deliver it."""
    analysis: AnalysisSpec | None = None
    """Default analysis for canary analysis steps and blue-green pre-promotion."""
    verification: VerificationSpec | None = None
    """HTTP smoke checks and a load test run against the new revision before it gets traffic
    and before promotion; a failure rolls back like a failed analysis."""
    rollback_window: int = Field(default=3, ge=0, le=50)
    """Number of recent revisions kept for a fast rollback."""
    progress_deadline_seconds: int = Field(default=600, ge=30, le=86400)
    """Without progress for this long the rollout is Degraded."""
    abort: bool = False
    """Set to true to abort and go back to the stable revision."""
    paused: bool = False
    """Set to true to hold the rollout at its current step (traffic stays as it is)."""
    traffic_routing: TrafficRouting = TrafficRouting.AUTO
    """Kubernetes backend: gateway weights, or replica ratio for services not behind the
    gateway (auto: gateway when the target has spec.routes)."""
    sticky_sessions: bool = False
    """Gateway routing: keep each user on one revision (a hash of the identity) while the
    weights hold."""


class AnalysisRunSummary(StatusModel):
    """One analysis run, summarised with its evidence."""

    step_index: int | None = None
    """Canary step the run belongs to."""
    time: dt.datetime
    """When the run finished."""
    verdict: Verdict
    """Successful, Inconclusive or Failed."""
    score: float | None = None
    """Weighted score 0-100."""
    evidence: list[Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=20
    )
    """One line per metric: test, effect size, bounds, samples."""
    look: int | None = None
    """Analysis interval of the step this run judged (1-based)."""
    canary_weight: int | None = None
    """Percent of traffic the canary had during the run."""
    stage: VerificationStage | None = None
    """Set for a verification run (preTraffic or prePromotion); unset for an analysis run."""


class CheckResult(StatusModel):
    """One verification check's outcome and evidence (never a whole response body)."""

    check: str = Field(max_length=63)
    """The smoke check's name, or loadTest."""
    passed: bool
    """Whether the check passed."""
    expected: str | None = Field(default=None, max_length=512)
    """What the check expected."""
    actual: str | None = Field(default=None, max_length=512)
    """What came back (truncated; secret-looking fields redacted)."""
    status_code: int | None = None
    """The response's status code (smoke checks)."""
    field: str | None = Field(default=None, max_length=256)
    """The body field that did not match (smoke checks)."""
    p99_milliseconds: float | None = None
    """Measured 99th percentile latency (load test)."""
    error_ratio: float | None = None
    """Measured share of failed requests (load test)."""
    requests: int | None = None
    """Requests sent (load test)."""


class VerificationRun(StatusModel):
    """The checks run against the new revision at one stage."""

    stage: VerificationStage
    """preTraffic or prePromotion."""
    revision: str = Field(max_length=63)
    """The revision checked."""
    time: dt.datetime
    """When the checks finished."""
    passed: bool
    """Whether every check passed."""
    checks: list[CheckResult] = Field(default_factory=list, max_length=21)
    """Each check's outcome."""


class RevisionTemplate(StatusModel):
    """A revision's env, args and resources as its XynergyService spec had them. Status only
    (the spec validated them): plain objects, so that the CEL rules of the spec types are not
    charged again for every history entry against the apiserver's CRD cost budget."""

    env: list[dict[str, Any]] | None = Field(default=None, max_length=256)
    """Environment variables (the spec's `env` items)."""
    args: list[str] | None = Field(default=None, max_length=256)
    """Arguments to the entrypoint."""
    resources: dict[str, str] | None = Field(default=None, max_length=4)
    """CPU and memory per instance."""


class RevisionRecord(StatusModel):
    """A revision that was stable, for undo and the rollbackWindow fast path."""

    revision: str = Field(max_length=63)
    """Revision name."""
    image: str | None = Field(default=None, max_length=512)
    """Its image."""
    template: RevisionTemplate | None = None
    """Its env, args and resources (what a Rollout changes besides the image), restored with
    the image by undo; unset in records written before it existed (undo then restores the
    image only)."""
    time: dt.datetime
    """When it stopped being the stable revision."""


class TrafficTarget(StatusModel):
    """One upstream of the target's gateway routes while a rollout holds them."""

    revision: str = Field(max_length=63)
    """Revision name (the gateway labels its metrics with it)."""
    url: str = Field(max_length=512)
    """In-cluster URL of the revision's Service."""
    weight: int = Field(ge=0, le=100)
    """Percent of the route's requests."""
    tag: str | None = Field(default=None, max_length=63)
    """stable, canary or preview (preview: reached through the blue-green previewRoute)."""


class RolloutStatus(StatusModel):
    """Observed state of a Rollout."""

    observed_generation: int | None = None
    """The .metadata.generation this status describes."""
    conditions: list[Condition] = conditions_field()
    """Ready, Reconciling and Stalled, as metav1.Conditions."""
    phase: RolloutPhase | None = None
    """Pending, Progressing, Paused, Promoted, Aborted, RolledBack or Degraded."""
    current_step_index: int | None = None
    """Index of the canary step in progress."""
    canary_weight: int | None = Field(default=None, ge=0, le=100)
    """Percent of traffic the canary receives now."""
    stable_revision: str | None = None
    """Revision known to be good."""
    canary_revision: str | None = None
    """Revision being delivered."""
    analysis_runs: list[AnalysisRunSummary] | None = Field(default=None, max_length=10)
    """Most recent analysis runs (bounded)."""
    message: str | None = None
    """What is happening, for humans."""
    canary_image: str | None = None
    """Image of the revision being delivered."""
    stable_image: str | None = None
    """Image of the stable revision."""
    stable_template: RevisionTemplate | None = None
    """Env, args and resources of the stable revision (kept in the history for undo)."""
    step_started_at: dt.datetime | None = None
    """When the current step (or the current phase) began; at the first step, when the new
    revision was first seen ready."""
    canary_ready_at: dt.datetime | None = None
    """When the new revision was first seen ready (the first step's clock starts then)."""
    canary_unready_since: dt.datetime | None = None
    """When the new revision, ready before, was first seen unready again (unset once ready).
    With traffic, past spec.progressDeadlineSeconds from then, the rollout rolls back."""
    promoting_since: dt.datetime | None = None
    """When this delivery's promotion was first written and not yet seen carried out (Cloud
    Run: its operation still running, or failed and retried after a backoff); unset once
    Promoted. While set, each converge finishes the promotion; past
    spec.progressDeadlineSeconds from then it is given up (Degraded, PromotionFailed)."""
    waiting_since: dt.datetime | None = None
    """When this Rollout, not started yet, began to wait for another Rollout's Kubernetes
    promotion to finish (Pending, Reconciling RolloutConflict); unset when that wait ends (it
    starts, or waits for something else) and while spec.paused or spec.abort holds it back.
    Past spec.progressDeadlineSeconds from then it is Degraded, Stalled RolloutConflict."""
    delivered_spec: str | None = Field(default=None, max_length=64)
    """Digest of spec.image and spec.template when this delivery started: an ended Rollout
    starts again only when they change (never because its target did)."""
    pause_reason: str | None = Field(default=None, max_length=64)
    """Why the rollout is Paused: `SpecPaused` (spec.paused; lifting it resumes) or the
    strategy's reason (PausedByStep, PausedForPromotion, AnalysisInconclusive,
    AnalysisUnderpowered: a person promotes or aborts)."""
    analysis_looks: int | None = None
    """Analysis intervals judged so far in the current analysis step."""
    extended_looks: int | None = None
    """Intervals added to the current analysis step because the judge was underpowered."""
    failed_runs: int | None = None
    """Failed analysis runs of this rollout."""
    inconclusive_runs: int | None = None
    """Inconclusive analysis runs of this rollout."""
    handled_action: str | None = Field(default=None, max_length=256)
    """The last `xynergy.io/rollout-action` annotation value acted upon."""
    canary_url: str | None = None
    """Where the canary (or blue-green preview) revision answers directly."""
    scale_down_at: dt.datetime | None = None
    """When the previous revision (blue-green) is released."""
    history: list[RevisionRecord] | None = Field(default=None, max_length=50)
    """Recently stable revisions, newest first (spec.rollbackWindow of them)."""
    traffic: list[TrafficTarget] | None = Field(default=None, max_length=8)
    """Kubernetes backend with gateway routing: the upstreams and weights the gateway applies
    to the target's routes (empty: the target's own Service serves them)."""
    traffic_routing: TrafficRouting | None = None
    """The routing in effect (gateway or replicas; unset on Cloud Run)."""
    verification: list[VerificationRun] | None = Field(default=None, max_length=2)
    """The latest verification of the new revision at each stage."""


class Rollout(Resource[RolloutSpec, RolloutStatus]):
    """Progressive delivery of a new revision of a XynergyService."""

    kind: Literal["Rollout"] = "Rollout"


MAX_ROLLOUT_NAME_LENGTH = LABEL_VALUE_MAX
"""The longest Rollout metadata.name: on Kubernetes it is the value of the `xynergy.io/rollout`
label on the new revision's Deployment, Service and Pods (a label value has at most 63)."""
ROLLOUT_NAME_MESSAGE = (
    f"metadata.name: must be at most {MAX_ROLLOUT_NAME_LENGTH} characters: it is the value of"
    " the xynergy.io/rollout label on the new revision's Deployment and Service"
)
ROLLOUT_NAME = NameLimit(MAX_ROLLOUT_NAME_LENGTH, ROLLOUT_NAME_MESSAGE)

Rollout.crd = CrdInfo(
    kind="Rollout",
    plural="rollouts",
    singular="rollout",
    short_names=("ro",),
    spec_model=RolloutSpec,
    status_model=RolloutStatus,
    description=(
        "Rollout delivers a new revision of a XynergyService by canary, blue-green, rolling or "
        "immediate strategy, judges it against the stable one and rolls back when it is worse."
    ),
    printer_columns=(
        PrinterColumn("Target", ".spec.targetRef.name"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Step", ".status.currentStepIndex", type="integer"),
        PrinterColumn("Weight", ".status.canaryWeight", type="integer"),
        *ready_columns(),
        PrinterColumn("Image", ".spec.image", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    validations=(ROLLOUT_NAME.rule,),
    # the operator lists the other Rollouts of a target with a field selector on it
    selectable_fields=(".spec.targetRef.name",),
)
