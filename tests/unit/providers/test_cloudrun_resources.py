"""Pure parts of Cloud Run: the XynergyService's Cloud Run builders (naming, the desired service,
comparison, the plan), what a service says (status), and the provider's error split. No
network."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import launch_stage_pb2
from google.api_core import exceptions as gexc
from google.cloud import run_v2

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError, TransientError
from controllers.providers.cloudrun import CloudRunProvider, classify_error
from controllers.xynergyservice.observed_cloudrun import from_service as status_from_service
from controllers.xynergyservice.resources.cloudrun import (
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    desired_service,
    managed_view,
    plan,
    service_path,
)
from controllers.xynergyservice.resources.naming import revision_name

State = run_v2.Condition.State


def xs(name: str = "crm", *, generation: int = 3, **spec: Any) -> XynergyService:
    cloud_run = spec.pop("cloudRun", {"project": "xynergy-test", "region": "us-central1"})
    return XynergyService.model_validate(
        {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "XynergyService",
            "metadata": {"name": name, "namespace": "ns", "generation": generation},
            "spec": {"image": "img:1", "backend": "cloudRun", "cloudRun": cloud_run, **spec},
        }
    )


def test_service_path_and_revision_name() -> None:
    assert service_path(xs()) == "projects/xynergy-test/locations/us-central1/services/crm"
    assert revision_name(xs(generation=7)) == "crm-00007"  # one format on every backend
    assert len(revision_name(xs("a" * 49, generation=123456))) <= 63


@pytest.mark.parametrize("name", ["a" * 50, "1abc", "abc-", "ab.c"])
def test_invalid_service_names_stall(name: str) -> None:
    obj = xs(name)
    with pytest.raises(StalledError) as err:
        service_path(obj)
    assert err.value.reason == "InvalidName"


def test_kubernetes_backend_is_not_ours() -> None:
    obj = XynergyService.model_validate(
        {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "XynergyService",
            "metadata": {"name": "crm"},
            "spec": {"image": "img:1"},
        }
    )
    with pytest.raises(StalledError, match="cloudRun"):
        service_path(obj)


def test_desired_service_maps_the_spec() -> None:
    obj = xs(
        port=9000,
        command=["/bin/app"],
        args=["--serve"],
        env=[{"name": "A", "value": "1"}, {"name": "EMPTY"}],
        profile="ai-intensive",
        scaling={"minInstances": 2, "maxInstances": 8, "concurrency": 5},
        replicas=4,
        healthCheck={"path": "/ready", "periodSeconds": 5, "timeoutSeconds": 2},
        cloudRun={
            "project": "xynergy-test",
            "region": "us-central1",
            "serviceAccount": "crm-sa@xynergy-test.iam.gserviceaccount.com",
            "ingress": "internal",
            "vpcConnector": "projects/xynergy-test/locations/us-central1/connectors/main",
            "executionEnvironment": "gen1",
            "launchStage": "BETA",
        },
    )
    svc = desired_service(obj, None)
    assert svc.labels == {MANAGED_BY_LABEL: "xynergy"}
    assert svc.annotations == {OWNER_ANNOTATION: "ns/crm"}
    assert svc.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
    assert svc.launch_stage == launch_stage_pb2.LaunchStage.BETA
    assert svc.scaling.min_instance_count == 4
    tpl = svc.template
    assert tpl.revision == ""  # named by the caller only when the template changes
    assert tpl.service_account == "crm-sa@xynergy-test.iam.gserviceaccount.com"
    assert tpl.vpc_access.connector.endswith("/connectors/main")
    assert tpl.execution_environment == run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1
    assert (tpl.scaling.min_instance_count, tpl.scaling.max_instance_count) == (2, 8)
    assert tpl.max_instance_request_concurrency == 5
    (container,) = tpl.containers
    assert container.image == "img:1"
    assert list(container.command) == ["/bin/app"]
    assert list(container.args) == ["--serve"]
    assert [(e.name, e.value) for e in container.env] == [("A", "1"), ("EMPTY", "")]
    assert [(p.name, p.container_port) for p in container.ports] == [("http1", 9000)]
    assert dict(container.resources.limits) == {"cpu": "2000m", "memory": "4Gi"}
    probe = container.startup_probe
    assert (probe.http_get.path, probe.http_get.port, probe.period_seconds) == ("/ready", 9000, 5)


@pytest.mark.parametrize(
    ("spec", "cpu"),
    [
        ({"profile": "api-service"}, "1"),  # 500m with concurrency 80: raised
        ({"profile": "dashboard"}, "1"),  # 250m with concurrency 100: raised
        ({"profile": "background-worker"}, "1"),  # 250m, concurrency 1, but gen2: raised
        (
            {
                "profile": "background-worker",
                "cloudRun": {
                    "project": "xynergy-test",
                    "region": "us-central1",
                    "executionEnvironment": "gen1",
                },
            },
            "250m",  # valid on gen1 with concurrency 1: kept
        ),
        ({"resources": {"cpu": "500m"}}, "500m"),  # explicit: sent as is, the API judges
        ({"profile": "data-processing"}, "1000m"),
    ],
)
def test_profile_cpu_is_fitted_to_cloud_run(spec: dict[str, Any], cpu: str) -> None:
    limits = desired_service(xs(**spec), None).template.containers[0].resources.limits
    assert limits["cpu"] == cpu


def test_configmap_env_is_unsupported() -> None:
    """secretKeyRef maps to Secret Manager (tests/unit/controllers/test_xynergyservice_rotation_cloudrun.py)."""
    obj = xs(env=[{"name": "LEVEL", "configMapKeyRef": {"name": "cfg", "key": "level"}}])
    with pytest.raises(StalledError, match=r"spec\.env\[0\]\.configMapKeyRef") as err:
        desired_service(obj, None)
    assert err.value.reason == "UnsupportedEnv"


def test_env_cloud_run_sets_itself_is_unsupported() -> None:
    obj = xs(env=[{"name": "A", "value": "1"}, {"name": "PORT", "value": "9000"}])
    with pytest.raises(
        StalledError, match=r"spec\.env\[1\] \(variable PORT\): Cloud Run sets"
    ) as err:
        desired_service(obj, None)
    assert err.value.reason == "UnsupportedEnv"
    assert "PORT to spec.port, 8080" in str(err.value)


def with_server_defaults(svc: run_v2.Service) -> run_v2.Service:
    """What the API adds on write: defaults we do not manage, plus other people's fields."""
    out = run_v2.Service(svc)
    out.name = "projects/xynergy-test/locations/us-central1/services/crm"
    out.etag = '"abc"'
    out.labels["team"] = "sales"
    out.template.revision = "crm-00003"
    out.template.service_account = "123-compute@developer.gserviceaccount.com"
    out.template.timeout = {"seconds": 300}
    out.template.containers[0].startup_probe = run_v2.Probe(
        tcp_socket=run_v2.TCPSocketAction(port=8080), timeout_seconds=240
    )
    out.template.containers.append(run_v2.Container(name="sidecar", image="otel:1"))
    return out


