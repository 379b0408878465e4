"""Where a Rollout's analysis metrics come from: `from_context().metrics` builds a Cloud
Monitoring provider for `source: cloudMonitoring` (project from the target's Cloud Run
project, else XYNERGY_ROLLOUT_GCP_PROJECT; stalled naming both when neither is set), the API
refuses a denominator or statistic on another source, and `collect` divides a metric by its
denominator per aligned point."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from fakes.operator_context import ProviderContext
from pydantic import ValidationError

from apis.v1alpha1.rollout import AnalysisMetric, AnalysisSpec
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError
from controllers.providers.cloudmonitoring import CloudMonitoringProvider
from controllers.providers.metrics import MetricsEmptyError, Samples
from controllers.rollout.analysis import collect
from controllers.rollout.reconciler import from_context

pytestmark = pytest.mark.unit

FILTER = 'metric.type = "run.googleapis.com/request_count" AND resource.labels.revision_name = "{{revision}}"'


def metric(**extra: Any) -> AnalysisMetric:
    return AnalysisMetric.model_validate(
        {"name": "errors", "source": "cloudMonitoring", "query": FILTER, **extra}
    )


def target(project: str | None) -> XynergyService:
    spec: dict[str, Any] = {"image": "us-docker.pkg.dev/xynergy-test/platform/crm:1"}
    if project:
        spec |= {"backend": "cloudRun", "cloudRun": {"project": project, "region": "us-east1"}}
    return XynergyService.model_validate(
        {"metadata": {"name": "crm", "namespace": "team-a"}, "spec": spec}
    )


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XYNERGY_ROLLOUT_CLOUDMONITORING_ENDPOINT", "127.0.0.1:1")
    monkeypatch.delenv("XYNERGY_ROLLOUT_GCP_PROJECT", raising=False)


async def test_cloud_monitoring_metrics_read_the_operators_project(
    endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XYNERGY_ROLLOUT_GCP_PROJECT", "ops-project")
    ctx = ProviderContext()
    provider = from_context(ctx).metrics(metric())  # type: ignore[arg-type,call-arg]
    assert isinstance(provider, CloudMonitoringProvider)
    assert provider.project == "ops-project"
    assert list(ctx.providers) == ["rollout.cloudmonitoring.ops-project"]


async def test_the_targets_cloud_run_project_comes_first(
    endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XYNERGY_ROLLOUT_GCP_PROJECT", "ops-project")
    metrics: Any = from_context(ProviderContext()).metrics  # type: ignore[arg-type]
    provider = metrics(metric(statistic="p95"), target("team-project"))
    assert provider.provider.project == "team-project"
    assert provider.statistic == "p95"


async def test_no_project_anywhere_stalls_naming_the_field_and_the_setting(
    endpoint: None,
) -> None:
    metrics: Any = from_context(ProviderContext()).metrics  # type: ignore[arg-type]
    with pytest.raises(StalledError) as err:
        metrics(metric(), target(None))
    assert err.value.reason == "MetricsSourceUnavailable"
    for words in (
        "spec.analysis.metrics[errors]",
        "spec.cloudRun.project",
        "XYNERGY_ROLLOUT_GCP_PROJECT",
    ):
        assert words in str(err.value)


@pytest.mark.parametrize("field", ["denominator", "statistic"])
def test_denominator_and_statistic_are_for_cloud_monitoring_only(field: str) -> None:
    value = FILTER if field == "denominator" else "mean"
    with pytest.raises(ValidationError, match=rf"analysis.metrics\[errors\].{field}: only for"):
        metric(source="prometheus", **{field: value})


class Recorded:
    """A metrics provider answering each query from a table (None: no series)."""

    def __init__(self, table: dict[str, list[tuple[float, float]] | None]) -> None:
        self.table = table

    async def query(self, query: str, *, at: float) -> float:
        raise AssertionError("collect reads ranges")

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Samples:
        points = self.table[query]
        if points is None:
            raise MetricsEmptyError(f"{query}: no series")
        arr = np.asarray(points, dtype=np.float64)
        return Samples(timestamps=arr[:, 0].copy(), values=arr[:, 1].copy())


async def collected(
    spec: AnalysisSpec, table: dict[str, list[tuple[float, float]] | None]
) -> dict[str, tuple[Any, Any]]:
    """`collect` of revisions "stable" and "canary" from `table`, over 4 minutes at 60 s."""
    start = dt.datetime.fromtimestamp(0, tz=dt.UTC)
    return await collect(
        spec,
        lambda _: Recorded(table),
        stable="stable",
        canary="canary",
        start=start,
        end=start + dt.timedelta(minutes=4),
        step=60,
    )


async def test_a_ratio_is_numerator_over_denominator_per_point() -> None:
    # stable: 5xx in steps 1 and 3 only (missing = none); step 2 had no traffic at all
    # canary: no 5xx series at all (no errors); the denominator's points decide the steps
    table = {
        "5xx stable": [(60.0, 1.0), (180.0, 3.0)],
        "all stable": [(60.0, 10.0), (120.0, 0.0), (180.0, 30.0), (240.0, 20.0)],
        "5xx canary": None,
        "all canary": [(60.0, 5.0), (120.0, 5.0)],
    }
    spec = AnalysisSpec.model_validate(
        {"metrics": [metric(query="5xx {{revision}}", denominator="all {{revision}}")]}
    )
    samples = await collected(spec, table)
    stable, canary = samples["errors"]
    assert stable.tolist() == [0.1, 0.1, 0.0]
    assert canary.tolist() == [0.0, 0.0]


async def test_a_paired_metric_keeps_both_revisions_on_the_same_steps() -> None:
    # each revision misses a step the other has; with a denominator a zero step has no ratio
    table = {
        "lat stable": [(60.0, 1.0), (120.0, 2.0), (240.0, 4.0)],
        "lat canary": [(60.0, 1.5), (180.0, 3.5), (240.0, 4.5)],
        "5xx stable": [(60.0, 1.0)],
        "all stable": [(60.0, 10.0), (120.0, 0.0)],
        "5xx canary": None,
        "all canary": [(120.0, 4.0)],
    }
    spec = AnalysisSpec.model_validate(
        {"metrics": [
            {"name": "lat", "query": "lat {{revision}}", "paired": True},
            metric(query="5xx {{revision}}", denominator="all {{revision}}", paired=True),
            {"name": "plain", "query": "lat {{revision}}"},
        ]}
    )  # fmt: skip
    samples = await collected(spec, table)
    nan = float("nan")
    stable, canary = samples["lat"]
    np.testing.assert_array_equal(stable, [1.0, 2.0, nan, 4.0])
    np.testing.assert_array_equal(canary, [1.5, nan, 3.5, 4.5])
    stable, canary = samples["errors"]
    np.testing.assert_array_equal(stable, [0.1, nan])  # 120 s: no traffic, no ratio
    np.testing.assert_array_equal(canary, [nan, 0.0])
    assert [a.tolist() for a in samples["plain"]] == [[1.0, 2.0, 4.0], [1.5, 3.5, 4.5]]


async def test_an_analysis_reads_its_metrics_from_the_rollouts_target() -> None:
    """The reconciler hands the rollout's target to the metric source (whose Cloud Run
    project a cloudMonitoring metric is read from)."""
    from apis.v1alpha1.rollout import Rollout, RolloutStatus
    from controllers.rollout.reconciler import Converge, RolloutReconciler
    from controllers.rollout.settings import RolloutSettings
    from controllers.rollout.strategy import AnalysisRequest

    seen: list[tuple[str, XynergyService | None]] = []

    def source(m: AnalysisMetric, t: XynergyService | None) -> Any:
        seen.append((m.name, t))
        raise StalledError("no source here", reason="MetricsSourceUnavailable")

    rollout = Rollout.model_validate(
        {
            "metadata": {"name": "ro", "namespace": "team-a"},
            "spec": {
                "targetRef": {"name": "crm"},
                "image": "crm:2",
                "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
                "analysis": {"metrics": [metric().model_dump(by_alias=True, exclude_none=True)]},
            },
        }
    )
    crm = target("team-project")
    reconciler = RolloutReconciler(
        client=None,  # type: ignore[arg-type]
        backends=lambda *_: None,
        metrics=source,
        settings=RolloutSettings(),
    )
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    work = Converge(
        rollout, crm, crm, None,  # type: ignore[arg-type]
        RolloutStatus(stable_revision="crm-1", canary_revision="crm-ro-1"), now,
    )  # fmt: skip
    with pytest.raises(StalledError):
        await reconciler._analyze(work, AnalysisRequest(now, now, look=1, looks=2))
    assert seen == [("errors", crm)]
