"""Distribution metrics (`run.googleapis.com/request_latencies`, DELTA DISTRIBUTION) through
the Cloud Monitoring provider and the real `google-cloud-monitoring` client against the fake
MetricService: each statistic's aligner and reducer, the merged mean weighted by count, a
percentile, empty steps dropped, and what the service refuses for a distribution."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fakes.monitoring import FakeMetricService, Series
from google.api import metric_pb2
from google.cloud import monitoring_v3

from controllers.providers.cloudmonitoring import CloudMonitoringProvider
from controllers.providers.metrics import MetricsEmptyError, MetricsMalformedError

pytestmark = pytest.mark.unit

Kind = metric_pb2.MetricDescriptor.MetricKind
ValueType = metric_pb2.MetricDescriptor.ValueType
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
LATENCIES = "run.googleapis.com/request_latencies"
T0 = 1_720_000_000.0
FILTER = (
    f'metric.type = "{LATENCIES}" AND resource.type = "cloud_run_revision" '
    'AND resource.labels.revision_name = "crm-1"'
)


@pytest.fixture
def fake() -> Iterator[FakeMetricService]:
    with FakeMetricService(projects=["proj"]) as service:
        yield service


def latencies(fake: FakeMetricService, code: str, per_minute: list[list[float]]) -> None:
    """One series of the revision (one response code), a distribution point per minute."""
    fake.add_series(
        "proj",
        Series(
            metric_type=LATENCIES,
            metric_labels={"response_code_class": code},
            resource_labels={"service_name": "crm", "revision_name": "crm-1"},
            kind=Kind.DELTA,
            value_type=ValueType.DISTRIBUTION,
            points=[(T0 + 60 * (i + 1), values) for i, values in enumerate(per_minute)],
        ),
    )


def provider(fake: FakeMetricService) -> CloudMonitoringProvider:
    return CloudMonitoringProvider("proj", api_endpoint=fake.endpoint, timeout=5.0)


async def test_the_mean_merges_every_series_distribution_weighted_by_count(
    fake: FakeMetricService,
) -> None:
    # 2xx: 3 requests at 10 ms; 5xx: 1 request at 50 ms -> (30 + 50) / 4 = 20 (not 30)
    latencies(fake, "2xx", [[10.0, 10.0, 10.0]] * 5)
    latencies(fake, "5xx", [[50.0]] * 5)
    view = provider(fake).for_statistic("mean")
    samples = await view.query_range(FILTER, start=T0, end=T0 + 300, step=60)
    assert samples.values.tolist() == [20.0] * 5
    agg = fake.requests[-1].aggregation
    assert (agg.per_series_aligner, agg.cross_series_reducer) == (
        Aligner.ALIGN_DELTA,
        Reducer.REDUCE_SUM,
    )


async def test_a_percentile_is_aligned_per_series_and_the_worst_series_kept(
    fake: FakeMetricService,
) -> None:
    values = [float(v) for v in range(1, 101)]
    latencies(fake, "2xx", [values] * 3)
    latencies(fake, "5xx", [[1.0]] * 3)
    samples = (
        await provider(fake)
        .for_statistic("p95")
        .query_range(FILTER, start=T0, end=T0 + 180, step=60)
    )
    np.testing.assert_allclose(samples.values, [np.percentile(values, 95)] * 3)
    agg = fake.requests[-1].aggregation
    assert agg.per_series_aligner == Aligner.ALIGN_PERCENTILE_95
    assert agg.cross_series_reducer == Reducer.REDUCE_MAX


async def test_without_a_statistic_a_distribution_is_read_with_align_mean(
    fake: FakeMetricService,
) -> None:
    latencies(fake, "2xx", [[10.0, 30.0]] * 3)
    samples = await provider(fake).query_range(FILTER, start=T0, end=T0 + 180, step=60)
    assert samples.values.tolist() == [20.0] * 3


async def test_a_step_that_counted_nothing_is_dropped_and_a_short_step_is_a_minute(
    fake: FakeMetricService,
) -> None:
    latencies(fake, "2xx", [[10.0], [], [30.0]])
    samples = (
        await provider(fake)
        .for_statistic("mean")
        .query_range(FILTER, start=T0, end=T0 + 180, step=5)
    )
    assert samples.values.tolist() == [10.0, 30.0]
    assert fake.requests[-1].aggregation.alignment_period.total_seconds() == 60


async def test_only_empty_steps_is_no_data(fake: FakeMetricService) -> None:
    latencies(fake, "2xx", [[], []])
    with pytest.raises(MetricsEmptyError, match="no finite point"):
        await (
            provider(fake)
            .for_statistic("mean")
            .query_range(FILTER, start=T0, end=T0 + 120, step=60)
        )


async def test_a_rate_of_a_distribution_is_refused_as_the_service_does(
    fake: FakeMetricService,
) -> None:
    latencies(fake, "2xx", [[10.0]] * 3)
    counted = "run.googleapis.com/latency_count"  # a *_count type is read with ALIGN_RATE
    fake.series["proj"][0].metric_type = counted
    with pytest.raises(MetricsMalformedError, match=r"ALIGN_RATE is not valid .* DISTRIBUTION"):
        await provider(fake).query_range(
            FILTER.replace(LATENCIES, counted), start=T0, end=T0 + 180, step=60
        )


async def test_an_unknown_statistic_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="statistic: expected one of"):
        CloudMonitoringProvider("proj", api_endpoint="127.0.0.1:1").for_statistic("p42")
