"""Real parts for the gateway's integration tests, started and stopped by fixtures.

- redis-server (Debian) on a free port in a temporary directory, one per session;
- the Firebase Auth emulator (firebase-tools from npm, installed by hack/deps/node-tools.sh),
  started once per session, with the UI off and a demo project;
- an upstream: a small real HTTP server (Starlette under uvicorn) that verifies the gateway's
  internal identity with services.common and echoes what it received;
- gateways: uvicorn serving ``create_app()`` with a routes file, on free ports.

Every wait is on a condition (a port answering, a log line, a server flag), never a fixed
sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from services.common.identity import (
    IDENTITY_HEADER,
    InternalIdentityError,
    InternalIdentityVerifier,
)
from services.common.settings import AuthSettings, InternalIdentitySettings
from services.gateway.app import Gateway, create_app
from services.gateway.routing import RouteSource
from services.gateway.settings import GatewaySettings

if TYPE_CHECKING:  # emulators.py imports this module: the type only, for the annotation
    from emulators import FirebaseEmulator

NODE_DIR = Path(__file__).parent / "node"
JWT_SECRET = "test-jwt-secret-" + "x" * 32
INTERNAL_KEY = "test-internal-key-" + "y" * 32
FIREBASE_PROJECT = "demo-xynergy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(Exception):
            if await check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def make_jwt(
    *,
    user_id: str = "u-1",
    tenant_id: str | None = "acme",
    secret: str = JWT_SECRET,
    ttl: int = 86400,  # long: some tokens are minted at collection, long before use
    **overrides: Any,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "user_id": user_id,
        "email": f"{user_id}@example.com",
        "roles": ["member"],
        "iss": "xynergy",
        "aud": "xynergy-api",
        "iat": now,
        "exp": now + ttl,
    }
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, secret, algorithm="HS256")


# -- redis-server ---------------------------------------------------------------------------


@dataclass
class RedisServer:
    url: str
    port: int
    pid: int = 0

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing is answered (a stalled Redis)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def run_redis(workdir: Path) -> AsyncIterator[RedisServer]:
    """A redis-server on a free port, until the block ends (resumed first if paused)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: run `make deps` (hack/deps/redis.sh)")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--dir", str(workdir), "--protected-mode", "yes"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)
    server = RedisServer(url=url, port=port, pid=proc.pid)
    try:
        await wait_for(client.ping, within=20, what="redis-server")
        yield server
    finally:
        await client.aclose()
        if proc.returncode is None:
            server.resume()
            proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=10)


