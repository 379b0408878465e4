"""Session-wide emulators shared by every test package (registered from conftest.py's
`pytest_plugins`). A session fixture re-exported from one package's conftest into another is
a second fixture with a second instance; defined here once, it is started once. Also the start
and stop of the Firebase Auth emulator and of the gcloud emulators (Firestore, Pub/Sub) that
several fixtures run; each in a process group that a watcher stops if the test process is
killed first (reaper.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.conftest import FIREBASE_PROJECT, NODE_DIR, free_port, wait_for
from reaper import reap_with_parent


@pytest.fixture(scope="session")
async def firebase_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FirebaseEmulator]:
    async with start_firebase_emulator(tmp_path_factory) as emulator:
        yield emulator


@dataclass
class FirestoreEmulator:
    host: str
    project: str


@pytest.fixture(scope="session")
async def firestore_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FirestoreEmulator]:
    """The gcloud Firestore emulator, `FIRESTORE_EMULATOR_HOST` set while it runs; one for the
    session (the CRM's tests and the security fuzzing share it, isolated by tenant). Yielded
    once a first transaction has committed through its REST API: "Ok" on `/` can come well
    before a cold JVM commits quickly. Our reading of a CI failure (both CRM fuzz tests got
    the CRM's 503 after its 10 s deadline on their first write, from a second, cold emulator
    the security tests then started) is that such a first commit under load was too slow."""
    workdir = tmp_path_factory.mktemp("firestore")
    args = ("emulators", "firestore", "start")
    async with gcloud_emulator(args, workdir, "FIRESTORE_EMULATOR_HOST", "Firestore") as host:
        await _first_commit(host, FIREBASE_PROJECT, workdir / "emulator.log")
        yield FirestoreEmulator(host=host, project=FIREBASE_PROJECT)


async def _first_commit(host: str, project: str, log: Path, *, within: float = 120.0) -> None:
    """One transaction (begin, commit a write) through the emulator's REST API."""
    documents = f"/v1/projects/{project}/databases/(default)/documents"
    write = {
        "update": {
            "name": f"projects/{project}/databases/(default)/documents/emulator-warm-up/first",
            "fields": {"committed": {"booleanValue": True}},
        }
    }
    async with httpx.AsyncClient(base_url=f"http://{host}", timeout=within) as http:
        try:
            r = await http.post(f"{documents}:beginTransaction", json={})
            r.raise_for_status()
            txn = r.json()["transaction"]
            r = await http.post(f"{documents}:commit", json={"writes": [write], "transaction": txn})
            r.raise_for_status()
        except httpx.HTTPError as exc:
            pytest.fail(f"the Firestore emulator's first commit failed ({exc!r}): " + _tail(log))


@dataclass
class FirebaseEmulator:
    host: str
    http: httpx.AsyncClient

    async def user_token(self, email: str, claims: dict[str, Any] | None) -> str:
        """Create a user (with custom claims) in the emulator and return an ID token."""
        base = "/identitytoolkit.googleapis.com/v1"
        account = {"email": email, "password": "secret-123", "returnSecureToken": True}
        r = await self.http.post(f"{base}/accounts:signUp?key=fake", json=account)
        if r.status_code == 400 and "EMAIL_EXISTS" in r.text:
            # one emulator serves the whole session: another package made this user
            r = await self.http.post(f"{base}/accounts:signInWithPassword?key=fake", json=account)
        r.raise_for_status()
        uid = r.json()["localId"]
        if claims is not None:
            r = await self.http.post(
                f"{base}/projects/{FIREBASE_PROJECT}/accounts:update",
                json={"localId": uid, "customAttributes": json.dumps(claims)},
                headers={"Authorization": "Bearer owner"},
            )
            r.raise_for_status()
        r = await self.http.post(
            f"{base}/accounts:signInWithPassword?key=fake",
            json={"email": email, "password": "secret-123", "returnSecureToken": True},
        )
        r.raise_for_status()
        return str(r.json()["idToken"])


@contextlib.asynccontextmanager
async def start_firebase_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FirebaseEmulator]:
    """The Firebase Auth emulator, `FIREBASE_AUTH_EMULATOR_HOST` set while it runs. One per
    session (the `firebase_emulator` fixture above: packages share it instead of each starting
    its own node process)."""
    firebase = NODE_DIR / "node_modules" / ".bin" / "firebase"
    if not firebase.exists():
        pytest.fail("firebase-tools is missing: run `make deps` (hack/deps/node-tools.sh)")
    workdir = tmp_path_factory.mktemp("firebase")
    port, hub, logging_port = free_port(), free_port(), free_port()
    (workdir / "firebase.json").write_text(
        json.dumps(
            {
                "emulators": {
                    "auth": {"host": "127.0.0.1", "port": port},
                    "hub": {"host": "127.0.0.1", "port": hub},
                    "logging": {"host": "127.0.0.1", "port": logging_port},
                    "ui": {"enabled": False},
                    "singleProjectMode": True,
                }
            }
        )
    )
    env = {
        **os.environ,
        "HOME": str(workdir),
        "XDG_CONFIG_HOME": str(workdir / ".config"),
        "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "1",
        "CI": "true",
    }
    with (workdir / "emulator.log").open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *(str(firebase), "emulators:start", "--only", "auth", "--project", FIREBASE_PROJECT),
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    reap_with_parent(proc.pid)  # a SIGKILLed test process leaves no emulator behind
    host = f"127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=f"http://{host}", timeout=10)

    async def up() -> bool:
        if proc.returncode is not None:
            raise RuntimeError("the emulator exited: " + _tail(workdir / "emulator.log"))
        return (await http.get("/")).status_code == 200

    try:
        with environ("FIREBASE_AUTH_EMULATOR_HOST", host):
            await wait_for(up, within=120, what="the Firebase Auth emulator", interval=0.25)
            yield FirebaseEmulator(host=host, http=http)
    finally:
        await http.aclose()
        await stop_process_group(proc)


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


