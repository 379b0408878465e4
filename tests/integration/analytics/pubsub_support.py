"""The gcloud Pub/Sub emulator for the analytics Pub/Sub ingest tests: started once per session
on a free port (readiness: its HTTP root answers ``Ok``), ``PUBSUB_EMULATOR_HOST`` set for the
client library, the process group stopped after the session. Import the fixture into the test
module that uses it (``from pubsub_support import pubsub_emulator``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from gateway.conftest import free_port, wait_for
from google.cloud import pubsub_v1

__all__ = ["PubSubEmulator", "pubsub_emulator"]


@dataclass
class PubSubEmulator:
    host: str
    project: str

    def topic_and_subscription(self, *, ack_deadline: int = 10) -> tuple[str, str]:
        """A fresh topic and a subscription on it (ids, in this emulator's project)."""
        topic, sub = f"t-{uuid.uuid4().hex[:10]}", f"s-{uuid.uuid4().hex[:10]}"
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic_path = publisher.topic_path(self.project, topic)
        publisher.create_topic(name=topic_path)
        subscriber.create_subscription(
            name=subscriber.subscription_path(self.project, sub),
            topic=topic_path,
            ack_deadline_seconds=ack_deadline,
        )
        subscriber.close()
        return topic, sub


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        await asyncio.wait_for(proc.wait(), timeout=20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await asyncio.wait_for(proc.wait(), timeout=5)


@pytest.fixture(scope="session")
async def pubsub_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PubSubEmulator]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.fail("gcloud is missing: run `make deps` (hack/deps/pubsub-emulator.sh)")
    workdir = tmp_path_factory.mktemp("pubsub")
    host = f"127.0.0.1:{free_port()}"
    (workdir / "data").mkdir()
    log_path = workdir / "emulator.log"
    log_file = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        *(gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host}", "--quiet"),
        *(f"--data-dir={workdir / 'data'}",),
        cwd=workdir,
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # gcloud starts java: stop the whole group
    )
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    async with httpx.AsyncClient(base_url=f"http://{host}", timeout=2) as http:

        async def up() -> bool:
            if proc.returncode is not None:
                pytest.fail("the Pub/Sub emulator exited: " + log_path.read_text()[-2000:])
            r = await http.get("/")
            return r.status_code == 200 and r.text.strip() == "Ok"

        try:
            await wait_for(up, within=120, what="the Pub/Sub emulator", interval=0.2)
            yield PubSubEmulator(host=host, project="xynergy-test")
        finally:
            if saved is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = saved
            await _stop(proc)
            log_file.close()