def test_managed_view_ignores_server_defaults_and_foreign_fields() -> None:
    obj = xs(profile="data-processing")
    existing = with_server_defaults(desired_service(obj, None))
    assert managed_view(existing, obj) == managed_view(desired_service(obj, existing), obj)


def test_managed_view_sees_changes_we_make() -> None:
    obj = xs(profile="data-processing")
    existing = with_server_defaults(desired_service(obj, None))
    changed = xs(profile="data-processing", image="img:2")
    desired = desired_service(changed, existing)
    assert managed_view(existing, changed)["template"] != managed_view(desired, changed)["template"]
    # Overlay keeps what we do not manage: sidecar, timeout, foreign labels, revision name.
    assert [c.name for c in desired.template.containers] == ["", "sidecar"]
    assert desired.labels["team"] == "sales"
    assert desired.template.timeout.total_seconds() == 300
    assert desired.etag == '"abc"'


def test_managed_view_normalises_quantities() -> None:
    obj = xs(profile="data-processing")
    a = desired_service(obj, None)
    b = run_v2.Service(a)
    b.template.containers[0].resources.limits["cpu"] = "1"
    b.template.containers[0].resources.limits["memory"] = "2048Mi"
    assert managed_view(a, obj) == managed_view(b, obj)


def served(**fields: Any) -> run_v2.Service:
    base: dict[str, Any] = {
        "name": "projects/p/locations/l/services/crm",
        "generation": 2,
        "observed_generation": 2,
        "reconciling": False,
        "uri": "https://crm-abc-uc.a.run.app",
        "latest_created_revision": "projects/p/locations/l/services/crm/revisions/crm-00002",
        "latest_ready_revision": "projects/p/locations/l/services/crm/revisions/crm-00002",
        "terminal_condition": run_v2.Condition(type_="Ready", state=State.CONDITION_SUCCEEDED),
        "traffic_statuses": [
            run_v2.TrafficTargetStatus(
                type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                percent=90,
            ),
            run_v2.TrafficTargetStatus(revision="crm-00001", percent=10, tag="old"),
        ],
    }
    base.update(fields)
    return run_v2.Service(**base)


