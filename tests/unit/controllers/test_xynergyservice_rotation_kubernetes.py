"""Rotation on the Kubernetes backend: digests of the referenced Secret/ConfigMap keys reach the
Pod template, a changed value rolls the Deployment and names its source (never its value), an
unchanged one writes nothing. The backend runs against an in-memory provider."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from typing import Any, cast

import pytest

from apis.v1alpha1 import XynergyService
from controllers.core.errors import StalledError
from controllers.providers.kubediff import is_subset
from controllers.providers.kubernetes import Applied, KubernetesProvider
from controllers.xynergyservice.backends import KubernetesBackend
from controllers.xynergyservice.resources import REVISION_ANNOTATION, build_deployment
from controllers.xynergyservice.resources.kubernetes import revision_of
from controllers.xynergyservice.resources.references import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_SOURCES_ANNOTATION,
    SOURCE_LABEL,
    Source,
    changed_sources,
    digest,
    parse_sources,
)
from controllers.xynergyservice.sources import referencing
from controllers.xynergyservice.status import events_for

pytestmark = pytest.mark.unit

SECRET_VALUE = "s3cr3t-v1"  # base64 below is what the apiserver stores
ENV = [
    {"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}},
    {"name": "LEVEL", "configMapKeyRef": {"name": "cfg", "key": "level", "optional": True}},
]


def _svc(generation: int = 1, *, deployed: bool = True, **spec: Any) -> XynergyService:
    status = {"latestCreatedRevision": f"crm-{generation:05d}"} if deployed else None
    return XynergyService.model_validate(
        {
            "metadata": {"name": "crm", "namespace": "ns", "uid": "u-1", "generation": generation},
            "spec": {"image": "reg/crm:1", "env": ENV, **spec},
            "status": status,
        }
    )


def _secret(password: str, **extra: str) -> dict[str, Any]:
    data = {
        k: base64.b64encode(v.encode()).decode() for k, v in {"password": password, **extra}.items()
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "ns"},
        "data": data,
    }


class MemoryProvider:
    """get/apply/label/list over dicts, counting writes as the real provider would."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.writes: list[str] = []

    async def get(
        self, api_version: str, kind: str, name: str, ns: str | None
    ) -> dict[str, Any] | None:
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    async def apply(self, desired: dict[str, Any], live: dict[str, Any] | None) -> Applied:
        if live is not None and is_subset(desired, live):
            return Applied(live, wrote=False)
        self.writes.append(f"apply {desired['kind']}")
        body = copy.deepcopy(desired)
        if desired["kind"] == "Deployment":
            body["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                              "updatedReplicas": 1, "availableReplicas": 1}  # fmt: skip
            body["metadata"]["generation"] = 1
        self.objects[(desired["kind"], desired["metadata"]["name"])] = body
        return Applied(body, wrote=True)

    async def label(
        self, api_version: str, kind: str, live: dict[str, Any], labels: dict[str, str]
    ) -> bool:
        obj = self.objects[(kind, live["metadata"]["name"])]
        have = obj["metadata"].setdefault("labels", {})
        if all(have.get(k) == v for k, v in labels.items()):
            return False
        have.update(labels)
        self.writes.append(f"label {kind}")
        return True

    async def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []


def _backend(provider: MemoryProvider) -> KubernetesBackend:
    return KubernetesBackend(cast(KubernetesProvider, provider))


async def test_rotation_rolls_once_and_names_the_secret_only() -> None:
    provider = MemoryProvider({("Secret", "db"): _secret(SECRET_VALUE)})
    backend = _backend(provider)
    first = await backend.apply(_svc(deployed=False))
    assert first.writes == 2
    assert first.changed_sources == ()
    assert provider.writes.count("label Secret") == 1
    assert provider.objects[("Secret", "db")]["metadata"]["labels"][SOURCE_LABEL] == "true"
    dep = provider.objects[("Deployment", "crm")]
    before = dep["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]

    provider.writes.clear()
    again = await backend.apply(_svc())
    assert again.writes == 0, "an unchanged Secret writes nothing"
    assert provider.writes == []

    provider.objects[("Secret", "db")]["data"] = _secret(SECRET_VALUE, unused="x")["data"]
    assert (await backend.apply(_svc())).writes == 0, "a key the env does not read is not news"

    provider.objects[("Secret", "db")]["data"] = _secret("s3cr3t-v2")["data"]
    rotated = await backend.apply(_svc())
    assert provider.writes == ["apply Deployment"]
    assert rotated.changed_sources == ("Secret db",)
    dep = provider.objects[("Deployment", "crm")]
    after = dep["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert after != before
    assert SECRET_VALUE not in json.dumps(dep)
    stored = provider.objects[("Secret", "db")]["data"]["password"]
    assert "s3cr3t-v2" not in json.dumps(dep)
    assert stored not in json.dumps(dep)
    sources = parse_sources(dep["metadata"]["annotations"][CONFIG_SOURCES_ANNOTATION])
    assert set(sources) == {"Secret/db", "ConfigMap/cfg"}


async def test_optional_configmap_appearing_rolls_and_missing_secret_stalls() -> None:
    provider = MemoryProvider({("Secret", "db"): _secret(SECRET_VALUE)})
    backend = _backend(provider)
    await backend.apply(_svc(deployed=False))
    provider.objects[("ConfigMap", "cfg")] = {
        "metadata": {"name": "cfg"},
        "data": {"level": "debug"},
    }
    rotated = await backend.apply(_svc())
    assert rotated.changed_sources == ("ConfigMap cfg",)
    assert provider.writes.count("label ConfigMap") == 1, "labelled so the watch reports it"
    assert provider.objects[("ConfigMap", "cfg")]["metadata"]["labels"][SOURCE_LABEL] == "true"
    del provider.objects[("Secret", "db")]
    with pytest.raises(StalledError, match=r"Secret 'db' not found .*spec\.env\[0\]\.secretKeyRef"):
        await backend.apply(_svc())


async def test_scaling_keeps_the_revision_and_new_pods_make_one() -> None:
    """`kubectl scale`, an HPA or a ScalingPolicy moves the generation, not the revision: the
    Deployment keeps its revision name and the write posts no Updated event; a new image (or
    any change to the Pods) is a new revision, named after its generation."""
    provider = MemoryProvider({("Secret", "db"): _secret(SECRET_VALUE)})
    backend = _backend(provider)
    first = await backend.apply(_svc(deployed=False))
    assert first.latest_created_revision == "crm-00001"

    scaled = await backend.apply(_svc(generation=2, replicas=3))
    dep = provider.objects[("Deployment", "crm")]
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["annotations"][REVISION_ANNOTATION] == "crm-00001"
    assert (scaled.writes, scaled.rescaled, scaled.latest_created_revision) == (
        1,
        True,
        "crm-00001",
    )
    after = _svc(generation=2, replicas=3).status
    assert after is not None
    assert events_for(after, after, writes=1, created=False, rescaled=True) == []

    provider.objects[("Secret", "db")]["data"] = _secret("s3cr3t-v2")["data"]
    rotated = await backend.apply(_svc(generation=2, replicas=3))
    assert (rotated.rescaled, rotated.latest_created_revision) == (False, "crm-00001")
    assert rotated.changed_sources == ("Secret db",), "a rotation is still news"

    image = await backend.apply(_svc(generation=3, replicas=3, image="reg/crm:2"))
    assert (image.rescaled, image.latest_created_revision) == (False, "crm-00003")
    rescaled_and_new = await backend.apply(_svc(generation=4, replicas=1, image="reg/crm:3"))
    assert (rescaled_and_new.rescaled, rescaled_and_new.latest_created_revision) == (
        False,
        "crm-00004",
    )


def test_revision_of_keeps_only_the_same_pods() -> None:
    live = build_deployment(_svc(generation=1))
    assert revision_of(_svc(generation=5, replicas=4), live) == "crm-00001"
    assert revision_of(_svc(generation=5, image="reg/crm:2"), live) is None
    assert revision_of(_svc(generation=5), None) is None
    older = copy.deepcopy(live)
    del older["metadata"]["annotations"]["xynergy.io/template"]
    assert revision_of(_svc(generation=5), older) is None, (
        "a Deployment from before the Pod-spec digest gets the generation's name"
    )


def test_service_without_references_has_no_config_annotations() -> None:
    dep = build_deployment(_svc(env=[{"name": "A", "value": "1"}]))
    # the Pods' one annotation is their revision (their K_REVISION): no config hash
    assert dep["spec"]["template"]["metadata"]["annotations"] == {
        "xynergy.io/revision": "crm-00001"
    }
    assert CONFIG_SOURCES_ANNOTATION not in dep["metadata"]["annotations"]


def test_digest_is_keyed_by_the_object_and_reads_only_referenced_keys() -> None:
    src = Source("Secret", "db", ("password",), optional=False)
    a = digest(src, _secret("x"), salt="uid-1")
    assert a == digest(src, _secret("x", other="y"), salt="uid-1")
    assert a != digest(src, _secret("z"), salt="uid-1")
    assert a != digest(src, _secret("x"), salt="uid-2")
    assert a != digest(src, None, salt="uid-1")
    assert len(a) == 16


def test_changed_sources_ignores_added_and_dropped() -> None:
    before = {"Secret/a": "1", "Secret/b": "2"}
    after = {"Secret/a": "9", "ConfigMap/c": "3"}
    assert changed_sources(before, after) == ["Secret/a"]
    assert parse_sources("Secret/a=1,bogus,=2") == {"Secret/a": "1"}


def test_config_changed_event_names_the_source() -> None:
    new = _svc().status
    assert new is not None
    events = events_for(None, new, writes=1, created=False, changed=("Secret db",))
    assert [(e.reason, e.message) for e in events] == [
        ("ConfigChanged", "Secret db changed: rolling out revision crm-00001")
    ]
    updated = events_for(None, new, writes=1, created=False)
    assert [e.reason for e in updated] == ["Updated"]


def test_referencing_picks_the_services_that_read_the_object() -> None:
    services: list[Mapping[str, Any]] = [
        {"metadata": {"name": "a"}, "spec": {"env": ENV}},
        {"metadata": {"name": "b"}, "spec": {"env": [{"name": "X", "value": "db"}]}},
        {"metadata": {"name": "c"}, "spec": {}},
    ]
    assert [s["metadata"]["name"] for s in referencing(services, "Secret", "db")] == ["a"]
    assert [s["metadata"]["name"] for s in referencing(services, "ConfigMap", "cfg")] == ["a"]
    assert referencing(services, "ConfigMap", "db") == []
