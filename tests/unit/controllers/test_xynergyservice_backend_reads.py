"""What the Kubernetes backend reads: the Pods only when a rollout is slow (a check not
prompted by a child event) or known stuck, never for a rollout the converge itself just
started (every new XynergyService listed its namespace's Pods on creation: at N=1000 a LIST
over a thousand Pods per object, 6 % of the operator's CPU)."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from apis.v1alpha1 import XynergyService
from controllers.providers.kubediff import is_subset
from controllers.providers.kubernetes import Applied, KubernetesProvider
from controllers.xynergyservice.backends import KubernetesBackend

pytestmark = pytest.mark.unit


class ListingProvider:
    """get/apply over dicts (a Deployment applied is not rolled out yet), counting Pod lists."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.lists = 0

    async def get(self, api_version: str, kind: str, name: str, ns: str | None) -> Any:
        found = self.objects.get(kind)
        return copy.deepcopy(found) if found is not None else None

    async def apply(self, desired: dict[str, Any], live: dict[str, Any] | None) -> Applied:
        if live is not None and is_subset(desired, live):
            return Applied(live, wrote=False)
        body = copy.deepcopy(desired) | {"status": {}}
        body["metadata"] |= {"resourceVersion": "1", "generation": 1}
        self.objects[desired["kind"]] = body
        return Applied(body, wrote=True)

    async def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        self.lists += 1
        return []


def _svc(*, deployed: bool, image: str = "reg/crm:1") -> XynergyService:
    meta = {"name": "crm", "namespace": "ns", "uid": "u-1", "generation": 1}
    status = {"latestCreatedRevision": "crm-00001"} if deployed else None
    return XynergyService.model_validate(
        {"metadata": meta, "spec": {"image": image}, "status": status}
    )


async def test_a_rollout_this_converge_started_lists_no_pods() -> None:
    provider = ListingProvider()
    backend = KubernetesBackend(cast(KubernetesProvider, provider))
    created = await backend.apply(_svc(deployed=False))  # the creation's converge
    assert created.writes == 2
    assert provider.lists == 0
    updated = await backend.apply(_svc(deployed=True, image="reg/crm:2"))  # a spec change
    assert updated.writes == 1
    assert provider.lists == 0
    slow = await backend.apply(_svc(deployed=True, image="reg/crm:2"))  # a check, no event
    assert slow.writes == 0
    assert provider.lists == 1  # still not rolled out: why not is read from the Pods