def test_status_ready() -> None:
    status = status_from_service(served(), writes=1)
    assert status.ready
    assert status.reason == "Ready"
    assert status.url == "https://crm-abc-uc.a.run.app"
    assert status.latest_ready_revision == "crm-00002"
    assert [(t.revision, t.percent, t.tag) for t in status.traffic] == [
        ("crm-00002", 90, None),
        ("crm-00001", 10, "old"),
    ]
    assert status.writes == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"reconciling": True},
        {"observed_generation": 1},
        {"terminal_condition": run_v2.Condition(state=State.CONDITION_RECONCILING)},
        {"latest_ready_revision": "projects/p/locations/l/services/crm/revisions/crm-00001"},
    ],
)
def test_status_not_ready_while_rolling_out(fields: dict[str, Any]) -> None:
    status = status_from_service(served(**fields))
    assert not status.ready
    assert status.reason == "Deploying"


def test_status_failed_rollout_stalls_with_cloud_run_message() -> None:
    failed = run_v2.Condition(
        type_="Ready",
        state=State.CONDITION_FAILED,
        message="Container failed to start",
        reason=run_v2.Condition.CommonReason.CONTAINER_MISSING,
    )
    with pytest.raises(StalledError, match="Container failed to start") as err:
        status_from_service(served(terminal_condition=failed, observed_generation=1))
    assert err.value.reason == "ContainerMissing"


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (gexc.Forbidden("denied"), StalledError, "PermissionDenied"),
        (gexc.Unauthorized("no token"), StalledError, "PermissionDenied"),
        (gexc.NotFound("no project"), StalledError, "NotFound"),
        (gexc.BadRequest("bad"), StalledError, "InvalidArgument"),
        (gexc.Conflict("etag"), TransientError, "Conflict"),
        (gexc.TooManyRequests("quota"), TransientError, "RateLimited"),
        (gexc.ServiceUnavailable("down"), TransientError, "ApiUnavailable"),
        (gexc.InternalServerError("oops"), TransientError, "ApiUnavailable"),
    ],
)
def test_classify_error(exc: gexc.GoogleAPICallError, kind: type, reason: str) -> None:
    err = classify_error(exc, what="Cloud Run service crm")
    assert type(err) is kind
    assert err.reason == reason
    assert err.message.startswith("Cloud Run service crm: ")


def test_plan_writes_only_what_changed_and_names_new_revisions() -> None:
    obj = xs(profile="data-processing", generation=3)
    created, revision = plan(obj, None) or (None, None)
    assert created is not None
    assert revision == "crm-00003"
    existing = with_server_defaults(created)
    assert plan(obj, existing) is None  # nothing we manage differs: no write
    newer = xs(profile="data-processing", generation=4, image="img:2")
    wanted = plan(newer, existing)
    assert wanted is not None
    assert wanted[1] == "crm-00004"  # the template changed: a new revision
    ingress = xs(
        profile="data-processing",
        generation=5,
        cloudRun={"project": "xynergy-test", "region": "us-central1", "ingress": "internal"},
    )
    wanted = plan(ingress, existing)
    assert wanted is not None
    assert wanted[1] is None  # a service-level field: no new revision
    public = xs(
        profile="data-processing",
        generation=6,
        cloudRun={"project": "xynergy-test", "region": "us-central1", "invokerIamCheck": False},
    )
    wanted = plan(public, existing)
    assert wanted is not None
    assert wanted[0].invoker_iam_disabled
    assert wanted[1] is None, "who may invoke is the service's, not a revision's"
    assert not existing.invoker_iam_disabled, "a new service checks IAM (Cloud Run's default)"
    opened = run_v2.Service(existing)
    opened.invoker_iam_disabled = True  # made public in the console
    assert plan(obj, opened) is None, "unset: a change made elsewhere stays (upgrades too)"
    checked = xs(
        profile="data-processing",
        generation=7,
        cloudRun={"project": "xynergy-test", "region": "us-central1", "invokerIamCheck": True},
    )
    restored = plan(checked, opened)
    assert restored is not None
    assert not restored[0].invoker_iam_disabled, "set: the spec wins"


def test_plan_refuses_a_service_someone_else_owns() -> None:
    obj = xs()
    foreign = with_server_defaults(desired_service(obj, None))
    foreign.annotations.pop(OWNER_ANNOTATION)
    with pytest.raises(StalledError, match="not managed by Xynergy") as err:
        plan(obj, foreign)
    assert err.value.reason == "AlreadyExists"


async def test_missing_credentials_stall_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")
    with pytest.raises(StalledError) as err:
        await CloudRunProvider().get(service_path(xs()))
    assert err.value.reason == "NoCredentials"
