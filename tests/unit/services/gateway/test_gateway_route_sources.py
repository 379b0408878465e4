"""Unit tests of the route-table sources: the file source and the cluster source (with an
injected fake list/watch; its test against a real kube-apiserver is still to be written)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.gateway.routes_cluster import ClusterRouteSource
from services.gateway.routes_file import FileRouteSource, parse_routes_document
from services.gateway.routing import RouteTable


def test_parse_yaml_and_json() -> None:
    yaml_doc = """
services:
  - name: crm
    url: http://crm:8080
    routes:
      - prefix: /api/v2/crm
        aliases: [/api/v2/contacts]
        timeoutSeconds: 3
"""
    table = parse_routes_document(yaml_doc)
    m = table.match("/api/v2/contacts/1")
    assert m is not None
    assert (m.route.upstream, m.route.timeout_seconds) == ("http://crm:8080", 3.0)
    doc = {"services": [{"name": "ai", "url": "http://ai", "routes": [{"prefix": "/api/v1/ai"}]}]}
    assert len(parse_routes_document(json.dumps(doc))) == 1
    assert len(parse_routes_document("")) == 0


@pytest.mark.parametrize("text", ["[1, 2]", "services: {a: 1}", "services: [{name: x}]", "{bad"])
def test_parse_refuses_bad_documents(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_routes_document(text)


async def test_file_source_yields_on_change_and_skips_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"

    def write(prefix: str) -> None:
        doc = {"services": [{"url": "http://up", "routes": [{"prefix": prefix}]}]}
        path.write_text(json.dumps(doc))

    write("/api/v2/a")
    source = FileRouteSource(path, poll_seconds=0.01)
    stream = source.watch()
    first = await asyncio.wait_for(anext(stream), timeout=5)
    assert first.match("/api/v2/a/x") is not None
    path.write_text("{broken")
    write("/api/v2/b")  # the broken version may or may not be seen; it is never yielded
    second = await asyncio.wait_for(anext(stream), timeout=5)
    assert second.match("/api/v2/b/x") is not None
    assert second.match("/api/v2/a/x") is None
    await stream.aclose()


def xs(name: str, prefix: str | None, url: str | None, ns: str = "default") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"routes": [{"prefix": prefix, "rateLimitPerMinute": 50}] if prefix else []},
    }
    if url:
        obj["status"] = {"url": url}
    return obj


class FakeKube:
    """Lists given objects, then plays watch events from a queue (None ends the watch)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.fail_list = 0
        self.lists = 0

    async def _list(self) -> AsyncIterator[dict[str, Any]]:
        self.lists += 1
        if self.fail_list:
            self.fail_list -= 1
            raise ConnectionError("apiserver away")
        for obj in self.objects:
            yield obj

    def list(self, res: Any, *, namespace: str | None = None) -> AsyncIterator[dict[str, Any]]:
        assert res.__name__ == "XynergyService"
        return self._list()

    async def _watch(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        while (event := await self.events.get()) is not None:
            yield event

    def watch(
        self, res: Any, *, namespace: str | None = None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._watch()


def prefixes(table: RouteTable) -> list[tuple[str, str]]:
    return sorted((r.prefix, r.upstream) for r in table.routes)


async def test_cluster_source_lists_then_follows_watch_events() -> None:
    kube = FakeKube([xs("crm", "/api/v2/crm", "http://crm"), xs("new", "/api/v2/new", None)])
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    first = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(first) == [("/api/v2/crm", "http://crm")]
    m = first.match("/api/v2/crm/x")
    assert m is not None
    assert m.route.rate_limit_per_minute == 50
    assert m.route.service == "default/crm"

    await kube.events.put(("ADDED", xs("crm", "/api/v2/crm", "http://crm")))  # no change
    await kube.events.put(("MODIFIED", xs("new", "/api/v2/new", "http://new")))
    second = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(second) == [("/api/v2/crm", "http://crm"), ("/api/v2/new", "http://new")]

    await kube.events.put(("DELETED", xs("crm", "/api/v2/crm", "http://crm")))
    third = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(third) == [("/api/v2/new", "http://new")]
    await stream.aclose()


async def test_cluster_source_relists_after_errors() -> None:
    kube = FakeKube([xs("crm", "/api/v2/crm", "http://crm")])
    kube.fail_list = 2
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    first = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(first) == [("/api/v2/crm", "http://crm")]
    assert kube.lists == 3
    kube.objects = [xs("crm", "/api/v2/crm", "http://crm-v2")]
    await kube.events.put(None)  # the watch ends; the source lists again
    second = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(second) == [("/api/v2/crm", "http://crm-v2")]
    await stream.aclose()


def test_cluster_source_uses_the_contracts_names_and_bounded_backoff() -> None:
    from apis.v1alpha1.xynergyservice import XynergyService as Model
    from services.gateway.routes_cluster import XynergyService

    assert XynergyService._api_info.plural == Model.crd.plural
    assert XynergyService._api_info.resource.group == "xynergy.io"
    source = ClusterRouteSource(FakeKube([]), max_backoff_seconds=8.0)
    for failures in range(1, 10):
        base = min(8.0, 0.5 * 2 ** (failures - 1))
        assert base / 2 <= source._delay(failures) <= base
