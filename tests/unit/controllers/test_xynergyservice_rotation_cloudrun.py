"""Rotation on Cloud Run: env from Secret Manager versions. The Cloud Run backend, the Cloud Run
provider and the Secret Manager provider run through the real client libraries (REST) against
the in-process fakes of both APIs (tests/fakes/cloudrun, tests/fakes/secretmanager)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fakes.cloudrun import FakeCloudRun
from fakes.secretmanager import FakeSecretManager, project_number
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2, secretmanager_v1

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError
from controllers.core.retry import RetryPolicy
from controllers.providers.cloudrun import CloudRunProvider
from controllers.providers.secretmanager import SecretManagerProvider
from controllers.settings import OperatorSettings
from controllers.xynergyservice.backends import CloudRunBackend
from controllers.xynergyservice.reconciler import _secret_manager
from controllers.xynergyservice.resources.cloudrun import desired_service
from controllers.xynergyservice.status import events_for

pytestmark = pytest.mark.unit

PROJECT, REGION = "xynergy-test", "us-central1"
VALUE_1, VALUE_2 = b"first-secret-value", b"second-secret-value"
FAST = RetryPolicy(initial=0.01, maximum=0.05, deadline=5.0, max_attempts=3)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeCloudRun, FakeSecretManager]]:
    with FakeCloudRun(operation_delay=0.02) as run, FakeSecretManager() as sm:
        yield run, sm
        assert not run.crashes, run.crashes[0]
        assert not sm.crashes, sm.crashes[0]


def _backend(run: FakeCloudRun, sm: FakeSecretManager) -> CloudRunBackend:
    provider = CloudRunProvider(
        api_endpoint=run.endpoint, retry=FAST, operation_timeout=5.0, poll_interval=0.02
    )
    return CloudRunBackend(provider, SecretManagerProvider(api_endpoint=sm.endpoint, retry=FAST))


def _svc(key: str = "latest", generation: int = 1, **ref: Any) -> XynergyService:
    env = [
        {"name": "MODE", "value": "prod"},
        {"name": "DB_PASSWORD", "secretKeyRef": {"name": "db-password", "key": key, **ref}},
    ]
    return XynergyService.model_validate(
        {
            "metadata": {"name": "crm", "namespace": "team-a", "generation": generation},
            "spec": {
                "image": "us-docker.pkg.dev/xynergy-test/platform/crm:1.0.0",
                "backend": "cloudRun",
                "cloudRun": {"project": PROJECT, "region": REGION},
                "env": env,
            },
        }
    )


def _deployed(svc: XynergyService, revision: str) -> XynergyService:
    body = svc.model_dump(by_alias=True, exclude_none=True)
    body["status"] = {"latestCreatedRevision": revision}
    return XynergyService.model_validate(body)


def _secret_env(run: FakeCloudRun) -> list[tuple[str, str, str]]:
    path = f"projects/{PROJECT}/locations/{REGION}/services/crm"
    with run.state.lock:
        service = run.state.get_service(path)
    return [
        (e.name, e.value_source.secret_key_ref.secret, e.value_source.secret_key_ref.version)
        for e in service.template.containers[0].env
        if e.value_source.secret_key_ref.secret
    ]


async def test_rotation_makes_a_new_revision_pinned_to_the_new_version(
    fakes: tuple[FakeCloudRun, FakeSecretManager],
) -> None:
    run, sm = fakes
    sm.put(PROJECT, "db-password", VALUE_1)
    backend = _backend(run, sm)
    first = await backend.apply(_svc())
    assert first.ready
    assert first.latest_created_revision == "crm-00001"
    assert _secret_env(run) == [("DB_PASSWORD", "db-password", "1")]

    svc = _deployed(_svc(), "crm-00001")
    again = await backend.apply(svc)
    assert again.writes == 0, "an unchanged secret version writes nothing"

    sm.put(PROJECT, "db-password", VALUE_2)
    rotated = await backend.apply(svc)
    assert rotated.writes == 1
    assert rotated.changed_sources == ("Secret Manager secret db-password",)
    assert _secret_env(run) == [("DB_PASSWORD", "db-password", "2")]
    assert run.revisions_of(PROJECT, REGION, "crm") == ["crm-00001", "crm-00001-1"]
    with run.state.lock:
        stored = str(run.state.get_service(f"projects/{PROJECT}/locations/{REGION}/services/crm"))
    assert VALUE_1.decode() not in stored
    assert VALUE_2.decode() not in stored

    assert svc.status is not None
    new = svc.status.model_copy(update={"latest_created_revision": "crm-00001-1"})
    events = events_for(svc.status, new, writes=1, created=False, changed=rotated.changed_sources)
    assert [(e.reason, e.message) for e in events] == [
        (
            "ConfigChanged",
            "Secret Manager secret db-password changed: rolling out revision crm-00001-1",
        )
    ]


async def test_a_pinned_version_does_not_follow_rotation(
    fakes: tuple[FakeCloudRun, FakeSecretManager],
) -> None:
    run, sm = fakes
    sm.put(PROJECT, "db-password", VALUE_1)
    backend = _backend(run, sm)
    await backend.apply(_svc(key="1"))
    sm.put(PROJECT, "db-password", VALUE_2)
    assert (await backend.apply(_deployed(_svc(key="1"), "crm-00001"))).writes == 0
    assert _secret_env(run) == [("DB_PASSWORD", "db-password", "1")]


@pytest.mark.parametrize(
    ("svc", "match", "reason"),
    [
        (_svc(key="password"), r"spec\.env\[1\]\.secretKeyRef\.key: .*'latest'", "InvalidSpec"),
        (
            _svc(key="latest", optional=True),
            r"spec\.env\[1\]\.secretKeyRef\.optional",
            "InvalidSpec",
        ),
        (_svc(key="7"), r"secret db-password version 7: .*not found", "SecretVersionNotFound"),
    ],
)
async def test_what_cannot_be_mapped_stalls_with_the_field(
    fakes: tuple[FakeCloudRun, FakeSecretManager], svc: XynergyService, match: str, reason: str
) -> None:
    run, sm = fakes
    sm.put(PROJECT, "db-password", VALUE_1)
    with pytest.raises(StalledError, match=match) as err:
        await _backend(run, sm).apply(svc)
    assert err.value.reason == reason
    assert run.total_writes == 0


async def test_disabled_version_and_denied_access_stall(
    fakes: tuple[FakeCloudRun, FakeSecretManager],
) -> None:
    run, sm = fakes
    sm.put(PROJECT, "db-password", VALUE_1)
    client = _sm_client(sm)
    client.disable_secret_version(name=f"projects/{PROJECT}/secrets/db-password/versions/1")
    with pytest.raises(StalledError, match=r"version 1\) is DISABLED") as err:
        await _backend(run, sm).apply(_svc())
    assert err.value.reason == "SecretVersionNotEnabled"
    sm.deny("Permission 'secretmanager.versions.get' denied on resource")
    with pytest.raises(StalledError, match=r"secretmanager\.versions\.get") as err:
        await _backend(run, sm).apply(_svc())
    assert err.value.reason == "PermissionDenied"


def test_a_caller_that_does_not_resolve_keeps_the_pinned_version() -> None:
    """The Rollout controller builds templates without resolving: `latest` keeps what the
    service pins, so it makes no revision of its own."""
    existing = desired_service(_svc(), None, versions={("db-password", "latest"): "4"})
    again = desired_service(_svc(), existing)
    env = again.template.containers[0].env[1].value_source.secret_key_ref
    assert (env.secret, env.version) == ("db-password", "4")
    fresh = desired_service(_svc(), None).template.containers[0].env[1]
    assert fresh.value_source.secret_key_ref.version == "latest"


def _sm_client(sm: FakeSecretManager) -> secretmanager_v1.SecretManagerServiceClient:
    return secretmanager_v1.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=sm.endpoint),
    )


def test_the_fake_speaks_the_real_clients_wire_format(
    fakes: tuple[FakeCloudRun, FakeSecretManager],
) -> None:
    _, sm = fakes
    client = _sm_client(sm)
    replication = secretmanager_v1.Replication(automatic=secretmanager_v1.Replication.Automatic())
    secret = client.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id="api-key",
        secret=secretmanager_v1.Secret(replication=replication),
    )
    number = project_number(PROJECT)
    assert secret.name == f"projects/{number}/secrets/api-key"
    with pytest.raises(gexc.BadRequest, match="replication"):
        client.create_secret(
            parent=f"projects/{PROJECT}", secret_id="no-policy", secret=secretmanager_v1.Secret()
        )
    with pytest.raises(gexc.Conflict):
        client.create_secret(
            parent=f"projects/{PROJECT}",
            secret_id="api-key",
            secret=secretmanager_v1.Secret(replication=replication),
        )
    # payload as a dict (proto-plus builds the message): the stubs accept only SecretPayload
    client.add_secret_version(parent=secret.name, payload={"data": b"v1"})  # type: ignore[arg-type]
    latest = f"projects/{PROJECT}/secrets/api-key/versions/latest"
    added = client.add_secret_version(parent=secret.name, payload={"data": b"v2"})  # type: ignore[arg-type]
    got = client.get_secret_version(name=latest)
    assert got.name == added.name == f"projects/{number}/secrets/api-key/versions/2"
    assert got.state == secretmanager_v1.SecretVersion.State.ENABLED
    assert client.access_secret_version(name=latest).payload.data == b"v2"
    client.disable_secret_version(name=got.name)
    with pytest.raises(gexc.BadRequest, match="DISABLED"):
        client.access_secret_version(name=latest)
    with pytest.raises(gexc.BadRequest):
        client.get_secret_version(name=f"projects/{PROJECT}/secrets/api-key/versions/zero")
    with pytest.raises(gexc.NotFound):
        client.get_secret_version(name=f"projects/{PROJECT}/secrets/missing/versions/latest")
    with pytest.raises(gexc.BadRequest, match="Checksum"):
        client.add_secret_version(parent=secret.name, payload={"data": b"v3", "data_crc32c": 12345})  # type: ignore[arg-type]


def test_cloud_run_takes_the_secret_reference() -> None:
    """The run_v2 shape the template carries (what Cloud Run's own YAML maps name/key to)."""
    env = desired_service(_svc(), None).template.containers[0].env
    assert env[0] == run_v2.EnvVar(name="MODE", value="prod")
    ref = env[1].value_source.secret_key_ref
    assert (env[1].name, ref.secret, ref.version) == ("DB_PASSWORD", "db-password", "latest")


async def test_the_operator_reads_secret_manager_at_the_endpoint_setting(
    fakes: tuple[FakeCloudRun, FakeSecretManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sm = fakes
    sm.put(PROJECT, "db-password", VALUE_1)
    sm.put(PROJECT, "db-password", VALUE_2)
    assert OperatorSettings().secretmanager_endpoint is None, "Google's API by default"
    monkeypatch.setenv("XYNERGY_SECRETMANAGER_ENDPOINT", sm.endpoint)
    # a stand-in OperatorContext: _secret_manager reads only its settings
    provider = _secret_manager(SimpleNamespace(settings=OperatorSettings()))  # type: ignore[arg-type]
    provider.retry = FAST
    assert await provider.resolve(PROJECT, "db-password", "latest") == "2"