@contextlib.asynccontextmanager
async def gcloud_emulator(
    args: Sequence[str], workdir: Path, env: str, product: str
) -> AsyncIterator[str]:
    """A gcloud emulator (`gcloud <args>`) on a free port, logging to `workdir/emulator.log`,
    with `env` (how the client libraries find it) set to its host:port while the block runs;
    stopped with its process group after it."""
    host = f"127.0.0.1:{free_port()}"
    proc = await start_gcloud_emulator(
        args,
        host=host,
        workdir=workdir,
        log=workdir / "emulator.log",
        what=f"the {product} emulator",
        deps="hack/deps/gcloud-emulators.sh",
    )
    try:
        with environ(env, host):
            yield host
    finally:
        await stop_process_group(proc)


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


async def stop_process_group(
    proc: asyncio.subprocess.Process, *, term_grace: float = 20.0, kill_grace: float = 5.0
) -> None:
    """Stop the process group `proc` leads and return once every process of it is gone: SIGTERM
    the group (SIGCONT first, in case a test paused it), SIGKILL what is left of it after
    `term_grace` seconds, and fail after `kill_grace` more. Waiting for the leader alone was
    not enough: gcloud exits before its java child (the emulator's JVM), which may still hold
    the port while the next start binds it. A zombie counts as gone (it holds no port)."""
    pgid = proc.pid
    if proc.returncode is not None and not _group_members(pgid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGCONT)
        os.killpg(pgid, signal.SIGTERM)
    try:
        await asyncio.wait_for(_group_gone(proc), timeout=term_grace)
        return
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    try:
        await asyncio.wait_for(_group_gone(proc), timeout=kill_grace)
    except TimeoutError:
        left = _group_members(pgid)
        raise RuntimeError(
            f"process group {pgid} still has processes {left} {kill_grace}s after SIGKILL"
        ) from None


def _group_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that have not exited (zombies left out), from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        state, _, group = stat[stat.rfind(")") + 2 :].split()[:3]
        if state != "Z" and int(group) == pgid:
            members.append(int(entry.name))
    return members


async def _group_gone(proc: asyncio.subprocess.Process) -> None:
    """Return once the leader `proc` has been waited for and no other process of its group is
    left; each exit is waited on through a pidfd (readable once its process exits, child of
    ours or not), and the group is read again after each (a process may have forked)."""
    await proc.wait()
    loop = asyncio.get_running_loop()
    while members := _group_members(proc.pid):
        fds = []
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                fds.append(os.pidfd_open(pid))
        exited: asyncio.Future[None] = loop.create_future()
        try:
            for fd in fds:
                loop.add_reader(fd, _resolve, exited)
            # a pid in the list may have exited (and been reused) before its pidfd was opened:
            # read the group again, and wait only when every pidfd is of a process still in it
            if fds and set(_group_members(proc.pid)) == set(members):
                await exited
        finally:
            for fd in fds:
                loop.remove_reader(fd)
                os.close(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
