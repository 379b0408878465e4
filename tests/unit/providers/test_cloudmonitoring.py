"""The Cloud Monitoring provider through the real `google-cloud-monitoring` async client, over
gRPC, against the fake MetricService (tests/fakes/monitoring): aligners and the reducer the
provider asks for, pages, and each failure typed (unreachable, empty, malformed)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from fakes.monitoring import FakeMetricService, Series
from google.api import metric_pb2
from google.cloud import monitoring_v3

from controllers.providers.cloudmonitoring import CloudMonitoringProvider, run_filter
from controllers.providers.metrics import (
    MetricsEmptyError,
    MetricsMalformedError,
    MetricsUnreachableError,
)

Kind = metric_pb2.MetricDescriptor.MetricKind
ValueType = metric_pb2.MetricDescriptor.ValueType
LATENCY = "run.googleapis.com/container/cpu/utilizations"
REQUESTS = "run.googleapis.com/request_count"
T0 = 1_720_000_000.0  # a whole minute
NOW = T0 + 3600


@pytest.fixture
def fake() -> Iterator[FakeMetricService]:
    with FakeMetricService(projects=["proj"]) as service:
        yield service


def provider(
    fake: FakeMetricService, *, project: str = "proj", timeout: float = 5.0
) -> CloudMonitoringProvider:
    return CloudMonitoringProvider(project, api_endpoint=fake.endpoint, timeout=timeout)


def revision(
    fake: FakeMetricService,
    metric: str,
    service: str,
    rev: str,
    points: list[tuple[float, float]],
    **kw: object,
) -> Series:
    return fake.add_series(
        "proj",
        Series(
            metric_type=metric,
            resource_labels={"service_name": service, "revision_name": rev},
            points=points,
            **kw,  # type: ignore[arg-type]
        ),
    )


def minutes(
    values: list[float], *, start: float = T0, every: float = 60.0
) -> list[tuple[float, float]]:
    return [(start + every * (i + 1), v) for i, v in enumerate(values)]


async def test_a_gauge_is_averaged_per_step_and_summed_over_revisions(
    fake: FakeMetricService,
) -> None:
    # two points per minute per revision; another service's series must not count
    revision(fake, LATENCY, "crm", "crm-1", minutes([1, 3] * 60, every=30.0))
    revision(fake, LATENCY, "crm", "crm-2", minutes([10] * 120, every=30.0))
    revision(fake, LATENCY, "gateway", "gw-1", minutes([100] * 120, every=30.0))
    samples = await provider(fake).query_range(
        run_filter(LATENCY, service="crm"), start=T0, end=T0 + 600, step=60
    )
    assert samples.timestamps.tolist() == [T0 + 60 * i for i in range(1, 11)]
    assert samples.values.tolist() == [12.0] * 10  # mean(1, 3) + mean(10, 10)
    agg = fake.requests[-1].aggregation
    assert agg.per_series_aligner == monitoring_v3.Aggregation.Aligner.ALIGN_MEAN
    assert agg.cross_series_reducer == monitoring_v3.Aggregation.Reducer.REDUCE_SUM
    assert agg.alignment_period.total_seconds() == 60


async def test_a_request_counter_is_read_as_a_rate(fake: FakeMetricService) -> None:
    # DELTA points: 600 requests per minute -> 10 per second
    revision(
        fake,
        REQUESTS,
        "crm",
        "crm-1",
        minutes([600.0] * 60),
        kind=Kind.DELTA,
        value_type=ValueType.INT64,
    )
    samples = await provider(fake).query_range(
        run_filter(REQUESTS, service="crm"), start=T0, end=T0 + 1200, step=120
    )
    assert samples.values.tolist() == [10.0] * 10
    assert fake.requests[-1].aggregation.per_series_aligner == (
        monitoring_v3.Aggregation.Aligner.ALIGN_RATE
    )


def two_response_classes(fake: FakeMetricService) -> None:
    """crm-1's requests per minute: 600 ok and 30 errors, INT64 DELTA as Cloud Run's."""
    for code, count in (("2xx", 600), ("5xx", 30)):
        revision(fake, REQUESTS, "crm", "crm-1", minutes([count] * 60), kind=Kind.DELTA,
                 value_type=ValueType.INT64, metric_labels={"response_code_class": code})  # fmt: skip


async def test_align_delta_of_an_int64_counter_answers_int64_counts(
    fake: FakeMetricService,
) -> None:
    """As the API reference says: ALIGN_DELTA and REDUCE_SUM keep the input's value type."""
    two_response_classes(fake)
    client = provider(fake)._client_
    pager = await client.list_time_series(
        request=monitoring_v3.ListTimeSeriesRequest(
            name="projects/proj",
            filter=run_filter(REQUESTS, service="crm"),
            interval={"start_time": {"seconds": int(T0)}, "end_time": {"seconds": int(T0) + 240}},
            aggregation={
                "alignment_period": {"seconds": 120},
                "per_series_aligner": monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
                "cross_series_reducer": monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
            },
        )
    )
    (series,) = [s async for s in pager]
    assert series.value_type == ValueType.INT64
    assert series.metric_kind == Kind.DELTA
    assert [p.value._pb.WhichOneof("value") for p in series.points] == ["int64_value"] * 2
    assert [p.value.int64_value for p in series.points] == [1260, 1260]


