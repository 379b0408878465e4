"""The XynergyService Cloud Run backend (CloudRunProvider + the kind's builders) against the fake
Cloud Run Admin API v2, through the real run_v2 client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.cloudrun import FakeCloudRun
from google.api_core.client_options import ClientOptions
from google.api_core.future.polling import DEFAULT_POLLING
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError, TransientError
from controllers.core.retry import RetryPolicy
from controllers.xynergyservice.backends import CloudRunBackend
from controllers.xynergyservice.resources.cloudrun import MANAGED_BY_LABEL, OWNER_ANNOTATION

PROJECT = "xynergy-test"
REGION = "us-central1"
PATH = f"projects/{PROJECT}/locations/{REGION}/services"
SAMPLE = (
    Path(__file__).resolve().parents[3]
    / "manifests/samples/cloudrun/xynergyservice-ai-routing.yaml"
)

MakeProvider = Callable[..., CloudRunBackend]
MakeX = Callable[..., XynergyService]


def client(fake: FakeCloudRun) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=fake.endpoint),
    )


def revisions(fake: FakeCloudRun, name: str = "crm") -> list[str]:
    return fake.revisions_of(PROJECT, REGION, name)


async def test_create_reports_ready_with_url_and_generation_named_revision(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    status = await provider.apply(make_xservice(env=[{"name": "LOG_LEVEL", "value": "info"}]))

    assert status.exists
    assert status.ready, status
    assert status.reason == "Ready"
    assert status.writes == 1
    assert status.url
    assert status.url.startswith("https://crm-")
    assert status.latest_created_revision == status.latest_ready_revision == "crm-00001"
    assert [(t.revision, t.percent) for t in status.traffic] == [("crm-00001", 100)]
    assert cloudrun_fake.writes["services.create"] == 1
    assert revisions(cloudrun_fake) == ["crm-00001"]

    svc = client(cloudrun_fake).get_service(name=f"{PATH}/crm")
    assert svc.labels[MANAGED_BY_LABEL] == "xynergy"
    assert svc.annotations[OWNER_ANNOTATION] == "team-a/crm"
    container = svc.template.containers[0]
    assert container.image.endswith("crm:1.0.0")
    assert [(e.name, e.value) for e in container.env] == [("LOG_LEVEL", "info")]
    # api-service profile: 500m is raised to 1 cpu (Cloud Run needs >= 1 with concurrency 80)
    assert dict(container.resources.limits) == {"cpu": "1", "memory": "1Gi"}
    assert svc.template.max_instance_request_concurrency == 80
    assert (svc.template.scaling.min_instance_count, svc.template.scaling.max_instance_count) == (
        1,
        50,
    )


async def test_unchanged_spec_makes_no_write(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    obj = make_xservice(healthCheck={"path": "/healthz"}, command=["/app"], args=["serve"])
    await provider.apply(obj)
    assert cloudrun_fake.total_writes == 1

    for _ in range(3):
        status = await provider.apply(obj)
        assert status.ready
        assert status.writes == 0
    observed = await provider.observe(obj)
    assert observed.ready
    assert observed.writes == 0
    assert cloudrun_fake.total_writes == 1
    assert revisions(cloudrun_fake) == ["crm-00001"]


async def test_changed_template_makes_one_new_revision_and_service_fields_none(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    await provider.apply(make_xservice())

    v2 = make_xservice(generation=2, image="us-docker.pkg.dev/xynergy-test/platform/crm:1.1.0")
    status = await provider.apply(v2)
    assert status.ready
    assert status.writes == 1
    assert status.latest_ready_revision == "crm-00002"
    assert revisions(cloudrun_fake) == ["crm-00001", "crm-00002"]
    assert (await provider.apply(v2)).writes == 0

    # Ingress lives on the service, not the template: one write, no new revision.
    v3 = make_xservice(
        generation=3,
        image="us-docker.pkg.dev/xynergy-test/platform/crm:1.1.0",
        cloudRun={"project": PROJECT, "region": REGION, "ingress": "internal"},
    )
    status = await provider.apply(v3)
    assert status.ready
    assert status.writes == 1
    assert revisions(cloudrun_fake) == ["crm-00001", "crm-00002"]
    assert cloudrun_fake.writes == {"services.create": 1, "services.patch": 2}


async def test_delete_removes_the_service(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    obj = make_xservice()
    await provider.apply(obj)

    assert await provider.delete(obj, orphan=False) is True
    assert cloudrun_fake.writes["services.delete"] == 1
    assert not (await provider.observe(obj)).exists
    assert await provider.delete(obj, orphan=False) is True  # already gone: no write
    assert cloudrun_fake.writes["services.delete"] == 1


async def test_orphan_leaves_the_service_running_and_releases_it(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    obj = make_xservice()
    await provider.apply(obj)

    assert await provider.delete(obj, orphan=True) is True
    assert cloudrun_fake.writes["services.delete"] == 0
    svc = client(cloudrun_fake).get_service(name=f"{PATH}/crm")
    assert MANAGED_BY_LABEL not in svc.labels
    assert OWNER_ANNOTATION not in svc.annotations
    assert revisions(cloudrun_fake) == ["crm-00001"]  # the release made no revision

    # Released: a new object of the same name does not silently take it over.
    with pytest.raises(StalledError, match=OWNER_ANNOTATION) as err:
        await provider.apply(obj)
    assert err.value.reason == "AlreadyExists"


async def test_service_owned_by_another_object_is_not_touched(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    await provider.apply(make_xservice(namespace="team-a"))
    writes = cloudrun_fake.total_writes

    other = make_xservice(namespace="team-b", image="example.org/other:1")
    with pytest.raises(StalledError, match="managed by XynergyService team-a/crm"):
        await provider.apply(other)
    assert await provider.delete(other, orphan=False) is True  # not ours: left alone
    assert cloudrun_fake.total_writes == writes


async def test_503_storm_converges_through_the_client_retry(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    """google-api-core's AsyncRetry (our policy's bounds) retries each failed call once per
    failure (no tight loop) and the apply then writes exactly once."""
    provider = make_provider()
    cloudrun_fake.inject(503, count=4)

    status = await provider.apply(make_xservice())

    assert status.ready
    assert status.writes == 1
    failed = [rpc for _, rpc, code in cloudrun_fake.log if code == 503]
    assert failed == ["services.get"] * 4
    assert cloudrun_fake.calls["services.get"] == 4 + 2  # retries, then the apply's two reads


async def test_persistent_503_gives_up_as_transient_after_bounded_attempts(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider(retry=RetryPolicy(initial=0.01, maximum=0.02, max_attempts=4))
    cloudrun_fake.inject(503, count=1000)

    with pytest.raises(TransientError, match="gave up after 4 attempts") as err:
        await provider.apply(make_xservice())
    assert err.value.reason == "ApiUnavailable"
    assert "The service is currently unavailable." in err.value.message
    assert cloudrun_fake.calls["services.get"] == 4


async def test_429_on_create_is_retried_and_writes_once(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    cloudrun_fake.inject(429, count=2, rpc="services.create")

    status = await provider.apply(make_xservice())

    assert status.ready
    assert cloudrun_fake.calls["services.create"] == 3
    assert cloudrun_fake.writes["services.create"] == 1


async def test_403_stalls_with_the_api_message_without_retrying(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    message = (
        "Permission 'run.services.get' denied on resource "
        "'projects/xynergy-test/locations/us-central1/services/crm' (or resource may not exist)."
    )
    cloudrun_fake.deny(message)

    with pytest.raises(StalledError) as err:
        await provider.apply(make_xservice())

    assert err.value.reason == "PermissionDenied"
    assert message in err.value.message
    assert "http://" not in err.value.message  # the API's words, not the client's URL
    assert cloudrun_fake.calls["services.get"] == 1
    assert cloudrun_fake.total_writes == 0


async def test_interrupted_apply_then_restart_creates_no_duplicate_revision(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    obj = make_xservice()
    with cloudrun_fake.operations_held():
        # The first operator gives up waiting while Cloud Run is still deploying...
        first = make_provider(operation_timeout=0.1)
        status = await first.apply(obj)
        assert status.writes == 1
        assert not status.ready
        assert status.reason == "Deploying"
        # ...and "dies". A fresh one (no memory of the first) reconciles the same generation.
        second = make_provider(operation_timeout=0.1)
        status = await second.apply(obj)
        assert status.writes == 0
        assert not status.ready
    assert cloudrun_fake.writes == {"services.create": 1}

    third = make_provider()
    status = await third.apply(obj)
    assert status.ready
    assert status.writes == 0
    assert revisions(cloudrun_fake) == ["crm-00001"]


async def test_lost_create_response_is_not_written_twice(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    # Cloud Run creates the service, but the 503 is all the caller sees.
    cloudrun_fake.inject(503, rpc="services.create", after=True)

    status = await provider.apply(make_xservice())

    assert cloudrun_fake.calls["services.create"] == 2  # the retry got 409 ALREADY_EXISTS
    assert cloudrun_fake.writes["services.create"] == 1
    assert cloudrun_fake.writes["services.patch"] == 0
    assert revisions(cloudrun_fake) == ["crm-00001"]
    assert status.latest_created_revision == "crm-00001"


async def test_lost_update_response_is_not_written_twice(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    await provider.apply(make_xservice())
    cloudrun_fake.inject(503, rpc="services.patch", after=True)

    status = await provider.apply(make_xservice(generation=2, image="example.org/crm:2"))

    # The retried PATCH carries the old etag -> 409 ABORTED -> re-read: already in place.
    assert cloudrun_fake.calls["services.patch"] == 2
    assert cloudrun_fake.writes["services.patch"] == 1
    assert revisions(cloudrun_fake) == ["crm-00001", "crm-00002"]
    # Nothing left to write; the deploy we started (response lost) is reported as in progress.
    assert status.writes == 0
    assert status.latest_created_revision == "crm-00002"
    cloudrun_fake.state.complete_operations()
    assert (await provider.observe(make_xservice(generation=2, image="example.org/crm:2"))).ready


async def test_etag_conflict_rereads_and_converges(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    await provider.apply(make_xservice())
    cloudrun_fake.inject(409, rpc="services.patch", status="ABORTED", message="etag mismatch")

    status = await provider.apply(make_xservice(generation=2, image="example.org/crm:2"))

    assert status.ready
    assert status.writes == 1
    assert cloudrun_fake.calls["services.patch"] == 2


async def test_drift_is_corrected_with_a_new_revision_name(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    obj = make_xservice()
    await provider.apply(obj)

    # Someone deploys another image by hand (auto-named revision).
    runc = client(cloudrun_fake)
    svc = runc.get_service(name=f"{PATH}/crm")
    svc.template.containers[0].image = "example.org/hotfix:1"
    svc.template.revision = ""
    runc.update_service(service=svc).result(
        timeout=5, polling=DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.1).with_timeout(5)
    )

    status = await provider.apply(obj)

    # crm-00001 exists with the original config; the corrected template needs a fresh name.
    assert status.ready
    assert status.writes == 1
    assert status.latest_ready_revision == "crm-00001-1"
    assert revisions(cloudrun_fake)[-1] == "crm-00001-1"
    assert (await provider.apply(obj)).writes == 0


async def test_failed_rollout_stalls_with_cloud_run_message(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    message = (
        "The user-provided container failed to start and listen on the port defined provided "
        "by the PORT=8080 environment variable."
    )
    cloudrun_fake.state.fail_next_rollouts(message)

    with pytest.raises(StalledError, match="failed to start") as err:
        await provider.apply(make_xservice())
    assert err.value.reason == "RevisionFailed"

    # Level-based: the same spec stays stalled without writing again.
    with pytest.raises(StalledError):
        await provider.apply(make_xservice())
    assert cloudrun_fake.total_writes == 1

    # A new generation with a working image recovers.
    status = await provider.apply(make_xservice(generation=2, image="example.org/crm:fixed"))
    assert status.ready
    assert status.latest_ready_revision == "crm-00002"


async def test_explicit_invalid_sizing_stalls_with_the_api_message(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider, make_xservice: MakeX
) -> None:
    provider = make_provider()
    obj = make_xservice(resources={"cpu": "500m"}, scaling={"concurrency": 80})

    with pytest.raises(StalledError, match="Total cpu < 1 is not supported") as err:
        await provider.apply(obj)
    assert err.value.reason == "InvalidArgument"
    assert cloudrun_fake.total_writes == 0


@pytest.mark.parametrize(
    ("overrides", "pattern", "reason"),
    [
        (
            {"env": [{"name": "API_KEY", "secretKeyRef": {"name": "crm", "key": "api-key"}}]},
            r"spec\.env\[0\]\.secretKeyRef\.key: on Cloud Run the key is the Secret Manager version",
            "InvalidSpec",
        ),
        (
            {"env": [{"name": "MODE", "configMapKeyRef": {"name": "crm", "key": "mode"}}]},
            r"spec\.env\[0\]\.configMapKeyRef \(variable MODE\): Kubernetes ConfigMaps are not",
            "UnsupportedEnv",
        ),
        (
            {"env": [{"name": "K_SERVICE", "value": "crm"}]},
            r"spec\.env\[0\] \(variable K_SERVICE\): Cloud Run sets PORT, K_SERVICE, K_REVISION",
            "UnsupportedEnv",
        ),
        ({"name": "x" * 50}, "not a valid Cloud Run service name", "InvalidName"),
        ({"name": "9lives"}, "not a valid Cloud Run service name", "InvalidName"),
    ],
)
async def test_specs_cloud_run_cannot_express_stall_before_any_call(
    cloudrun_fake: FakeCloudRun,
    make_provider: MakeProvider,
    make_xservice: MakeX,
    overrides: dict[str, Any],
    pattern: str,
    reason: str,
) -> None:
    provider = make_provider()
    name = overrides.pop("name", "crm")
    with pytest.raises(StalledError, match=pattern) as err:
        await provider.apply(make_xservice(name, **overrides))
    assert err.value.reason == reason
    assert sum(cloudrun_fake.calls.values()) == 0


async def test_cloudrun_sample_manifest_deploys(
    cloudrun_fake: FakeCloudRun, make_provider: MakeProvider
) -> None:
    body = yaml.safe_load(SAMPLE.read_text())
    body["metadata"]["generation"] = 1
    obj = XynergyService.model_validate(body)
    provider = make_provider()

    status = await provider.apply(obj)

    assert status.ready
    svc = client(cloudrun_fake).get_service(
        name="projects/xynergy-demo/locations/us-central1/services/ai-routing"
    )
    assert svc.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
    assert svc.template.service_account == "ai-routing@xynergy-demo.iam.gserviceaccount.com"
    assert (
        svc.template.execution_environment == run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2
    )
    assert dict(svc.template.containers[0].resources.limits) == {"cpu": "2000m", "memory": "4Gi"}
    assert svc.template.scaling.min_instance_count == 0
    assert (await provider.apply(obj)).writes == 0
