"""A Rollout analysis read from Cloud Monitoring: the operator's wiring (`from_context`,
XYNERGY_ROLLOUT_GCP_PROJECT and the endpoint override) builds the provider, which reads two
Cloud Run revisions' `request_count` (method proportion: 5xx and all requests counted per
minute, ALIGN_DELTA) and `request_latencies`
(the mean of each minute's merged distribution) through the real google-cloud-monitoring
client from the fake MetricService; the canary judge decides. A canary with a high error
rate and slower requests fails the run with evidence; one with the stable's series passes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fakes.monitoring import FakeMetricService, Series
from fakes.operator_context import ProviderContext
from google.api import metric_pb2
from google.cloud import monitoring_v3
from kube_support import Kube

from apis.v1alpha1.rollout import AnalysisSpec, Verdict
from controllers.rollout.analysis import collect, judge_run
from controllers.rollout.reconciler import from_context

pytestmark = pytest.mark.integration

Kind = metric_pb2.MetricDescriptor.MetricKind
ValueType = metric_pb2.MetricDescriptor.ValueType
PROJECT = "rollout-metrics"
T0 = 1_720_000_000.0
MINUTES = 30
REQUESTS_PER_MINUTE = 500
REVISION = 'resource.type = "cloud_run_revision" AND resource.labels.revision_name = "{{revision}}"'
COUNT = f'metric.type = "run.googleapis.com/request_count" AND {REVISION}'
ANALYSIS = {
    "minimumSamples": 20,
    "metrics": [
        {
            "name": "errors",
            "source": "cloudMonitoring",
            "query": f'{COUNT} AND metric.labels.response_code_class = "5xx"',
            "denominator": COUNT,
            "method": "proportion",
            "absoluteTolerance": 0.005,
            "minimumDetectable": 0.01,
            "critical": True,
        },
        {
            "name": "latency",
            "source": "cloudMonitoring",
            "query": f'metric.type = "run.googleapis.com/request_latencies" AND {REVISION}',
            "statistic": "mean",
        },
    ],
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMetricService]:
    with FakeMetricService(projects=[PROJECT]) as service:
        monkeypatch.setenv("XYNERGY_ROLLOUT_GCP_PROJECT", PROJECT)
        monkeypatch.setenv("XYNERGY_ROLLOUT_CLOUDMONITORING_ENDPOINT", service.endpoint)
        yield service


def serve(
    fake: FakeMetricService, revision: str, *, error_rate: float, latency_ms: float, seed: int
) -> None:
    """A revision's minutes: request counts per response code class, latency distributions."""
    rng = np.random.default_rng(seed)
    ends = [T0 + 60 * (i + 1) for i in range(MINUTES)]
    errors = rng.binomial(REQUESTS_PER_MINUTE, error_rate, size=MINUTES)
    labels = {"service_name": "crm", "revision_name": revision}
    for code, counts in (("5xx", errors), ("2xx", REQUESTS_PER_MINUTE - errors)):
        fake.add_series(PROJECT, Series(
            metric_type="run.googleapis.com/request_count", resource_labels=labels,
            metric_labels={"response_code_class": code}, kind=Kind.DELTA,
            value_type=ValueType.INT64, points=list(zip(ends, counts.tolist(), strict=True)),
        ))  # fmt: skip
    latencies = [
        rng.lognormal(np.log(latency_ms), 0.5, size=REQUESTS_PER_MINUTE).tolist() for _ in ends
    ]
    fake.add_series(PROJECT, Series(
        metric_type="run.googleapis.com/request_latencies", resource_labels=labels,
        kind=Kind.DELTA, value_type=ValueType.DISTRIBUTION,
        points=list(zip(ends, latencies, strict=True)),
    ))  # fmt: skip


async def analyze(fake: FakeMetricService) -> Any:
    analysis = AnalysisSpec.model_validate(ANALYSIS)
    reconciler = from_context(ProviderContext())  # type: ignore[arg-type]
    samples = await collect(
        analysis,
        reconciler.metrics,
        stable="crm-00001",
        canary="crm-ro-1",
        start=dt.datetime.fromtimestamp(T0, tz=dt.UTC),
        end=dt.datetime.fromtimestamp(T0 + 60 * MINUTES, tz=dt.UTC),
        step=60,
    )
    assert all(len(s) == MINUTES for pair in samples.values() for s in pair), samples
    return judge_run(analysis, samples, look=1, looks=1)