async def test_count_reads_events_per_step_not_per_second(fake: FakeMetricService) -> None:
    two_response_classes(fake)
    counted = provider(fake).for_statistic("count")
    errors = await counted.query_range(
        run_filter(REQUESTS, service="crm") + ' AND metric.labels.response_code_class = "5xx"',
        start=T0,
        end=T0 + 600,
        step=120,
    )
    everything = await counted.query_range(
        run_filter(REQUESTS, service="crm"), start=T0, end=T0 + 600, step=120
    )
    assert errors.values.tolist() == [60.0] * 5
    assert everything.values.tolist() == [1260.0] * 5
    aggregation = fake.requests[-1].aggregation
    assert aggregation.per_series_aligner == monitoring_v3.Aggregation.Aligner.ALIGN_DELTA
    assert aggregation.cross_series_reducer == monitoring_v3.Aggregation.Reducer.REDUCE_SUM


async def test_the_value_now_is_the_newest_aligned_point(fake: FakeMetricService) -> None:
    revision(fake, LATENCY, "crm", "crm-1", minutes(list(range(60))))
    assert await provider(fake).query(run_filter(LATENCY, service="crm"), at=NOW) == 59.0


async def test_a_series_split_over_pages_is_one_series(fake: FakeMetricService) -> None:
    """The FULL view counts points per page, so a long series arrives in parts."""
    values = np.sin(np.arange(600) / 30.0) + 2
    revision(fake, LATENCY, "crm", "crm-1", minutes(values.tolist()))
    fake.max_page = 100
    samples = await provider(fake).query_range(
        run_filter(LATENCY, service="crm"), start=T0, end=T0 + 36000, step=60
    )
    assert len(fake.requests) == 6
    assert [bool(r.page_token) for r in fake.requests] == [False] + [True] * 5
    assert len(samples) == 600
    assert np.all(np.diff(samples.timestamps) > 0)
    np.testing.assert_allclose(samples.values, values)


@pytest.mark.parametrize(
    ("setup", "query", "error", "words"),
    [
        ("none", "other-service", MetricsEmptyError, "matched no time series"),
        ("old", "crm", MetricsEmptyError, "matched no time series"),
        ("none", "unknown-metric", MetricsMalformedError, "Cannot find metric(s)"),
        ("none", "bad-filter", MetricsMalformedError, "Unparseable filter"),
        ("gauge-count", "crm", MetricsMalformedError, "ALIGN_RATE is not valid"),
        ("bool", "crm", MetricsMalformedError, "value type BOOL"),
        ("deny", "crm", MetricsMalformedError, "Permission monitoring.timeSeries.list denied"),
        ("none", "no-project", MetricsMalformedError, "Project nope not found"),
    ],
)
async def test_each_failure_is_typed_and_says_why(
    fake: FakeMetricService, setup: str, query: str, error: type[Exception], words: str
) -> None:
    revision(fake, LATENCY, "crm", "crm-1", minutes([1.0] * 10))
    metric, project = LATENCY, "proj"
    if setup == "old":
        fake.series["proj"][0].points = [(T0 - 7200, 1.0)]
    elif setup == "gauge-count":
        metric = "custom.googleapis.com/queue_count"
        revision(fake, metric, "crm", "crm-1", minutes([1.0] * 10))
    elif setup == "bool":
        metric = "custom.googleapis.com/healthy"
        revision(fake, metric, "crm", "crm-1", minutes([1.0] * 10), value_type=ValueType.BOOL)
    elif setup == "deny":
        fake.deny("proj")
    if query == "no-project":
        project = "nope"
    text = {
        "other-service": run_filter(metric, service="billing"),
        "unknown-metric": run_filter("custom.googleapis.com/nothing", service="crm"),
        "bad-filter": 'metric.type = "a" OR metric.type = "b"',
    }.get(query, run_filter(metric, service="crm"))
    with pytest.raises(error) as info:
        await provider(fake, project=project).query_range(text, start=T0, end=T0 + 600, step=60)
    assert words in str(info.value)


async def test_unavailable_once_is_retried_by_the_client(fake: FakeMetricService) -> None:
    revision(fake, LATENCY, "crm", "crm-1", minutes([4.0] * 10))
    fake.fail(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")
    samples = await provider(fake).query_range(
        run_filter(LATENCY, service="crm"), start=T0, end=T0 + 600, step=60
    )
    assert samples.values.tolist() == [4.0] * 10
    assert len(fake.requests) == 2


async def test_unavailable_until_the_timeout_is_unreachable(fake: FakeMetricService) -> None:
    revision(fake, LATENCY, "crm", "crm-1", minutes([4.0] * 10))
    fake.fail(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.", times=1000)
    with pytest.raises(MetricsUnreachableError) as info:
        await provider(fake, timeout=1.0).query_range(
            run_filter(LATENCY, service="crm"), start=T0, end=T0 + 600, step=60
        )
    assert "Cloud Monitoring unreachable" in str(info.value)
    assert len(fake.requests) >= 2


async def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = CloudMonitoringProvider("proj", api_endpoint=f"127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(MetricsUnreachableError):
        await p.query(run_filter(LATENCY, service="crm"), at=NOW)
