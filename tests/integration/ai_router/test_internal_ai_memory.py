"""The Internal AI service keeps its memory flat: ``python -m services.internal_ai`` as its own
process, 1,000 requests (embeddings and chat, texts of varying length), RSS read from /proc
after a warm-up and at the end. Asserted as bounded growth, not timing. About two minutes of
model inference on a 2-core machine, so it runs with `make soak`, not in CI's `make test`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from services.common.identity import IDENTITY_HEADER

from .conftest import INTERNAL_KEY, SIGNER, Identity, free_port, wait_for

GROWTH_LIMIT_MIB = 24.0

pytestmark = pytest.mark.soak


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_rss_stays_flat_over_1000_requests(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "XYNERGY_INTERNAL_AI_HOST": "127.0.0.1",
        "XYNERGY_INTERNAL_AI_PORT": str(port),
        "XYNERGY_INTERNAL_SIGNING_KEY": INTERNAL_KEY,
        "XYNERGY_INTERNAL_AI_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "internal-ai.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.internal_ai", env=env, stdout=log, stderr=log
    )
    caller = Identity(user_id="u", tenant_id="mem")
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
    ]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await wait_for(ready, within=60, what="the internal AI service")

            async def one(i: int) -> None:
                headers = {IDENTITY_HEADER: SIGNER.sign(caller)}  # renewed as tokens age
                text = " ".join(words[(i + j) % len(words)] for j in range(5 + i % 60)) + "."
                if i % 2:
                    r = await http.post(
                        "/v1/embeddings",
                        json={"input": [text, text[: i % 40 + 1]]},
                        headers=headers,
                    )
                else:
                    content = f"{text} Second sentence {i}. Third one here."
                    r = await http.post(
                        "/v1/chat/completions",
                        json={"messages": [{"role": "user", "content": content}]},
                        headers=headers,
                    )
                assert r.status_code == 200, r.text

            for i in range(100):  # warm-up: arenas and caches reach their working size
                await one(i)
            before = rss_mib(proc.pid)
            for i in range(100, 1100):
                await one(i)
            after = rss_mib(proc.pid)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=20)
        log.close()
    print(
        f"internal AI RSS: {before:.1f} MiB after warm-up, {after:.1f} MiB after 1,000 more requests"
    )
    assert after - before < GROWTH_LIMIT_MIB
