"""spec.volumes: the model's field errors, the Deployment's volumes and mounts, the Cloud Run
Secret Manager volumes, and that a mounted Secret is not part of the config hash."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import run_v2
from pydantic import ValidationError

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError
from controllers.providers.kubediff import is_subset
from controllers.xynergyservice.resources import build_deployment
from controllers.xynergyservice.resources.cloudrun import desired_service, plan
from controllers.xynergyservice.resources.references import references, sources_of

pytestmark = pytest.mark.unit

JWT = {
    "name": "jwt",
    "mountPath": "/var/run/xynergy/jwt",
    "secret": {"secretName": "gateway-jwt", "items": [{"key": "secret", "path": "secret"}]},
}
CLOUD_RUN = {"backend": "cloudRun", "cloudRun": {"project": "xynergy-test", "region": "us-east1"}}


def _svc(**spec: Any) -> XynergyService:
    return XynergyService.model_validate(
        {
            "metadata": {"name": "gw", "namespace": "ns", "uid": "u-1", "generation": 2},
            "spec": {"image": "reg/gw:1", **spec},
        }
    )


def _errors(volumes: list[dict[str, Any]]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as err:
        _svc(volumes=volumes)
    return [(e["loc"], e["msg"]) for e in err.value.errors()]


def _vol(mount: str = "/var/run/x", **extra: Any) -> dict[str, Any]:
    return {"name": "v", "mountPath": mount, "secret": {"secretName": "s"}, **extra}


@pytest.mark.parametrize(
    ("volumes", "loc", "expected"),
    [
        ([_vol("etc")], ("spec", "volumes", 0, "mountPath"), "pattern"),
        ([_vol("/srv/../etc")], ("spec", "volumes", 0, "mountPath"), "absolute path without '.'"),
        ([_vol("/srv/")], ("spec", "volumes", 0, "mountPath"), "trailing '/'"),
        ([_vol("/")], ("spec", "volumes", 0, "mountPath"), "must not be / or a system directory"),
        (
            [_vol("/etc")],
            ("spec", "volumes", 0, "mountPath"),
            "must not be / or a system directory",
        ),
        ([_vol("/proc/x")], ("spec", "volumes", 0, "mountPath"), "nor under /proc/"),
        (
            [_vol(secret={"secretName": "s", "items": [{"key": "k", "path": "a/../../b"}]})],
            ("spec", "volumes", 0, "secret", "items", 0, "path"),
            "relative path without '.'",
        ),
        (
            [_vol(secret={"secretName": "s", "items": [{"key": "k", "path": "/abs"}]})],
            ("spec", "volumes", 0, "secret", "items", 0, "path"),
            "pattern",
        ),
        (
            [_vol(secret={"secretName": "s", "items": [{"key": "a", "path": "f"}] * 2})],
            ("spec", "volumes", 0, "secret", "items"),
            "repeated: f",
        ),
        (
            [_vol(configMap={"name": "c"})],
            ("spec", "volumes", 0),
            "exactly one of secret, configMap",
        ),
        (
            [{"name": "v", "mountPath": "/x"}],
            ("spec", "volumes", 0),
            "exactly one of secret, configMap",
        ),
        ([_vol("/a"), {**_vol("/b")}], ("spec", "volumes"), "each name may be used by one volume"),
        ([_vol("/a"), {**_vol("/a"), "name": "w"}], ("spec", "volumes"), "repeated: /a"),
    ],
)
def test_bad_volumes_name_the_field(
    volumes: list[dict[str, Any]], loc: tuple[str | int, ...], expected: str
) -> None:
    errors = _errors(volumes)
    assert any(at == loc and expected in msg for at, msg in errors), errors


def test_deployment_mounts_secret_and_configmap_read_only() -> None:
    settings = {"name": "settings", "mountPath": "/etc/gw", "configMap": {"name": "gw"}}
    svc = _svc(volumes=[JWT, settings])
    dep = build_deployment(svc)
    pod = dep["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {
            "name": "jwt",
            "secret": {
                "secretName": "gateway-jwt",
                "items": [{"key": "secret", "path": "secret"}],
                "optional": False,
            },
        },
        {"name": "settings", "configMap": {"name": "gw", "optional": False}},
    ]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "jwt", "mountPath": "/var/run/xynergy/jwt", "readOnly": True},
        {"name": "settings", "mountPath": "/etc/gw", "readOnly": True},
    ]
    # what the apiserver adds (defaultMode) does not make the operator write again
    live = build_deployment(svc)
    live["spec"]["template"]["spec"]["volumes"][0]["secret"]["defaultMode"] = 420
    assert is_subset(dep, live)
    assert "volumes" not in build_deployment(_svc())["spec"]["template"]["spec"]


def test_a_mounted_secret_is_not_a_config_source() -> None:
    """Only env references are hashed into the Pod template: a mounted Secret's rotation is
    picked up from the file and must not roll the Deployment."""
    env = [{"name": "A", "secretKeyRef": {"name": "db", "key": "password"}}]
    svc = _svc(env=env, volumes=[JWT])
    assert [s.id for s in sources_of(references(svc))] == ["Secret/db"]
    assert references(_svc(volumes=[JWT])) == []


def _mounted(service: run_v2.Service) -> tuple[list[Any], list[Any]]:
    container = service.template.containers[0]
    return list(service.template.volumes), list(container.volume_mounts)


def test_cloud_run_mounts_secret_manager_versions() -> None:
    svc = _svc(
        **CLOUD_RUN,
        volumes=[
            {
                "name": "jwt",
                "mountPath": "/var/run/xynergy/jwt",
                "secret": {
                    "secretName": "gateway-jwt",
                    "items": [{"key": "latest", "path": "secret"}, {"key": "3", "path": "old"}],
                },
            }
        ],
    )
    service = desired_service(svc, None, versions={})
    volumes, mounts = _mounted(service)
    assert [(v.name, v.secret.secret) for v in volumes] == [("jwt", "gateway-jwt")]
    # latest stays latest: Cloud Run reads the secret when the file is read (no new revision)
    assert [(i.path, i.version) for i in volumes[0].secret.items] == [
        ("secret", "latest"),
        ("old", "3"),
    ]
    assert [(m.name, m.mount_path) for m in mounts] == [("jwt", "/var/run/xynergy/jwt")]
    assert plan(svc, service) is None  # written once, then nothing to do


def test_cloud_run_keeps_sidecar_volumes_and_drops_removed_ones() -> None:
    svc = _svc(**CLOUD_RUN, volumes=[{**JWT, "secret": {"secretName": "gateway-jwt"}}])
    existing = desired_service(svc, None)
    existing.annotations["xynergy.io/owner"] = "ns/gw"
    existing.template.volumes.append(
        run_v2.Volume(name="cache", empty_dir=run_v2.EmptyDirVolumeSource())
    )
    sidecar = run_v2.Container(name="proxy", volume_mounts=[{"name": "cache", "mount_path": "/c"}])
    existing.template.containers.append(sidecar)
    without = plan(_svc(**CLOUD_RUN), existing)
    assert without is not None
    service, revision = without
    assert revision == "gw-00002"  # the template changed: a new revision
    volumes, mounts = _mounted(service)
    assert [v.name for v in volumes] == ["cache"]
    assert mounts == []


@pytest.mark.parametrize(
    ("volume", "field", "reason"),
    [
        (
            {"name": "c", "mountPath": "/srv/c", "configMap": {"name": "cfg"}},
            "spec.volumes[0].configMap",
            "UnsupportedVolume",
        ),
        (
            {**JWT, "secret": {"secretName": "gateway-jwt", "optional": True}},
            "spec.volumes[0].secret.optional",
            "InvalidSpec",
        ),
        (
            {**JWT, "secret": {"secretName": "gw.jwt"}},
            "spec.volumes[0].secret.secretName",
            "InvalidSpec",
        ),
        (JWT, "spec.volumes[0].secret.items[0].key", "InvalidSpec"),  # key "secret": no version
    ],
)
def test_cloud_run_refuses_what_it_cannot_mount(
    volume: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(StalledError) as err:
        desired_service(_svc(**CLOUD_RUN, volumes=[volume]), None)
    assert str(err.value).startswith(f"{field}:") or f"{field} " in str(err.value)
    assert err.value.reason == reason
