"""Where a policy reads its load: the provider and the query for its `metric.source`.

Prometheus: the policy's `metric.prometheusUrl`, else the operator's default
(`XYNERGY_SCALING_PROMETHEUS_URL`); one provider per URL, sharing one HTTP client. Cloud
Monitoring: the target's Cloud Run project (else `XYNERGY_SCALING_GCP_PROJECT`), the metric type
filtered to the target's Cloud Run service. Providers are built on first use.
"""

from __future__ import annotations

from collections.abc import Callable

from apis.v1alpha1.scalingpolicy import MetricSource, ScalingPolicy
from controllers.core.context import OperatorContext
from controllers.core.errors import StalledError
from controllers.providers.metrics import MetricsProvider
from controllers.providers.prometheus import PrometheusProvider
from controllers.scalingpolicy.target import Target
from controllers.settings import OperatorSettings

__all__ = ["Metrics", "metric_sources"]

Metrics = Callable[[ScalingPolicy, Target], tuple[MetricsProvider, str]]
"""The provider and query (PromQL, or a Monitoring filter) a policy reads its load with."""


def metric_sources(ctx: OperatorContext, settings: OperatorSettings) -> Metrics:
    """The policy -> (provider, query) function of an operator."""

    def prometheus(url: str) -> MetricsProvider:
        return ctx.provider(
            f"prometheus {url}",
            lambda: PrometheusProvider(url, timeout=settings.scaling_query_timeout_seconds),
        )

    def source(policy: ScalingPolicy, target: Target) -> tuple[MetricsProvider, str]:
        metric = policy.spec.metric
        if metric.source is MetricSource.PROMETHEUS:
            url = metric.prometheus_url or settings.scaling_prometheus_url
            if not url or not metric.query:
                raise StalledError(
                    "spec.metric.prometheusUrl: no Prometheus URL (set it, or the operator's "
                    "XYNERGY_SCALING_PROMETHEUS_URL)",
                    reason="NoMetricsSource",
                )
            return prometheus(url), metric.query
        return cloud_monitoring(policy, target)

    def cloud_monitoring(policy: ScalingPolicy, target: Target) -> tuple[MetricsProvider, str]:
        from controllers.providers.cloudmonitoring import CloudMonitoringProvider, run_filter

        project = target.project or settings.scaling_gcp_project
        if not project:
            raise StalledError(
                "spec.metric: no Cloud Monitoring project (the target has no cloudRun.project "
                "and XYNERGY_SCALING_GCP_PROJECT is unset)",
                reason="NoMetricsSource",
            )
        provider = ctx.provider(
            f"cloudmonitoring {project}",
            lambda: CloudMonitoringProvider(
                project, api_endpoint=settings.scaling_cloudmonitoring_endpoint
            ),
        )
        metric_type = str(policy.spec.metric.metric_type)
        return provider, run_filter(metric_type, service=policy.spec.target_ref.name)

    return source
