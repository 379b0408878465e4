"""Unit tests of the route-table sources: the file source and the cluster source (with an
injected fake list/watch; its test against a real kube-apiserver is still to be written)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from services.gateway.routes_cluster import ClusterRouteSource
from services.gateway.routes_file import FileRouteSource, parse_routes_document
from services.gateway.routing import RouteTable


async def aclose(stream: AsyncIterator[RouteTable]) -> None:
    """End a ``watch()`` stream: typed an AsyncIterator, it is an async generator."""
    await cast(AsyncGenerator[RouteTable, None], stream).aclose()


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
    await aclose(stream)


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
    """Lists given objects per kind, then plays watch events from a queue per kind (None ends
    the watch); Rollouts can be forbidden (a gateway without the RBAC)."""

    def __init__(
        self, objects: list[dict[str, Any]], rollouts: list[dict[str, Any]] | None = None
    ) -> None:
        self.objects = objects
        self.rollouts = rollouts or []
        self.events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.rollout_events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.fail_list = 0
        self.lists = 0
        self.forbid_rollouts = False

    async def _list(self, kind: str) -> AsyncIterator[dict[str, Any]]:
        if kind == "Rollout":
            if self.forbid_rollouts:
                raise ForbiddenError()
            for obj in self.rollouts:
                yield obj
            return
        self.lists += 1
        if self.fail_list:
            self.fail_list -= 1
            raise ConnectionError("apiserver away")
        for obj in self.objects:
            yield obj

    def list(self, res: Any, *, namespace: str | None = None) -> AsyncIterator[dict[str, Any]]:
        assert res.__name__ in ("XynergyService", "Rollout")
        return self._list(res.__name__)

    async def _watch(self, kind: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        queue = self.rollout_events if kind == "Rollout" else self.events
        while (event := await queue.get()) is not None:
            yield event

    def watch(
        self, res: Any, *, namespace: str | None = None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._watch(res.__name__)


class ForbiddenError(Exception):
    """What lightkube's ApiError looks like for a 403."""

    class status:  # noqa: N801
        code = 403


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
    await aclose(stream)


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
    await aclose(stream)


def test_cluster_source_uses_the_contracts_names_and_bounded_backoff() -> None:
    from apis.v1alpha1.xynergyservice import XynergyService as Model
    from services.gateway.routes_cluster import XynergyService

    assert XynergyService._api_info.plural == Model.crd.plural
    assert XynergyService._api_info.resource.group == "xynergy.io"
    source = ClusterRouteSource(FakeKube([]), max_backoff_seconds=8.0)
    for failures in range(1, 10):
        base = min(8.0, 0.5 * 2 ** (failures - 1))
        assert base / 2 <= source._delay(failures) <= base


def rollout(
    name: str, target: str, traffic: list[dict[str, Any]], *, preview: str | None = None
) -> dict[str, Any]:
    strategy: dict[str, Any] = {"canary": {"steps": [{"setWeight": 10}]}}
    if preview is not None:
        strategy = {"blueGreen": {"previewRoute": preview}}
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targetRef": {"name": target},
            "image": "registry.example/ai:2",
            "strategy": strategy,
            "stickySessions": True,
        },
        "status": {"traffic": traffic},
    }


def split(weight: int) -> list[dict[str, Any]]:
    return [
        {"revision": "ai-00001", "url": "http://ai.default.svc", "weight": 100 - weight,
         "tag": "stable"},
        {"revision": "ai-ro-1", "url": "http://ai-ro-1.default.svc", "weight": weight,
         "tag": "canary"},
    ]  # fmt: skip


def upstreams(table: RouteTable, prefix: str) -> list[tuple[str, int, str]]:
    route = next(r for r in table.routes if r.prefix == prefix)
    return [(u.url, u.weight, u.revision) for u in route.upstreams]


async def test_cluster_source_takes_weights_from_rollouts_without_restart() -> None:
    kube = FakeKube(
        [xs("ai", "/api/v2/ai", "http://ai.default.svc")], [rollout("ai-2", "ai", split(10))]
    )
    resolve = {"http://ai.default.svc": "http://127.0.0.1:1"}
    source = ClusterRouteSource(kube, max_backoff_seconds=0.01, resolve=lambda u: resolve.get(u, u))
    stream = source.watch()
    first = await asyncio.wait_for(anext(stream), timeout=5)
    assert upstreams(first, "/api/v2/ai") == [
        ("http://127.0.0.1:1", 90, "ai-00001"),
        ("http://ai-ro-1.default.svc", 10, "ai-ro-1"),
    ]
    assert next(r for r in first.routes if r.prefix == "/api/v2/ai").sticky

    await kube.rollout_events.put(("MODIFIED", rollout("ai-2", "ai", split(50))))
    second = await asyncio.wait_for(anext(stream), timeout=5)
    assert [w for _, w, _ in upstreams(second, "/api/v2/ai")] == [50, 50]

    await kube.rollout_events.put(("MODIFIED", rollout("ai-2", "ai", [])))  # promoted: plain
    third = await asyncio.wait_for(anext(stream), timeout=5)
    assert upstreams(third, "/api/v2/ai") == []
    assert prefixes(third) == [("/api/v2/ai", "http://127.0.0.1:1")]
    await aclose(stream)


