"""The target a sync reads: from the operator's watch of XynergyServices when it has delivered
it, with a GET otherwise; after this operator scaled it, never a version from before."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from controllers.core.errors import StalledError, TransientError
from controllers.scalingpolicy.reconciler import XS_KIND
from controllers.scalingpolicy.target import NotAppliedError, TargetCache, TargetClient

pytestmark = pytest.mark.unit

NS = "ns"


def service(replicas: int, *, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": "crm", "namespace": NS, "uid": "x1", "generation": generation,
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {"image": "reg/crm:1", "replicas": replicas,
                 "scaling": {"minInstances": 1, "maxInstances": 20}},
        "status": {"conditions": []},
    }  # fmt: skip


class _Obj:
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def to_dict(self) -> dict[str, Any]:
        return self._body


@dataclass
class Apiserver:
    """What TargetClient asks of lightkube's AsyncClient: get and patch, counted."""

    stored: dict[str, Any] | None
    gets: int = 0
    patches: list[int] = field(default_factory=list)
    refuse: int | None = None
    """The status code of the next patch's refusal (None: it is applied)."""

    async def get(self, resource: Any, name: str, *, namespace: str) -> _Obj:
        self.gets += 1
        if self.stored is None:
            raise ApiError(status=Status(code=404, message="not found"))
        return _Obj(self.stored)

    async def patch(self, resource: Any, name: str, obj: Any, **_: Any) -> None:
        if self.refuse is not None:
            raise ApiError(status=Status(code=self.refuse, message="the object has been modified"))
        self.patches.append(obj["spec"]["replicas"])
        assert self.stored is not None
        self.stored = service(obj["spec"]["replicas"], generation=2)


def client(api: Apiserver, cache: TargetCache) -> TargetClient:
    return TargetClient(api, XS_KIND, limit=asyncio.Semaphore(1), cache=cache)  # type: ignore[arg-type]


async def test_a_watched_target_is_read_without_a_get() -> None:
    api, cache = Apiserver(service(3)), TargetCache()
    cache.observe(service(3), deleted=False)
    target = await client(api, cache).read(NS, "crm")
    assert (target.replicas, api.gets) == (3, 0)


async def test_a_target_the_watch_has_not_delivered_is_read_with_a_get() -> None:
    api = Apiserver(service(4))
    target = await client(api, TargetCache()).read(NS, "crm")
    assert (target.replicas, api.gets) == (4, 1)


async def test_a_target_the_watch_reported_deleted_is_missing() -> None:
    api, cache = Apiserver(None), TargetCache()
    cache.observe(service(3), deleted=False)
    cache.observe(service(3), deleted=True)
    with pytest.raises(StalledError) as err:
        await client(api, cache).read(NS, "crm")
    assert err.value.reason == "TargetNotFound"
    assert api.gets == 1


async def test_after_a_scale_no_version_from_before_it_is_served() -> None:
    """The watch may deliver the pre-scale object after the scale returned: the read then
    GETs the scaled object; once the watch brings a later generation it is served again."""
    api, cache = Apiserver(service(3)), TargetCache()
    targets = client(api, cache)
    cache.observe(service(3), deleted=False)
    assert (await targets.read(NS, "crm")).replicas == 3
    await targets.scale(NS, "crm", 5)
    cache.observe(service(3), deleted=False)  # a late event from before the scale
    assert (await targets.read(NS, "crm")).replicas == 5
    assert api.gets == 1
    cache.observe(service(5, generation=2), deleted=False)
    assert (await targets.read(NS, "crm")).replicas == 5
    assert api.gets == 1


def test_the_cache_keeps_what_a_sync_reads_only() -> None:
    """Status, managedFields (and annotations) are not kept for a thousand targets."""
    cache = TargetCache()
    cache.observe(service(3), deleted=False)
    target = cache.get(NS, "crm")
    assert target is not None
    assert target.service.status is None
    assert "managedFields" not in target.service.metadata.model_dump(by_alias=True)


async def test_a_conflict_applied_nothing_and_a_5xx_may_have() -> None:
    """The reconciler settles a failed scale by whether it may have landed: a 409 never did
    (NotAppliedError), a 503 may have (a plain TransientError)."""
    api = Apiserver(service(3))
    targets = client(api, TargetCache())
    api.refuse = 409
    with pytest.raises(NotAppliedError) as conflict:
        await targets.scale(NS, "crm", 5)
    assert conflict.value.reason == "Conflict"
    assert "crm" in conflict.value.message
    api.refuse = 503
    with pytest.raises(TransientError) as unavailable:
        await targets.scale(NS, "crm", 5)
    assert not isinstance(unavailable.value, NotAppliedError)


async def test_a_reread_gets_past_the_watch() -> None:
    api, cache = Apiserver(service(4, generation=2)), TargetCache()
    cache.observe(service(3), deleted=False)
    target = await client(api, cache).reread(NS, "crm")
    assert (target.replicas, target.service.metadata.generation, api.gets) == (4, 2, 1)
