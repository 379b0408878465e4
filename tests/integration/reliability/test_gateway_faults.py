"""The gateway under faults of what it depends on (issue 19 item 4):

- Redis stopped under a running gateway (a redis-server of the test's own, stopped and started
  again on its port): `XYNERGY_GATEWAY_RATE_LIMIT_FAIL_OPEN` decides whether requests pass
  unchecked (served by the upstream, the cache bypassed) or get the 503 error; the outage is
  logged once when it starts and once when it ends, however many requests meet it, and counted
  in Prometheus; once Redis is back the gateway limits and caches again without a restart;
- an upstream that accepts connections and never answers: 504 at the route's timeout, the
  breaker opens after the configured failures and answers 503 at once without touching the
  upstream, half-opens, re-opens on a failed trial, and closes when the upstream answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from gateway.conftest import (  # noqa: F401 - the gateway's fixtures, used here
    GatewayFactory,
    RunningGateway,
    Upstream,
    auth,
    free_port,
    gateway_factory,
    redis_server,
    routes_document,
    upstream,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

# -- a redis-server the test stops and starts again on the same port ---------------------------


@dataclass
class StoppableRedis:
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: run `make deps` (hack/deps/redis.sh)")
        self.proc = await asyncio.create_subprocess_exec(
            *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(self.workdir)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url)
        try:
            await wait_for(client.ping, within=20, what="redis-server")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), timeout=10)


@contextlib.asynccontextmanager
async def stoppable_redis(workdir: Path) -> AsyncIterator[StoppableRedis]:
    server = StoppableRedis(workdir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Records(logging.Handler):
    """Log records of the gateway (whose loggers do not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if text in r.getMessage()]