@pytest.fixture(scope="session")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisServer]:
    async with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def own_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, which it may pause, resume or stop."""
    async with run_redis(tmp_path_factory.mktemp("own-redis")) as server:
        yield server


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


# -- Firebase Auth emulator -----------------------------------------------------------------


# -- the upstream ---------------------------------------------------------------------------


@dataclass
class Upstream:
    url: str
    hits: dict[str, int] = field(default_factory=dict)
    fail_next: dict[str, int] = field(default_factory=dict)
    """Path prefix -> how many of the next requests under it answer 503."""
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, prefix: str) -> int:
        return sum(n for p, n in self.hits.items() if p.startswith(prefix))


def _upstream_app(state: Upstream) -> Starlette:
    verifier = InternalIdentityVerifier(
        InternalIdentitySettings(signing_key=INTERNAL_KEY)  # type: ignore[arg-type]
    )

    async def echo(request: Request) -> Response:
        path = request.url.path
        state.hits[path] = state.hits.get(path, 0) + 1
        for prefix, n in list(state.fail_next.items()):
            if path.startswith(prefix) and n > 0:
                state.fail_next[prefix] = n - 1
                return JSONResponse({"error": "failing on purpose"}, status_code=503)
        if path.endswith("/slow"):
            await state.release.wait()
        if path.endswith("/stream"):

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(5):
                    yield f"chunk-{i};".encode()

            return StreamingResponse(chunks(), media_type="text/plain")
        try:
            identity: Any = verifier.verify(request.headers.get(IDENTITY_HEADER))
            who = {"user": identity.user_id, "tenant": identity.tenant_id, "src": identity.source}
        except InternalIdentityError as exc:
            who = {"error": str(exc)}
        body = await request.body()
        headers = {}
        cache = request.query_params.get("cache")
        if cache == "public":
            headers["cache-control"] = "public, max-age=60"
        elif cache == "private":
            headers["cache-control"] = "private, max-age=60"
        return JSONResponse(
            {
                "method": request.method,
                "path": path,
                "query": request.url.query,
                "headers": {k: v for k, v in request.headers.items()},
                "header_list": request.headers.items(),  # repeated names kept
                "identity": who,
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "hit": state.hits[path],
            },
            headers=headers,
        )

    return Starlette(
        routes=[
            StarletteRoute(
                "/{path:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
            )
        ]
    )


@contextlib.asynccontextmanager
async def serve(app: Any, port: int | None = None, *, http: Any = "auto") -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop until the block ends."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        http=http,
        proxy_headers=False,  # as services.gateway.__main__: the gateway decides whom to trust
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()
        return server.started

    await wait_for(started, within=20, what=f"server on port {port}", interval=0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)


@pytest.fixture(scope="session")
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream(url="")
    async with serve(_upstream_app(state)) as url:
        state.url = url
        yield state
        state.release.set()


# -- gateways -------------------------------------------------------------------------------


@dataclass
class RunningGateway:
    url: str
    app: Gateway
    routes_file: Path
    http: httpx.AsyncClient


def routes_document(upstream_url: str, **route_overrides: Any) -> dict[str, Any]:
    def route(prefix: str, **extra: Any) -> dict[str, Any]:
        return {"prefix": prefix, **extra, **route_overrides.get(prefix, {})}

    return {
        "services": [
            {
                "name": "crm",
                "url": upstream_url,
                "routes": [route("/api/v2/crm")],
            },
            {
                "name": "gmail",
                "url": upstream_url,
                "routes": [route("/api/v2/gmail", aliases=["/api/v2/email"])],
            },
            {"name": "slack", "url": upstream_url, "routes": [route("/api/v2/slack")]},
            {"name": "ai", "url": upstream_url, "routes": [route("/api/v1/ai")]},
            {
                "name": "flaky",
                "url": upstream_url,
                "routes": [route("/api/v2/flaky", timeoutSeconds=2)],
            },
        ]
    }


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]


@pytest.fixture(scope="session")
def gateway_factory(
    redis_server: RedisServer,
    firebase_emulator: FirebaseEmulator,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> GatewayFactory:
    @contextlib.asynccontextmanager
    async def start(
        routes: dict[str, Any] | None = None,
        *,
        wait_ready: bool = True,
        auth_leeway: int = 30,
        route_source: RouteSource | None = None,
        **overrides: Any,
    ) -> AsyncIterator[RunningGateway]:
        workdir = tmp_path_factory.mktemp("gateway")
        routes_file = workdir / "routes.yaml"
        routes_file.write_text(json.dumps(routes or routes_document(upstream.url)))
        overrides.setdefault("redis_url", redis_server.url)
        settings = GatewaySettings(
            routes_file=routes_file,
            routes_poll_seconds=0.05,
            cors_origins=["http://localhost:3000"],
            max_body_bytes=1 << 20,
            log_level="WARNING",
            **overrides,
        )
        app = create_app(
            settings,
            auth_settings=AuthSettings(
                jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
                firebase_project_id=FIREBASE_PROJECT,
                leeway_seconds=auth_leeway,
            ),
            internal_settings=InternalIdentitySettings(
                signing_key=INTERNAL_KEY  # type: ignore[arg-type]
            ),
            route_source=route_source,
        )
        async with (
            serve(app, http="httptools") as url,
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200 and app.stream_ready.is_set()

            if wait_ready:
                await wait_for(ready, within=20, what="gateway readiness")
            yield RunningGateway(url=url, app=app, routes_file=routes_file, http=http)

    return start


@pytest.fixture(scope="session")
async def gateway(gateway_factory: GatewayFactory) -> AsyncIterator[RunningGateway]:
    async with gateway_factory() as gw:
        yield gw


@pytest.fixture
def auth() -> Callable[..., dict[str, str]]:
    def headers(**claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_jwt(**claims)}"}

    return headers
