"""`xynergy dev up`'s Pub/Sub part (controllers/devcluster/platform.py): dev's own start code
runs gcloud's Pub/Sub emulator and the analytics service as processes (a stand-in for the
cluster object only records and stops them) with real redis-server; the service ingests the
emulator's 7 consolidated topics, as its /pubsub/consolidation-metrics says, and an event
published there is counted. Without the emulator installed, dev up says so and the service
gets no Pub/Sub settings."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from ai_router.conftest import SIGNER
from gateway.conftest import INTERNAL_KEY, RedisServer
from google.cloud import pubsub_v1

from controllers.devcluster import platform
from controllers.devcluster.processes import ManagedProcess, spawn, stop_process
from services.analytics.settings import CONSOLIDATED_TOPICS
from services.common.identity import IDENTITY_HEADER
from services.common.tenancy import Identity

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """dev's `_Start` on a stand-in cluster that spawns what it is given (stopped after)."""
    procs: list[ManagedProcess] = []
    said: list[str] = []

    def add_process(*, name: str, log: Path | None = None, **kw: Any) -> ManagedProcess:
        procs.append(spawn(name=name, log=tmp_path / f"{name}.log", **kw))
        return procs[-1]

    key = tmp_path / "internal-signing-key"
    key.write_text(INTERNAL_KEY)
    cluster = SimpleNamespace(
        workdir=tmp_path, kubeconfig=tmp_path / "no-kubeconfig", add_process=add_process
    )
    yield (
        platform._Start(
            cluster=cluster,  # type: ignore[arg-type]
            progress=said.append,
            timeout=60,
            env={"PYTHONUNBUFFERED": "1", "XYNERGY_ANALYTICS_LOG_LEVEL": "WARNING"},
            secret_files={"XYNERGY_INTERNAL_SIGNING_KEY": key},
        ),
        said,
    )
    for proc in reversed(procs):
        stop_process(proc)


def _metrics(url: str) -> dict[str, Any]:
    header = {IDENTITY_HEADER: SIGNER.sign(Identity("u1", "acme", roles=("viewer",)))}
    r = httpx.get(f"{url}/pubsub/consolidation-metrics", headers=header, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_dev_runs_the_pubsub_emulator_for_analytics(
    start: tuple[Any, list[str]], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if platform._pubsub_emulator() is None:
        pytest.fail("gcloud's Pub/Sub emulator is missing: run `make deps` (gcloud-emulators.sh)")
    run, said = start
    host = platform._start_pubsub(run)
    assert host is not None, said
    url = platform._start_analytics(
        run, redis_url=redis_server.url, ai_url="http://127.0.0.1:9", prometheus_url="",
        gmail_url="", pubsub_host=host,
    )  # fmt: skip
    body = _metrics(url)
    assert body["buses"] == ["redis", "pubsub"]
    assert body["pubsub"]["project"] == platform.PUBSUB_PROJECT
    assert [t["topic"] for t in body["pubsub"]["topics"]] == list(CONSOLIDATED_TOPICS)
    assert all(t["pulling"] for t in body["pubsub"]["topics"])

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(platform.PUBSUB_PROJECT, "platform-system-events")
    publisher.publish(topic, b'{"n": 1}', tenant="acme", event_topic="ai-usage").result(10)

    deadline = time.monotonic() + 30
    while _metrics(url)["pubsub"]["counts"]["ack"] != 1:
        assert time.monotonic() < deadline, "the event published in dev was not counted"
        time.sleep(0.2)
    assert _metrics(url)["events_24h"] == {"ai-usage": 1}


def test_without_the_emulator_dev_says_so_and_analytics_gets_no_pubsub(
    start: tuple[Any, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, said = start
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert platform._start_pubsub(run) is None
    assert said == [
        "gcloud's Pub/Sub emulator is not installed (hack/deps/gcloud-emulators.sh): "
        "analytics ingests from the Redis bus only"
    ]
    envs: dict[str, dict[str, str]] = {}
    run = SimpleNamespace(
        cluster=run.cluster, python_service=lambda name, *, env, **_: envs.setdefault(name, env)
    )
    platform._start_analytics(
        run, redis_url="redis://x", ai_url="http://ai", prometheus_url="", gmail_url=""
    )
    assert not [k for k in envs["analytics"] if "PUBSUB" in k]
