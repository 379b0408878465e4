"""KubernetesProvider's compare-before-write for fields compared whole (`exact`) and its
annotation patch, on a recording client (the apiserver's answers as lightkube returns them)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from controllers.core.controller import Kind
from controllers.providers.kubernetes import KubernetesProvider

pytestmark = pytest.mark.unit

SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "crm", "namespace": "ns"},
           "spec": {"selector": {"xynergy.io/service": "crm"}}}  # fmt: skip


class Client:
    def __init__(self) -> None:
        self.applied: list[Any] = []
        self.patches: list[Any] = []

    async def apply(self, obj: Any, **_: Any) -> Any:
        self.applied.append(obj)
        return SimpleNamespace(to_dict=lambda: dict(SERVICE))

    async def patch(self, resource: Any, name: str, patch: Any, **_: Any) -> None:
        self.patches.append((name, patch))


def _provider(client: Client) -> KubernetesProvider:
    return KubernetesProvider(client, limit=asyncio.Semaphore(1))  # type: ignore[arg-type]


async def test_a_selector_compared_whole_is_applied_when_it_holds_a_key_no_longer_wanted() -> None:
    client = Client()
    live = {**SERVICE, "spec": {"selector": {"xynergy.io/service": "crm",
                                             "xynergy.io/rollout-revision": "crm-ro-1"}}}  # fmt: skip
    provider = _provider(client)
    assert not (await provider.apply(SERVICE, live)).wrote, "a subset: nothing to write"
    exact = (("spec", "selector"),)
    assert (await provider.apply(SERVICE, live, exact=exact)).wrote
    assert len(client.applied) == 1
    assert not (await provider.apply(SERVICE, dict(SERVICE), exact=exact)).wrote


async def test_annotate_patches_only_what_differs_and_removes_with_none() -> None:
    _ = Kind("xynergy.io", "v1alpha1", "XynergyService", "xynergyservices").resource
    client = Client()
    provider = _provider(client)
    live = {"metadata": {"name": "crm", "namespace": "ns", "annotations": {"a": "1"}}}
    assert not await provider.annotate("xynergy.io/v1alpha1", "XynergyService", live, {"a": "1"})
    assert await provider.annotate("xynergy.io/v1alpha1", "XynergyService", live, {"a": None})
    assert client.patches == [("crm", {"metadata": {"annotations": {"a": None}}})]
