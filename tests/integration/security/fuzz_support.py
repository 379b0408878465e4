"""What the fuzz tests share: services behind the real gateway on a thread's event loop, and
schemathesis driving them through it.

A :class:`LoopThread` serves something on an event loop of its own (a thread), because
schemathesis calls it synchronously from the test. A :class:`Stack` (one) runs redis-server, the upstreams a ``build`` function starts (a service with
its fakes) and the gateway routing to them, on an event loop of its own (a thread), because
schemathesis calls them synchronously from the test. :func:`gateway_spec` keeps the
operations of a service's own OpenAPI that the gateway routes to it, at the paths a client
uses at the gateway; :func:`fuzz` sends schemathesis' examples there with a valid token and
runs its checks on every response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
import schemathesis
from gateway.conftest import (
    FIREBASE_PROJECT,
    INTERNAL_KEY,
    JWT_SECRET,
    RedisServer,
    free_port,
    run_redis,
    serve,
)
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr

from services.common.settings import AuthSettings, InternalIdentitySettings
from services.gateway.app import create_app as create_gateway
from services.gateway.settings import GatewaySettings

__all__ = [
    "EXAMPLES",
    "INTERNAL",
    "Builder",
    "LoopThread",
    "Stack",
    "Upstream",
    "fuzz",
    "gateway_spec",
    "serve",
]

INTERNAL = InternalIdentitySettings(signing_key=SecretStr(INTERNAL_KEY))

# Examples per operation (schemathesis spreads a test's examples across its operations).
EXAMPLES = [pytest.param(20, id="ci"), pytest.param(500, id="soak", marks=pytest.mark.soak)]


@dataclass
class Upstream:
    """A service as the gateway's routes file names it, with its own OpenAPI."""

    name: str
    url: str
    routes: list[dict[str, Any]]
    spec: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[RedisServer, Path], contextlib.AbstractAsyncContextManager[list[Upstream]]]


class LoopThread:
    """What :meth:`serving` (a subclass's) serves, on an event loop of its own in a thread,
    from :meth:`start` (which waits until it is up, or fails with its error) to :meth:`close`;
    ``url`` is where a client reaches it, ``what`` names it when it does not start."""

    what = "the service"
    url: str

    def __init__(self) -> None:
        self.up, self.failed = threading.Event(), list[BaseException]()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def serving(self) -> contextlib.AbstractAsyncContextManager[object]:
        """Up (and ``url`` set) inside the block."""
        raise NotImplementedError

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.failed.append(exc)
            self.up.set()

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        async with self.serving():
            self.loop = asyncio.get_running_loop()
            self.up.set()
            await self.stop.wait()

    def start(self) -> Self:
        self.thread.start()
        assert self.up.wait(timeout=90), f"{self.what} did not start"
        assert not self.failed, self.failed
        return self

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)


class Stack(LoopThread):
    """redis-server, the upstreams ``build`` starts and the gateway in front of them, on a
    thread's event loop; ``upstreams`` and ``url`` (the gateway's) once started."""

    what = "the services and the gateway"

    def __init__(self, workdir: Path, build: Builder) -> None:
        super().__init__()
        self.workdir, self.build = workdir, build
        self.url = f"http://127.0.0.1:{free_port()}"
        self.upstreams: list[Upstream] = []

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        async with (
            run_redis(self.workdir) as redis,
            self.build(redis, self.workdir) as self.upstreams,
        ):
            routes = self.workdir / "routes.json"
            routes.write_text(json.dumps({"services": [
                {"name": u.name, "url": u.url, "routes": u.routes} for u in self.upstreams]}))  # fmt: skip
            async with serve(self._gateway(redis, routes), int(self.url.rsplit(":", 1)[1])):
                yield

    def _gateway(self, redis: RedisServer, routes: Path) -> Any:
        return create_gateway(
            GatewaySettings(redis_url=redis.url, routes_file=routes, log_level="WARNING",
                            rate_limit_per_minute=1_000_000, tenant_rate_limit_per_minute=0,
                            ip_rate_limit_per_minute=0, max_body_bytes=64 << 10),
            auth_settings=AuthSettings(jwt_secret=SecretStr(JWT_SECRET),
                                       firebase_project_id=FIREBASE_PROJECT),
            internal_settings=INTERNAL,
        )  # fmt: skip


def gateway_spec(upstream: Upstream) -> dict[str, Any]:
    """The upstream's OpenAPI with only the operations the gateway routes to it, each at the
    path a client sends to the gateway (a route's first alias, which the gateway rewrites to
    the prefix, when the prefix itself is not under /api/)."""
    rules = []
    for route in sorted(upstream.routes, key=lambda r: -len(r["prefix"])):
        public = [a for a in route.get("aliases", []) if a.startswith("/api/")]
        at = route["prefix"] if route["prefix"].startswith("/api/") else (public or [None])[0]
        rules.append((route["prefix"], at))
    paths: dict[str, Any] = {}
    for path, item in upstream.spec["paths"].items():
        for prefix, at in rules:
            if path == prefix or path.startswith(prefix + "/"):
                if at is not None:
                    paths[at + path[len(prefix) :]] = item
                break
    return {**upstream.spec, "paths": paths}


def body_operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation taking a JSON body."""
    return [(method.upper(), path) for path, item in spec["paths"].items()
            for method, op in item.items()
            if "application/json" in op.get("requestBody", {}).get("content", {})]  # fmt: skip


def fill_path(template: str, value: str = "fuzz") -> str:
    return re.sub(r"\{[^}]+\}", value, template)


def fuzz(
    stack: LoopThread,
    spec: dict[str, Any],
    *,
    examples: int,
    headers: dict[str, str],
    excluded: Iterable[Any] = (),
) -> list[int]:
    """schemathesis' examples over ``spec``'s operations through the gateway, every check but
    ``excluded`` on each response; the statuses seen."""
    schema = schemathesis.openapi.from_dict(spec)
    seen: list[int] = []

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=schema.as_strategy())
    def check(case: Any) -> None:
        r = case.call_and_validate(base_url=stack.url, headers=headers,
                                   excluded_checks=list(excluded))  # fmt: skip
        seen.append(r.status_code)

    try:
        check()
    finally:  # the count a report reads (bench/reliability_report.py), failed or not
        print(f"{len(seen)} fuzzed requests, statuses {sorted(set(seen))}")
    return seen