async def test_cluster_source_adds_the_blue_green_preview_route() -> None:
    traffic = [
        {"revision": "ai-00001", "url": "http://ai.default.svc", "weight": 100, "tag": "stable"},
        {"revision": "ai-ro-2", "url": "http://ai-ro-2.default.svc", "weight": 0, "tag": "preview"},
    ]
    kube = FakeKube(
        [xs("ai", "/api/v2/ai", "http://ai.default.svc")],
        [rollout("ai-2", "ai", traffic, preview="/api/v2/ai-preview/")],
    )
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    table = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(table) == [
        ("/api/v2/ai", "http://ai.default.svc"),
        ("/api/v2/ai-preview", "http://ai-ro-2.default.svc"),
    ]
    match = table.match("/api/v2/ai-preview/x")
    assert match is not None
    assert (match.route.revision, match.route.service) == ("ai-ro-2", "default/ai")
    await aclose(stream)


async def test_cluster_source_serves_plain_routes_when_rollouts_are_forbidden() -> None:
    kube = FakeKube(
        [xs("ai", "/api/v2/ai", "http://ai.default.svc")], [rollout("ai-2", "ai", split(10))]
    )
    kube.forbid_rollouts = True
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    table = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(table) == [("/api/v2/ai", "http://ai.default.svc")]
    assert upstreams(table, "/api/v2/ai") == []
    await aclose(stream)


@pytest.mark.parametrize("preview", ["/api/v2/ai-preview//x", "/api/v2/./ai-preview", "/api/.."])
async def test_cluster_source_skips_only_a_bad_preview_route(
    preview: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A previewRoute the gateway cannot route (stored before the CRD refused it) costs that
    preview route only: every other route, and the Rollout's service, still gets a table."""
    traffic = [
        {"revision": "ai-00001", "url": "http://ai.default.svc", "weight": 100, "tag": "stable"},
        {"revision": "ai-ro-2", "url": "http://ai-ro-2.default.svc", "weight": 0, "tag": "preview"},
    ]
    kube = FakeKube(
        [xs("ai", "/api/v2/ai", "http://ai.default.svc"), xs("crm", "/api/v2/crm", "http://crm")],
        [rollout("ai-2", "ai", traffic, preview=preview)],
    )
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    table = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(table) == [
        ("/api/v2/ai", "http://ai.default.svc"),
        ("/api/v2/crm", "http://crm"),
    ]
    skipped = [r for r in caplog.records if r.getMessage() == "preview route skipped"]
    assert [r.fields["rollout"] for r in skipped] == ["default/ai-2"]  # type: ignore[attr-defined]
    assert skipped[0].fields["field"] == "spec.strategy.blueGreen.previewRoute"  # type: ignore[attr-defined]
    await aclose(stream)


def dated(obj: dict[str, Any], created: str) -> dict[str, Any]:
    obj["metadata"]["creationTimestamp"] = created
    return obj


async def test_cluster_source_gives_a_duplicate_prefix_to_the_oldest_object() -> None:
    """A newer object in a namespace that sorts first (aaa-tenant) cannot take a prefix over
    from the service that had it (it did: duplicates went by namespace/name order)."""
    kube = FakeKube(
        [
            dated(xs("x", "/api/v2/gmail", "http://evil", ns="aaa-tenant"), "2026-05-02T00:00:00Z"),
            dated(xs("gmail", "/api/v2/gmail", "http://gmail", ns="gmail"), "2026-05-01T00:00:00Z"),
        ]
    )
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    table = await asyncio.wait_for(anext(stream), timeout=5)
    match = table.match("/api/v2/gmail/inbox")
    assert match is not None
    assert (match.route.upstream, match.route.service) == ("http://gmail", "gmail/gmail")
    await aclose(stream)


async def test_cluster_source_loads_routes_only_from_the_namespaces_given() -> None:
    kube = FakeKube(
        [
            xs("crm", "/api/v2/crm", "http://crm", ns="crm"),
            xs("x", "/api/v2/crm/contacts", "http://evil", ns="aaa-tenant"),
        ]
    )
    stream = ClusterRouteSource(kube, namespaces=["crm"], max_backoff_seconds=0.01).watch()
    table = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(table) == [("/api/v2/crm", "http://crm")]
    await kube.events.put(("ADDED", xs("y", "/api/v2/other", "http://evil", ns="aaa-tenant")))
    await kube.events.put(("ADDED", xs("crm2", "/api/v2/crm2", "http://crm2", ns="crm")))
    second = await asyncio.wait_for(anext(stream), timeout=5)
    assert prefixes(second) == [("/api/v2/crm", "http://crm"), ("/api/v2/crm2", "http://crm2")]
    await aclose(stream)


def routed(table: RouteTable, path: str) -> tuple[str, bool] | None:
    match = table.match(path)
    return (match.route.service, match.route.public) if match is not None else None


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.getMessage() == message]  # type: ignore[attr-defined]


