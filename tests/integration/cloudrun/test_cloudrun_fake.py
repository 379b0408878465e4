"""The fake Cloud Run Admin API v2 itself: wire format, LROs, etags and errors as the client sees."""

from __future__ import annotations

import httpx
import pytest
from fakes.cloudrun import FakeCloudRun
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.future.polling import DEFAULT_POLLING
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

PARENT = "projects/xynergy-test/locations/europe-west1"
NAME = f"{PARENT}/services/hello"
FAST_POLL = DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.1, multiplier=1.5).with_timeout(5)


@pytest.fixture
def run(cloudrun_fake: FakeCloudRun) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=cloudrun_fake.endpoint),
    )


def service(image: str = "example.org/hello:1", revision: str = "") -> run_v2.Service:
    return run_v2.Service(
        template=run_v2.RevisionTemplate(
            revision=revision, containers=[run_v2.Container(image=image)]
        )
    )


def error_status(exc: gexc.GoogleAPICallError) -> str:
    status: str = exc.response.json()["error"]["status"]  # type: ignore[union-attr]
    return status


def test_create_returns_an_operation_and_the_service_reconciles(
    cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient
) -> None:
    with cloudrun_fake.operations_held():
        op = run.create_service(parent=PARENT, service=service(), service_id="hello")
        assert not op.operation.done
        svc = run.get_service(name=NAME)
        assert svc.reconciling
        assert svc.generation == 1
        assert svc.observed_generation == 0
        assert svc.terminal_condition.state == run_v2.Condition.State.CONDITION_RECONCILING
        assert svc.latest_created_revision
        assert not svc.latest_ready_revision
        assert svc.etag
        assert svc.uid
    done = op.result(timeout=5, polling=FAST_POLL)
    assert not done.reconciling
    assert done.observed_generation == done.generation == 1
    assert done.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert done.latest_ready_revision == done.latest_created_revision
    assert done.uri.startswith("https://hello-")
    assert done.uri.endswith(".a.run.app")
    assert done.traffic_statuses[0].percent == 100
    # Server defaults are filled in, as the real API does.
    assert done.template.service_account.endswith("-compute@developer.gserviceaccount.com")
    assert done.template.containers[0].ports[0].container_port == 8080
    assert done.template.max_instance_request_concurrency == 80


def test_wire_format_is_proto_json(cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient) -> None:
    run.create_service(parent=PARENT, service=service(), service_id="hello").result(
        timeout=5, polling=FAST_POLL
    )
    raw = httpx.get(f"{cloudrun_fake.endpoint}/v2/{NAME}").json()
    assert raw["ingress"] == "INGRESS_TRAFFIC_ALL"  # enums as names unless enum-encoding=int
    assert raw["generation"] == "1"  # int64 as a JSON string
    assert "description" not in raw  # defaults omitted
    as_ints = httpx.get(
        f"{cloudrun_fake.endpoint}/v2/{NAME}", params={"$alt": "json;enum-encoding=int"}
    ).json()
    assert as_ints["ingress"] == 1


def test_errors_map_to_api_core_exceptions(
    cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient
) -> None:
    run.create_service(parent=PARENT, service=service(), service_id="hello").result(
        timeout=5, polling=FAST_POLL
    )

    with pytest.raises(gexc.Conflict) as exists:
        run.create_service(parent=PARENT, service=service(), service_id="hello")
    assert error_status(exists.value) == "ALREADY_EXISTS"

    with pytest.raises(gexc.NotFound, match="Resource 'nope' of kind 'SERVICE'"):
        run.get_service(name=f"{PARENT}/services/nope")

    stale = run.get_service(name=NAME)
    run.update_service(service=run.get_service(name=NAME)).result(timeout=5, polling=FAST_POLL)
    with pytest.raises(gexc.Conflict) as aborted:
        run.update_service(service=stale)
    assert error_status(aborted.value) == "ABORTED"
    with pytest.raises(gexc.Conflict):
        run.delete_service(request=run_v2.DeleteServiceRequest(name=NAME, etag=stale.etag))

    with pytest.raises(gexc.BadRequest, match="service_id"):
        run.create_service(parent=PARENT, service=service(), service_id="Bad_Name")
    assert cloudrun_fake.writes == {"services.create": 1, "services.patch": 1}


def test_reserved_env_names_are_refused(
    cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient
) -> None:
    svc = service()
    svc.template.containers[0].env = [
        run_v2.EnvVar(name="LOG_LEVEL", value="INFO"),
        run_v2.EnvVar(name="PORT", value="8080"),
    ]
    with pytest.raises(gexc.BadRequest, match="reserved env names were provided: PORT") as bad:
        run.create_service(parent=PARENT, service=svc, service_id="hello")
    assert error_status(bad.value) == "INVALID_ARGUMENT"
    assert cloudrun_fake.writes == {}


def _tagged(svc: run_v2.Service, revision: str, tag: str) -> run_v2.Service:
    """`svc` with all traffic on the latest revision and `revision` reachable at `tag`."""
    kind = run_v2.TrafficTargetAllocationType
    svc.traffic = [
        run_v2.TrafficTarget(type_=kind.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100),
        run_v2.TrafficTarget(
            type_=kind.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision=revision, tag=tag
        ),
    ]
    return svc


