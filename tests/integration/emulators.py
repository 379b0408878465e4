"""Session-wide emulators shared by every test package (registered from conftest.py's
`pytest_plugins`). A session fixture re-exported from one package's conftest into another is
a second fixture with a second instance; defined here once, it is started once. Also the start
and stop of the gcloud emulators (Firestore, Pub/Sub) that several fixtures run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from gateway.conftest import FirebaseEmulator, start_firebase_emulator, wait_for
from reaper import reap_with_parent


@pytest.fixture(scope="session")
async def firebase_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FirebaseEmulator]:
    async with start_firebase_emulator(tmp_path_factory) as emulator:
        yield emulator


async def start_gcloud_emulator(
    args: Sequence[str], *, host: str, workdir: Path, log: Path, what: str, deps: str
) -> asyncio.subprocess.Process:
    """`gcloud <args> --host-port=<host> --quiet` in a process group of its own (gcloud starts
        java: stop the group, `stop_process_group`; a watcher stops it if this process is killed
    first), returned once it answers "Ok" on `/`."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.fail(f"gcloud is missing: run `make deps` ({deps})")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(gcloud, *args, f"--host-port={host}", "--quiet"),
            cwd=workdir,
            env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    reap_with_parent(proc.pid)  # a SIGKILLed test process leaves no emulator behind
    async with httpx.AsyncClient(base_url=f"http://{host}", timeout=2) as http:

        async def up() -> bool:
            if proc.returncode is not None:
                raise RuntimeError(f"{what} exited: " + _tail(log))
            r = await http.get("/")
            return r.status_code == 200 and r.text.strip() == "Ok"

        try:
            await wait_for(up, within=120, what=what, interval=0.2)
        except BaseException:
            await stop_process_group(proc)
            raise
    return proc


@contextlib.contextmanager
def environ(name: str, value: str) -> Iterator[None]:
    """Environment variable `name` set to `value` for the block (the client libraries find
    an emulator through it), then as it was."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def stop_process_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process's group (SIGCONT first, in case a test paused it), SIGKILL after 20 s."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), timeout=5)