async def test_cluster_source_keeps_paths_under_a_prefix_for_its_namespace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A newer object in another namespace cannot take /api/v2/crm/contacts from the CRM's
    /api/v2/crm by a longer prefix (nor by an alias, nor declare it public); the CRM's own
    namespace may nest routes (a public webhook beside its API)."""
    evil = xs("x", "/api/v2/crm/contacts", "http://evil", ns="aaa-tenant")
    evil["spec"]["routes"][0]["public"] = True
    evil["spec"]["routes"].append({"prefix": "/api/v2/other", "aliases": ["/api/v2/email/x"]})
    gmail = xs("gmail", "/api/v2/gmail", "http://gmail", ns="gmail")
    gmail["spec"]["routes"][0]["aliases"] = ["/api/v2/email"]
    hook = xs("crm-hooks", "/api/v2/crm/hooks", "http://hooks", ns="crm")
    hook["spec"]["routes"][0]["public"] = True
    kube = FakeKube(
        [
            dated(evil, "2026-05-03T00:00:00Z"),
            dated(xs("crm", "/api/v2/crm", "http://crm", ns="crm"), "2026-05-01T00:00:00Z"),
            dated(gmail, "2026-05-01T00:00:00Z"),
            dated(hook, "2026-05-04T00:00:00Z"),
        ]
    )
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    table = await asyncio.wait_for(anext(stream), timeout=5)
    assert routed(table, "/api/v2/crm/contacts/1") == ("crm/crm", False)
    assert routed(table, "/api/v2/email/x/1") == ("gmail/gmail", False)
    assert routed(table, "/api/v2/crm/hooks/slack") == ("crm/crm-hooks", True)
    assert routed(table, "/api/v2/other/1") == ("aaa-tenant/x", False)  # its own path stays
    ignored = logged(caplog, "nested route prefix ignored")
    assert {"prefix": "/api/v2/crm/contacts", "service": "aaa-tenant/x",
            "enclosing": "/api/v2/crm", "kept": "crm/crm"} in ignored  # fmt: skip
    assert {"prefix": "/api/v2/email/x", "service": "aaa-tenant/x",
            "enclosing": "/api/v2/email", "kept": "gmail/gmail"} in ignored  # fmt: skip
    assert len(ignored) == 2
    await aclose(stream)


@pytest.mark.parametrize("nested_first", [True, False], ids=["nested-older", "enclosing-older"])
@pytest.mark.parametrize("listed_first", ["nested", "enclosing"])
async def test_cluster_source_gives_a_nested_prefix_to_the_oldest_object(
    nested_first: bool, listed_first: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Between namespaces, the older object has the nested path, whichever was listed or
    arrived first: an enclosing route that appears later does not take an already served
    longer prefix either (it serves the rest of its paths, and it is logged)."""
    older, newer = "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z"
    nested = dated(
        xs("contacts", "/api/v2/crm/contacts", "http://contacts", ns="people"),
        older if nested_first else newer,
    )
    enclosing = dated(
        xs("crm", "/api/v2/crm", "http://crm", ns="crm"), newer if nested_first else older
    )
    first, second = (nested, enclosing) if listed_first == "nested" else (enclosing, nested)
    kube = FakeKube([first])
    stream = ClusterRouteSource(kube, max_backoff_seconds=0.01).watch()
    await asyncio.wait_for(anext(stream), timeout=5)
    await kube.events.put(("ADDED", second))
    table = await asyncio.wait_for(anext(stream), timeout=5)
    owner = "people/contacts" if nested_first else "crm/crm"
    assert routed(table, "/api/v2/crm/contacts/1") == (owner, False)
    assert routed(table, "/api/v2/crm/deals/1") == ("crm/crm", False)
    if nested_first:
        assert logged(caplog, "nested route prefix kept")[-1] == {
            "prefix": "/api/v2/crm/contacts",
            "service": "people/contacts",
            "enclosing": "/api/v2/crm",
            "enclosing_service": "crm/crm",
        }
        assert logged(caplog, "nested route prefix ignored") == []
    else:
        assert logged(caplog, "nested route prefix ignored")[-1]["service"] == "people/contacts"
    await aclose(stream)


def test_file_routes_nest_whatever_the_service() -> None:
    """One file has one owner: a longer prefix of another service in it is served."""
    doc = {
        "services": [
            {"name": "crm", "url": "http://crm", "routes": [{"prefix": "/api/v2/crm"}]},
            {"name": "hooks", "url": "http://hooks", "routes": [{"prefix": "/api/v2/crm/hooks"}]},
        ]
    }
    table = parse_routes_document(json.dumps(doc))
    assert routed(table, "/api/v2/crm/hooks/1") == ("hooks", False)
