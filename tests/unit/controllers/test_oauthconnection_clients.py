"""The client Secret's watch: a change to a Secret labelled `xynergy.io/oauth-client`
converges the OAuthConnections of its namespace that use it, and no other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from controllers.core import Kind
from controllers.core.scheduler import ObjectKey
from controllers.oauthconnection.clients import KIND, ClientWatch, using


def conn(name: str, client: str, namespace: str = "team") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": {"clientSecretRef": {"name": client}},
    }


@dataclass
class Item:
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.body


@dataclass
class Client:
    objects: list[dict[str, Any]]
    listed: list[str | None] = field(default_factory=list)

    async def _items(self, namespace: str | None) -> AsyncIterator[Item]:
        for obj in self.objects:
            if obj["metadata"]["namespace"] == namespace:
                yield Item(obj)

    def list(self, res: Any, *, namespace: str | None = None) -> Any:
        self.listed.append(namespace)
        return self._items(namespace)


@dataclass
class Controller:
    triggered: list[ObjectKey] = field(default_factory=list)

    async def trigger(self, key: ObjectKey) -> None:
        self.triggered.append(key)


@dataclass
class Ctx:
    client: Client
    controllers: dict[Kind, Controller]
    api_limit: asyncio.Semaphore = field(default_factory=asyncio.Semaphore)


def test_using_picks_the_connections_naming_the_secret() -> None:
    found = using([conn("a", "slack-app"), conn("b", "other"), {"spec": {}}], "slack-app")

    assert [c["metadata"]["name"] for c in found] == ["a"]


async def test_a_changed_client_secret_converges_the_connections_that_use_it() -> None:
    objects = [conn("a", "slack-app"), conn("b", "other"), conn("c", "slack-app")]
    objects.append(conn("d", "slack-app", namespace="elsewhere"))
    controller = Controller()
    ctx = Ctx(Client(objects), {KIND: controller})
    watch = ClientWatch(ctx)  # type: ignore[arg-type]

    secret = {"metadata": {"name": "slack-app", "namespace": "team"}}
    await watch.changed("MODIFIED", secret)

    assert ctx.client.listed == ["team"]
    assert sorted(k.name for k in controller.triggered) == ["a", "c"]
    assert {k.uid for k in controller.triggered} == {"uid-a", "uid-c"}


async def test_the_watch_of_a_missing_client_secret_ends_after_its_lifetime(
    monkeypatch: Any,
) -> None:
    """A connection whose client Secret name was a typo (then fixed, or the connection
    deleted) must not keep a watch of that name open until the operator stops: the watch of a
    missing name ends after AWAIT_CREATION_SECONDS (a converge still missing it starts
    another)."""
    import controllers.oauthconnection.clients as clients

    monkeypatch.setattr(clients, "AWAIT_CREATION_SECONDS", 0.05)
    watching: list[dict[str, Any]] = []

    async def never_created(*_: Any, **kw: Any) -> None:
        watching.append(kw["fields"])
        await asyncio.Event().wait()  # the Secret never appears

    watch = ClientWatch(Ctx(Client([]), {KIND: Controller()}))  # type: ignore[arg-type]
    monkeypatch.setattr(watch.provider, "watch_forever", never_created)
    watch.await_creation("team", "slack-clinet")
    watch.await_creation("team", "slack-clinet")  # one watch per name
    (task,) = watch.awaited.values()
    await asyncio.wait_for(task, timeout=5)
    await asyncio.sleep(0)  # its done callback
    assert watching == [{"metadata.name": "slack-clinet"}]
    assert watch.awaited == {}