@contextlib.contextmanager
def gateway_logs() -> Iterator[Records]:
    logger = logging.getLogger("xynergy.gateway")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def metric(gw: RunningGateway, name: str, **labels: str) -> float:
    text = (await gw.http.get("/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


# -- Redis down ------------------------------------------------------------------------------


async def _serves_from_cache(gw: RunningGateway, path: str, headers: dict[str, str]) -> None:
    r = await gw.http.get(path, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["x-cache"] == "MISS"
    assert "ratelimit-limit" in r.headers
    r = await gw.http.get(path, headers=headers)
    assert r.headers["x-cache"] == "HIT"


async def _during_outage(
    gw: RunningGateway, echo: Upstream, path: str, headers: dict[str, str], *, n: int, mode: str
) -> None:
    """n GETs and one write while Redis is down: answered as `mode` says."""
    fail_open = mode == "fail_open"
    before = echo.count(path.partition("?")[0])
    for _ in range(n):
        r = await gw.http.get(path, headers=headers)
        if fail_open:
            assert r.status_code == 200, r.text
            assert "ratelimit-limit" not in r.headers  # nothing was checked
            assert r.headers.get("x-cache") != "HIT"
        else:
            assert r.status_code == 503, r.text
            assert r.json() == {
                "error": "rate_limiter_unavailable",
                "message": "rate limiting is unavailable",
                "status": 503,
            }
            assert r.headers["retry-after"] == "1"
    # a write: let through, its cache invalidation left pending; or refused before it
    r = await gw.http.post(path, headers=headers, json={"during": "outage"})
    assert r.status_code == (200 if fail_open else 503), r.text
    # fail open: every request reached the upstream (no cache); fail closed: none did
    assert echo.count(path.partition("?")[0]) - before == (n + 1 if fail_open else 0)
    ready = await gw.http.get("/readyz")  # fail open: still ready, it serves without Redis
    assert ready.status_code == (200 if fail_open else 503)
    assert ready.json()["checks"]["redis"] == "unreachable"


async def _recovered(gw: RunningGateway, path: str, headers: dict[str, str]) -> None:
    """Limits, cache and invalidations work again, without a restart."""

    async def limited_again() -> bool:
        r = await gw.http.get(path, headers=headers)
        return r.status_code == 200 and "ratelimit-limit" in r.headers

    await wait_for(limited_again, within=20, what="the gateway to use Redis again")
    invalidations = gw.app.invalidations
    assert invalidations is not None

    async def confirmed() -> bool:
        return invalidations.pending() == 0

    await wait_for(confirmed, within=20, what="the pending cache invalidation to be confirmed")
    assert await metric(gw, "xynergy_gateway_redis_up") == 1
    assert (await gw.http.get("/readyz")).status_code == 200


OUTAGES = [
    pytest.param(1, 6, id="ci"),
    pytest.param(5, 200, id="soak", marks=pytest.mark.soak),
]


@pytest.mark.parametrize(("outages", "requests"), OUTAGES)
@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_redis_outage_follows_the_setting_is_logged_once_and_recovers(
    gateway_factory: GatewayFactory,  # noqa: F811
    upstream: Upstream,  # noqa: F811
    auth: Any,  # noqa: F811
    tmp_path: Path,
    mode: str,
    outages: int,
    requests: int,
) -> None:
    path = f"/api/v2/crm/redis-outage-{mode}?cache=private"
    headers = auth(user_id=f"redis-outage-{mode}")
    fallbacks = "xynergy_gateway_redis_fallbacks_total"
    async with (
        stoppable_redis(tmp_path) as redis,
        gateway_factory(redis_url=redis.url, rate_limit_fail_open=mode == "fail_open") as gw,
    ):
        for n in range(1, outages + 1):
            await _serves_from_cache(gw, f"{path}&before={n}", headers)
            with gateway_logs() as logs:
                await redis.stop()
                await _during_outage(gw, upstream, path, headers, n=requests, mode=mode)
                started = logs.messages("redis unreachable")
                assert len(started) == 1, [r.getMessage() for r in logs.records]
                assert started[0].levelno == logging.WARNING
                assert mode.replace("_", " ") in started[0].getMessage()
                decided = await metric(gw, fallbacks, component="ratelimit", mode=mode)
                assert decided == n * (requests + 1)
                bypassed = await metric(gw, fallbacks, component="cache", mode="bypass")
                assert bypassed == (n if mode == "fail_open" else 0)
                assert await metric(gw, "xynergy_gateway_redis_up") == 0
                assert await metric(gw, "xynergy_gateway_redis_outages_total") == n

                await redis.start()
                await _recovered(gw, path, headers)
                assert len(logs.messages("redis reachable again")) == 1
                assert len(logs.messages("redis unreachable")) == 1
        # the cache works again (the restarted Redis is empty: a MISS, then a HIT)
        await _serves_from_cache(gw, path.replace("outage", "back"), headers)


# -- an upstream that hangs ------------------------------------------------------------------


@dataclass
class HangingUpstream:
    """Accepts connections and reads requests; answers nothing until `answering` is set."""

    port: int = field(default_factory=free_port)
    answering: bool = False
    stall_body: bool = False
    """Send the status line, headers and part of the body, then nothing."""
    connections: int = 0
    _held: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            if self.stall_body:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncache-control: private, max-age=60\r\n"
                    + b"content-length: 100\r\n\r\n"
                    + b"x" * 10
                )
                await writer.drain()
            if self.stall_body or not self.answering:
                self._held.append(writer)  # never answered; the gateway gives up
                return
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def hanging_upstream(*, stall_body: bool = False) -> AsyncIterator[HangingUpstream]:
    state = HangingUpstream(stall_body=stall_body)
    server = await asyncio.start_server(state.handle, "127.0.0.1", state.port)
    try:
        yield state
    finally:
        server.close()
        for writer in state._held:
            writer.transport.abort()


ROUTE_TIMEOUT = 1
THRESHOLD = 2


@contextlib.asynccontextmanager
async def gateway_before(
    factory: GatewayFactory, echo: Upstream, hung: HangingUpstream, name: str, *, reset: float
) -> AsyncIterator[RunningGateway]:
    """A gateway with route /api/v2/<name> to `hung` (ROUTE_TIMEOUT, breaker at THRESHOLD
    failures, no retries); its client waits far longer, so a 504 is the gateway's."""
    doc = routes_document(echo.url)
    route = {"prefix": f"/api/v2/{name}", "timeoutSeconds": ROUTE_TIMEOUT}
    doc["services"].append({"name": name, "url": hung.url, "routes": [route]})
    async with factory(
        doc, breaker_failure_threshold=THRESHOLD, breaker_reset_seconds=reset, retries=0
    ) as gw:
        gw.http.timeout = httpx.Timeout(ROUTE_TIMEOUT * 10)
        yield gw


async def _breaker(gw: RunningGateway, url: str) -> str:
    return str((await gw.http.get("/readyz")).json()["breakers"].get(url))


async def _timed_out(gw: RunningGateway, path: str, headers: dict[str, str]) -> None:
    r = await gw.http.get(path, headers=headers)
    assert r.status_code == 504, r.text
    assert r.json() == {"error": "upstream_timeout", "message": "upstream timed out", "status": 504}


async def _fails_fast(
    gw: RunningGateway, hung: HangingUpstream, path: str, headers: dict[str, str]
) -> None:
    seen = hung.connections
    r = await gw.http.get(path, headers=headers)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "upstream_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert hung.connections == seen  # nothing was sent upstream


TRIALS = [
    pytest.param(1, id="ci"),
    pytest.param(10, id="soak", marks=pytest.mark.soak),
]


@pytest.mark.parametrize("failed_trials", TRIALS)
async def test_hanging_upstream_times_out_opens_the_breaker_and_recovers(
    gateway_factory: GatewayFactory,  # noqa: F811
    upstream: Upstream,  # noqa: F811
    auth: Any,  # noqa: F811
    failed_trials: int,
) -> None:
    async with (
        hanging_upstream() as hung,
        gateway_before(gateway_factory, upstream, hung, "hung", reset=1.0) as gw,
    ):
        headers, path = auth(user_id="hung-user"), "/api/v2/hung/x"
        for _ in range(THRESHOLD):
            await _timed_out(gw, path, headers)
        assert await _breaker(gw, hung.url) == "open"
        assert await metric(gw, "xynergy_gateway_breaker_state", upstream=hung.url) == 1
        await _fails_fast(gw, hung, path, headers)

        async def half_open() -> bool:
            return await _breaker(gw, hung.url) == "half_open"

        for _ in range(failed_trials):
            # a trial while the upstream still hangs: 504, and the breaker opens again
            await wait_for(half_open, within=10, what="the breaker to half-open")
            await _timed_out(gw, path, headers)
            assert await _breaker(gw, hung.url) == "open"
            await _fails_fast(gw, hung, path, headers)

        hung.answering = True
        await wait_for(half_open, within=10, what="the breaker to half-open again")
        for _ in range(2):
            r = await gw.http.get(path, headers=headers)
            assert r.status_code == 200, r.text
            assert r.json() == {"ok": True}
        assert await _breaker(gw, hung.url) == "closed"
        assert await metric(gw, "xynergy_gateway_breaker_state", upstream=hung.url) == 0


async def test_upstream_stalling_mid_body_ends_the_response(
    gateway_factory: GatewayFactory,  # noqa: F811
    upstream: Upstream,  # noqa: F811
    auth: Any,  # noqa: F811
) -> None:
    """Headers and part of the body, then silence for the route timeout. A response the
    gateway buffers (to cache it) becomes the 504 error and counts for the breaker; one it
    streams has its status sent already, so the client must see it cut (not a complete one,
    not a connection held open), and it does not count (a long pause in a started stream, a
    slow SSE answer, is no sign of an unhealthy upstream). Each is logged as a warning
    without a stack trace."""
    async with (
        hanging_upstream(stall_body=True) as hung,
        gateway_before(gateway_factory, upstream, hung, "stalled", reset=30.0) as gw,
    ):
        headers, path = auth(user_id="stalled-user"), "/api/v2/stalled/x"
        streamed = THRESHOLD
        with gateway_logs() as logs:
            # one the client asks fresh is streamed: its status went out, it is cut
            for _ in range(streamed):
                with pytest.raises(httpx.RemoteProtocolError):
                    await gw.http.get(path, headers={**headers, "cache-control": "no-cache"})
            assert await _breaker(gw, hung.url) == "closed"
            # a cacheable response is read whole before it is sent: the 504 error
            for _ in range(THRESHOLD):
                await _timed_out(gw, path, headers)
        assert await _breaker(gw, hung.url) == "open"
        await _fails_fast(gw, hung, path, headers)
        assert not [r for r in logs.records if r.exc_info], "a stack trace was logged"
        assert len(logs.messages("upstream stalled")) == THRESHOLD + streamed
        done = "xynergy_gateway_requests_total"
        assert await metric(gw, done, route="/api/v2/stalled", status="504") == THRESHOLD + streamed
        assert await metric(gw, done, route="/api/v2/stalled", status="200") == 0
