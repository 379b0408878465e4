"""Benchmark of the AI router against the fake OpenAI API; prints a table (not a test).

Each part runs as its own process on this machine: redis-server, the fake provider
(``python -m fakes.openai``) and the router (``python -m services.ai``, chain = the fake, with a
price table). One client (``--client``: aiohttp by default, as the gateway calls services; or httpx), the same
keep-alive session for every path, one request at a time (closed loop), so latencies are per
request; 50 requests of each path warm up first and are not counted:

1. direct: the fake, called as the router calls it (same body, non-deterministic);
2. miss: through the router, a new deterministic prompt each time (cache lookup, provider
   call, ledger, cache write);
3. hit: through the router, a cached prompt (no provider call), end to end;
4. replay: a request mix with repeats (Zipf-like over distinct prompts), then the router's
   own /cache/stats: hit ratio, saved tokens and money.

Targets: miss adds at most 3 ms at p99 over direct; a hit takes at most 2 ms at p99.

Latency percentiles move with whatever else runs on the machine; the router's CPU time per
request (user + system, from /proc/<pid>/stat over each measured loop, warm-up excluded) moves
much less, so the table prints it too.

    .venv/bin/python bench/ai_router.py [--requests 500] [--replay 2000] [--distinct 300]
        [--client aiohttp|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KEY = "bench-internal-key-" + "i" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def wait_http(url: str, *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(url)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (Linux /proc;
    a server may serve from worker processes)."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        total += sum(cpu_seconds(int(child)) for child in children)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return total + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Post = Callable[[str, dict, dict[str, str]], Awaitable[tuple[int, bytes]]]


@contextlib.asynccontextmanager
async def client(kind: str) -> AsyncIterator[Post]:
    """One keep-alive client for every path: aiohttp (what the gateway calls services with)
    or httpx (about 0.5 ms more CPU per request in the client's own process)."""
    if kind == "httpx":
        async with httpx.AsyncClient(timeout=30) as hx:

            async def post_httpx(url: str, payload: dict, headers: dict[str, str]) -> Any:
                r = await hx.post(url, json=payload, headers=headers)
                return r.status_code, r.content

            yield post_httpx
        return
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as ah:

        async def post_aiohttp(url: str, payload: dict, headers: dict[str, str]) -> Any:
            async with ah.post(url, json=payload, headers=headers) as r:
                return r.status, await r.read()

        yield post_aiohttp


async def timed(post: Post, url: str, payload: dict, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    status, content = await post(url, payload, headers)
    elapsed = (time.perf_counter() - start) * 1000
    assert status == 200, content
    return elapsed


def body(text: str, temperature: float) -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "temperature": temperature,
    }


@dataclass
class Urls:
    fake: str
    router: str
    router_pid: int

    @property
    def direct(self) -> str:
        return f"{self.fake}/v1/chat/completions"

    @property
    def chat(self) -> str:
        return f"{self.router}/api/v1/ai/chat/completions"


def identity(tenant: str) -> dict[str, str]:
    from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
    from services.common.settings import InternalIdentitySettings
    from services.common.tenancy import Identity

    signer = InternalIdentitySigner(InternalIdentitySettings(signing_key=KEY))  # type: ignore[arg-type]
    return {IDENTITY_HEADER: signer.sign(Identity("bench", tenant))}


async def latency(args: argparse.Namespace, post: Post, urls: Urls) -> None:
    ident, fake_auth = identity(f"bench-{int(time.time())}"), {"Authorization": "Bearer sk-bench"}
    for i in range(50):  # warm-up of both paths
        await timed(post, urls.direct, body(f"warm {i}", 0.7), fake_auth)
        await timed(post, urls.chat, body(f"warm {i}", 0.7), ident)
    direct, miss, hit = [], [], []
    cpu: dict[str, float | None] = {"direct to the fake": None}
    start = cpu_seconds(urls.router_pid)
    for i in range(args.requests):
        direct.append(await timed(post, urls.direct, body(f"direct {i} question", 0.7), fake_auth))
        miss.append(await timed(post, urls.chat, body(f"miss {i} question", 0), ident))
    cpu["router, cache miss"] = (cpu_seconds(urls.router_pid) - start) / args.requests
    await timed(post, urls.chat, body("the cached question", 0), ident)
    start = cpu_seconds(urls.router_pid)
    for _ in range(args.requests):
        hit.append(await timed(post, urls.chat, body("the cached question", 0), ident))
    cpu["router, cache hit"] = (cpu_seconds(urls.router_pid) - start) / args.requests
    print(f"client: {args.client}")
    print(f"{'path':<28}{'p50 ms':>10}{'p99 ms':>10}{'router CPU ms/req':>20}")
    for name, values in (
        ("direct to the fake", direct),
        ("router, cache miss", miss),
        ("router, cache hit", hit),
    ):
        used = cpu[name]
        per = "-" if used is None else f"{used * 1000:.2f}"
        print(f"{name:<28}{pct(values, 0.5):>10.2f}{pct(values, 0.99):>10.2f}{per:>20}")
    added = pct(miss, 0.99) - pct(direct, 0.99)
    print(
        f"miss overhead at p99: {added:.2f} ms (target <= 3 ms); hit p99: {pct(hit, 0.99):.2f} ms (target <= 2 ms)"
    )


async def replay(args: argparse.Namespace, post: Post, urls: Urls) -> None:
    ident = identity(f"bench-replay-{int(time.time())}")
    rng = random.Random(7)
    weights = [1 / (k + 1) for k in range(args.distinct)]
    mix = rng.choices(range(args.distinct), weights=weights, k=args.replay)
    for k in mix:
        await post(urls.chat, body(f"replayed question number {k} about pricing", 0), ident)
    stats = httpx.get(  # noqa: ASYNC210 - after the measured part
        f"{urls.router}/api/v1/ai/cache/stats", headers=ident
    ).json()
    spent = httpx.get(  # noqa: ASYNC210
        f"{urls.router}/api/v1/ai/usage", headers=ident
    ).json()["total"]["cost_usd"]
    print(
        f"replay: {args.replay} requests over {args.distinct} prompts: hit ratio {stats['hit_ratio']:.3f}, "
        f"saved {stats['saved_tokens']} tokens and ${stats['saved_usd']:.6f} "
        f"(spent ${spent:.6f}; saved {stats['saved_usd'] / max(spent + stats['saved_usd'], 1e-12):.1%} of the cost)"
    )


async def run(args: argparse.Namespace, urls: Urls) -> None:
    async with client(args.client) as post:
        await latency(args, post, urls)
        await replay(args, post, urls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--replay", type=int, default=2000)
    parser.add_argument("--distinct", type=int, default=300)
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    args = parser.parse_args()
    redis = shutil.which("redis-server")
    if redis is None:
        sys.exit("redis-server is missing: run `make deps`")
    work = Path(tempfile.mkdtemp(prefix="ai-bench-"))
    rport, fport, aport = free_port(), free_port(), free_port()
    fake_url, router_url = f"http://127.0.0.1:{fport}", f"http://127.0.0.1:{aport}"
    providers = [
        {
            "name": "openai",
            "base_url": f"{fake_url}/v1",
            "api_key_env": "BENCH_OPENAI_KEY",
            "prices": {"gpt-4o-mini": {"prompt": "0.15", "completion": "0.6"}},
        }
    ]
    router_env = {
        "BENCH_OPENAI_KEY": "sk-bench",
        "XYNERGY_AI_HOST": "127.0.0.1",
        "XYNERGY_AI_PORT": str(aport),
        "XYNERGY_AI_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
        "XYNERGY_AI_PROVIDERS": json.dumps(providers),
        "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
        "XYNERGY_AI_LOG_LEVEL": "WARNING",
    }
    with (
        process(
            [redis, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--dir", str(work)],
            {},
            work / "redis.log",
        ),
        process(
            [sys.executable, "-m", "fakes.openai", "--port", str(fport), "--api-key", "sk-bench"],
            {"PYTHONPATH": str(ROOT / "tests")},
            work / "fake.log",
        ),
        process([sys.executable, "-m", "services.ai"], router_env, work / "router.log") as router,
    ):
        wait_http(f"{fake_url}/v1/models")
        wait_http(f"{router_url}/healthz")
        asyncio.run(run(args, Urls(fake_url, router_url, router.pid)))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