async def test_a_canary_with_high_errors_fails_the_run_with_evidence(
    fake: FakeMetricService,
) -> None:
    serve(fake, "crm-00001", error_rate=0.01, latency_ms=100, seed=1)
    serve(fake, "crm-ro-1", error_rate=0.08, latency_ms=150, seed=2)
    result = await analyze(fake)
    assert result.verdict is Verdict.FAILED, result.evidence
    errors, latency = result.failures
    trials = f"n={MINUTES * REQUESTS_PER_MINUTE}/{MINUTES * REQUESTS_PER_MINUTE} trials"
    for token in ("errors: High proportion (Fisher)", "p=", "effect=", "MDE=", trials):
        assert token in errors, errors
    assert latency.startswith("latency: High")
    filters = {r.filter for r in fake.requests}
    assert any('revision_name = "crm-ro-1"' in f and "5xx" in f for f in filters)
    assert all("{{revision}}" not in f for f in filters)
    counted = [r for r in fake.requests if "request_count" in r.filter]
    delta = monitoring_v3.Aggregation.Aligner.ALIGN_DELTA
    assert len(counted) == 4  # 5xx and all requests, of each revision
    assert all(r.aggregation.per_series_aligner == delta for r in counted)


async def test_a_canary_with_the_stables_series_passes(fake: FakeMetricService) -> None:
    serve(fake, "crm-00001", error_rate=0.01, latency_ms=100, seed=3)
    serve(fake, "crm-ro-1", error_rate=0.01, latency_ms=100, seed=4)
    result = await analyze(fake)
    assert result.verdict is Verdict.SUCCESSFUL, result.evidence
    assert result.failures == []


@pytest.mark.parametrize("field", ["denominator", "statistic"])
def test_the_apiserver_keeps_them_for_cloud_monitoring_and_refuses_them_elsewhere(
    kube: Kube, crds_installed: list[str], namespace: str, field: str
) -> None:
    path = f"/apis/xynergy.io/v1alpha1/namespaces/{namespace}/rollouts"
    metric = {"name": "m", "query": COUNT, field: COUNT if field == "denominator" else "p95"}

    def rollout(name: str, source: str) -> dict[str, Any]:
        return {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "targetRef": {"name": "crm"},
                "image": "us-docker.pkg.dev/xynergy-test/apps/crm:2",
                "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
                "analysis": {"metrics": [{**metric, "source": source}]},
            },
        }

    refused = kube.create(path, rollout(f"prom-{field}", "prometheus"))
    assert refused.status_code == 422, refused.text
    assert f"analysis.metrics[].{field} is for source cloudMonitoring" in refused.text
    kept = kube.create(path, rollout(f"cm-{field}", "cloudMonitoring"))
    assert kept.status_code == 201, kept.text
    assert kept.json()["spec"]["analysis"]["metrics"][0][field] == metric[field]


def test_the_apiserver_asks_a_proportion_for_its_denominator_and_no_statistic(
    kube: Kube, crds_installed: list[str], namespace: str
) -> None:
    path = f"/apis/xynergy.io/v1alpha1/namespaces/{namespace}/rollouts"

    def create(name: str, **metric: str) -> Any:
        body = {"name": "errors", "method": "proportion", "query": "sum(increase(e[{{step}}]))"}
        return kube.create(path, {
            "apiVersion": "xynergy.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
            "spec": {
                "targetRef": {"name": "crm"}, "image": "us-docker.pkg.dev/xynergy-test/apps/crm:2",
                "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
                "analysis": {"metrics": [{**body, **metric}]},
            },
        })  # fmt: skip

    missing = create("no-denominator")
    assert missing.status_code == 422, missing.text
    assert "spec.analysis.metrics[0].denominator" in missing.text
    assert "method proportion needs denominator" in missing.text
    statistic = create("statistic", source="cloudMonitoring", denominator=COUNT, statistic="mean")
    assert statistic.status_code == 422, statistic.text
    assert "statistic is not for method proportion" in statistic.text
    kept = create("on-prometheus", denominator="sum(increase(all[{{step}}]))")
    assert kept.status_code == 201, kept.text
    assert kept.json()["spec"]["analysis"]["metrics"][0]["method"] == "proportion"