def test_a_tag_and_the_service_name_together_are_at_most_46_characters(
    cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient
) -> None:
    """The tag URL `TAG---SERVICE-HASH-REGION.a.run.app` is one DNS label: Cloud Run refuses
    (400 INVALID_ARGUMENT, gcloud's words) a tag that does not fit beside the service id, on
    create and on update, and writes nothing; 46 together is accepted."""
    long_id = "a" * 41  # a valid service id (< 50): only the tag beside it is too long
    tagged = _tagged(service(revision=f"{long_id}-v1"), f"{long_id}-v1", "canary")
    with pytest.raises(gexc.BadRequest) as bad:
        run.create_service(parent=PARENT, service=tagged, service_id=long_id)
    assert error_status(bad.value) == "INVALID_ARGUMENT"
    assert bad.value.response.json()["error"]["message"] == (  # type: ignore[union-attr]
        f"traffic[1].tag: traffic tag 'canary' and service name '{long_id}' together are too "
        "long. Combined traffic tag and service name cannot exceed 46 characters."
    )

    fits = "b" * 40  # 40 + len("canary") == 46
    tagged = _tagged(service(revision=f"{fits}-v1"), f"{fits}-v1", "canary")
    done = run.create_service(parent=PARENT, service=tagged, service_id=fits).result(
        timeout=5, polling=FAST_POLL
    )
    assert [t.uri.partition("---")[0] for t in done.traffic_statuses] == ["", "https://canary"]

    # an update whose traffic has a tag is checked alike: `preview` is one character more
    live = run.get_service(name=f"{PARENT}/services/{fits}")
    with pytest.raises(
        gexc.BadRequest, match=r"traffic\[1\]\.tag: traffic tag 'preview' and"
    ) as up:
        run.update_service(service=_tagged(live, f"{fits}-v1", "preview"))
    assert error_status(up.value) == "INVALID_ARGUMENT"
    assert cloudrun_fake.writes == {"services.create": 1}
    assert cloudrun_fake.state.get_service(live.name).traffic[1].tag == "canary"


def test_revision_names_are_immutable(
    cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient
) -> None:
    run.create_service(
        parent=PARENT, service=service(revision="hello-v1"), service_id="hello"
    ).result(timeout=5, polling=FAST_POLL)
    svc = run.get_service(name=NAME)
    svc.template.containers[0].image = "example.org/hello:2"
    with pytest.raises(gexc.Conflict, match="Revision named 'hello-v1' with different"):
        run.update_service(service=svc)
    svc.template.revision = "other-v2"
    with pytest.raises(gexc.BadRequest, match="prefixed by the name of the enclosing Service"):
        run.update_service(service=svc)
    svc.template.revision = "hello-v2"
    run.update_service(service=svc).result(timeout=5, polling=FAST_POLL)
    # Same template again (e.g. a label change): no new revision.
    svc = run.get_service(name=NAME)
    svc.labels["team"] = "a"
    run.update_service(service=svc).result(timeout=5, polling=FAST_POLL)
    assert cloudrun_fake.revisions_of("xynergy-test", "europe-west1", "hello") == [
        "hello-v1",
        "hello-v2",
    ]
    revs = run_v2.RevisionsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=cloudrun_fake.endpoint),
    )
    listed = [r.name.rpartition("/")[2] for r in revs.list_revisions(parent=NAME)]
    assert sorted(listed) == ["hello-v1", "hello-v2"]
    assert revs.get_revision(name=f"{NAME}/revisions/hello-v2").containers[0].image.endswith(":2")


def test_delete_is_a_long_running_operation(
    cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient
) -> None:
    run.create_service(parent=PARENT, service=service(), service_id="hello").result(
        timeout=5, polling=FAST_POLL
    )
    with cloudrun_fake.operations_held():
        op = run.delete_service(name=NAME)
        assert run.get_service(name=NAME).delete_time  # still there while deleting
    op.result(timeout=5, polling=FAST_POLL)
    with pytest.raises(gexc.NotFound):
        run.get_service(name=NAME)


def test_injected_faults(cloudrun_fake: FakeCloudRun, run: run_v2.ServicesClient) -> None:
    cloudrun_fake.inject(429, count=1, rpc="services.list")
    with pytest.raises(gexc.TooManyRequests):
        list(run.list_services(parent=PARENT, retry=None))
    assert list(run.list_services(parent=PARENT, retry=None)) == []

    cloudrun_fake.deny("Permission 'run.services.create' denied", rpc="services.create")
    with pytest.raises(gexc.Forbidden, match=r"run\.services\.create"):
        run.create_service(parent=PARENT, service=service(), service_id="hello")
    cloudrun_fake.deny(None)
    run.create_service(parent=PARENT, service=service(), service_id="hello").result(
        timeout=5, polling=FAST_POLL
    )
    assert cloudrun_fake.calls["services.create"] == 2
    assert cloudrun_fake.writes["services.create"] == 1
