"""The CRM with its Firestore emulator restarted underneath (issue 19 item 4).

A Firestore emulator of the test's own keeps its data across the restart the way a database
does: the test exports it (the emulator's own export endpoint) once the acknowledged writes
are in, stops the emulator's process group, and starts it again on the same port importing
that export. While it is down every request gets the CRM's 503 in the one error shape, with
`Retry-After`, never a 500 or a stack trace (in the body or the logs). Afterwards every write
that was acknowledged reads back as acknowledged, every write that was refused left nothing
(no contact, no note, no change of version), and the CRM answers again without a restart;
a refused create retried with its `Idempotency-Key` is created exactly once.

The same checks hold when the emulator hangs instead (SIGSTOP: connections open, nothing
answered) and then resumes with the refused requests still queued on its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from emulators import start_gcloud_emulator, stop_process_group
from gateway.conftest import FIREBASE_PROJECT, INTERNAL_KEY, free_port, serve, wait_for
from google.cloud import firestore

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.crm.app import create_app
from services.crm.settings import CrmSettings

pytestmark = pytest.mark.integration

INTERNAL = InternalIdentitySettings(signing_key=INTERNAL_KEY)  # type: ignore[arg-type]
DATABASE = f"projects/{FIREBASE_PROJECT}/databases/(default)"
# How long one CRM request waits on Firestore before its 503 (the setting, kept short here).
FIRESTORE_TIMEOUT = 5.0


@dataclass
class RestartableFirestore:
    """The gcloud Firestore emulator on a fixed port, stopped and started with its data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, import_from: Path | None = None) -> None:
        self.starts += 1
        args = ["emulators", "firestore", "start"]
        if import_from is not None:
            args.append(f"--import-data={import_from}")
        self.proc = await start_gcloud_emulator(
            args,
            host=self.host,
            workdir=self.workdir,
            log=self.workdir / f"emulator-{self.starts}.log",
            what="the Firestore emulator",
            deps="hack/deps/gcloud-emulators.sh",
        )

    async def export(self) -> Path:
        """Its data, exported now; the metadata file that `--import-data` takes."""
        dest = self.workdir / f"export-{self.starts}"
        dest.mkdir()
        async with httpx.AsyncClient(base_url=f"http://{self.host}", timeout=30) as http:
            r = await http.post(
                f"/emulator/v1/projects/{FIREBASE_PROJECT}:export",
                json={"database": DATABASE, "export_directory": str(dest)},
            )
            assert r.status_code == 200, r.text
        (meta,) = dest.glob("*/*.overall_export_metadata")
        return meta

    def pause(self) -> None:
        """SIGSTOP the emulator: connections stay open and nothing is answered."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    async def stop(self) -> None:
        """Stop the process group, and return once the port refuses connections: gcloud (the
        group's leader, whose exit ``stop_process_group`` waits for) may exit before its java
        child, which then still answered the first "refused" requests."""
        if self.proc is not None:
            await stop_process_group(self.proc)
            await wait_for(self.refuses, within=30, what="the Firestore emulator's port to close")

    def kill(self) -> None:
        """SIGKILL the emulator's group at once (no await: usable inside a request)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)

    async def refuses(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return True
        writer.close()
        return False


@contextlib.asynccontextmanager
async def restartable_firestore(workdir: Path) -> AsyncIterator[RestartableFirestore]:
    emulator = RestartableFirestore(workdir)
    try:
        await emulator.start()
        yield emulator
    finally:
        await emulator.stop()


def firestore_client(host: str) -> firestore.AsyncClient:
    """A client of this emulator (the library reads FIRESTORE_EMULATOR_HOST when built)."""
    saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        return firestore.AsyncClient(project=FIREBASE_PROJECT)
    finally:
        if saved is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def server_logs() -> Iterator[Records]:
    """Records of the CRM's loggers and uvicorn's error logger (where a 500 would go)."""
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("xynergy.crm", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@contextlib.asynccontextmanager
async def crm_client(host: str, tenant: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = CrmSettings(
        project_id=FIREBASE_PROJECT,
        redis_url="",
        firestore_timeout_seconds=FIRESTORE_TIMEOUT,
        readiness_timeout_seconds=1.0,
        log_level="WARNING",
        access_log=False,
    )
    app = create_app(settings, internal_settings=INTERNAL, firestore_client=firestore_client(host))
    who = Identity(user_id="u-faults", tenant_id=tenant, roles=("admin",), source="jwt")
    signer = InternalIdentitySigner(INTERNAL)

    async def sign(request: httpx.Request) -> None:
        # signed per request, as the gateway does: the identity is short-lived
        request.headers[IDENTITY_HEADER] = signer.sign(who)

    async with (
        serve(app) as url,
        httpx.AsyncClient(
            base_url=url, event_hooks={"request": [sign]}, timeout=FIRESTORE_TIMEOUT * 10
        ) as http,
    ):
        yield http, app


BASE = "/api/v2/crm/contacts"


@dataclass
class Ledger:
    """What the CRM acknowledged and what it refused, to be checked after the restart."""

    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> acked body
    notes: dict[str, set[str]] = field(default_factory=dict)  # contact id -> acked note ids
    refused_creates: dict[str, str] = field(default_factory=dict)  # idempotency key -> email
    refused_notes: set[str] = field(default_factory=set)  # texts


async def acknowledged_writes(http: httpx.AsyncClient, ledger: Ledger, n: int, tag: str) -> None:
    for i in range(n):
        key = f"{tag}-{i}"
        body = {"name": f"Contact {key}", "email": f"{key}@faults.example"}
        r = await http.post(BASE, json=body, headers={"Idempotency-Key": key})
        assert r.status_code == 201, r.text
        made = r.json()
        r = await http.patch(
            f"{BASE}/{made['id']}", json={"company": f"Co {key}"}, headers={"If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
        ledger.contacts[made["id"]] = r.json()
        r = await http.post(f"{BASE}/{made['id']}/notes", json={"body": f"note {key}"})
        assert r.status_code == 201, r.text
        ledger.notes.setdefault(made["id"], set()).add(r.json()["id"])


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.request.method, r.request.url.path, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "message", "status"}, body
    assert body["error"] == "storage_unavailable"
    assert body["status"] == 503
    assert "Traceback" not in r.text
    assert 'File "' not in r.text
    assert int(r.headers["retry-after"]) >= 1


async def refused_writes(http: httpx.AsyncClient, ledger: Ledger, n: int, tag: str) -> None:
    """Writes and reads while Firestore is down, all at once: every one a clean 503."""
    some_id, some = next(iter(ledger.contacts.items()))
    calls = []
    for i in range(n):
        key = f"{tag}-refused-{i}"
        ledger.refused_creates[key] = f"{key}@faults.example"
        body = {"name": f"Refused {key}", "email": ledger.refused_creates[key]}
        calls.append(http.post(BASE, json=body, headers={"Idempotency-Key": key}))
        ledger.refused_notes.add(f"refused note {key}")
        calls.append(http.post(f"{BASE}/{some_id}/notes", json={"body": f"refused note {key}"}))
    version = f'"{some["version"]}"'
    calls += [
        http.patch(f"{BASE}/{some_id}", json={"company": "Refused"}, headers={"If-Match": version}),
        http.delete(f"{BASE}/{some_id}", headers={"If-Match": version}),
        http.get(f"{BASE}/{some_id}"),
        http.get(BASE),
    ]
    for r in await asyncio.gather(*calls):
        assert_unavailable(r)


async def every_contact(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        r = await http.get(BASE, params=params)
        assert r.status_code == 200, r.text
        out += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return out


async def check_ledger(http: httpx.AsyncClient, ledger: Ledger) -> None:
    """Every acknowledged write reads back; every refused one left nothing."""
    listed = {c["id"]: c for c in await every_contact(http)}
    assert set(listed) == set(ledger.contacts), "refused creates left contacts, or acked lost"
    refused_emails = set(ledger.refused_creates.values())
    assert not refused_emails & {c.get("email") for c in listed.values()}
    for cid, acked in ledger.contacts.items():
        r = await http.get(f"{BASE}/{cid}")
        assert r.status_code == 200, r.text
        assert r.json() == acked  # the refused PATCH and DELETE changed nothing
        r = await http.get(f"{BASE}/{cid}/notes", params={"limit": 100})
        assert r.status_code == 200, r.text
        notes = r.json()["items"]
        assert {n["id"] for n in notes} == ledger.notes[cid]
        assert not ledger.refused_notes & {n["body"] for n in notes}


async def retried_creates_happen_once(http: httpx.AsyncClient, ledger: Ledger) -> None:
    """The refused creates, retried with their keys: created once, then replayed."""
    for key, email in ledger.refused_creates.items():
        body = {"name": f"Refused {key}", "email": email}
        first = await http.post(BASE, json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 201, first.text
        again = await http.post(BASE, json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        ledger.contacts[first.json()["id"]] = first.json()
        ledger.notes[first.json()["id"]] = set()
    ledger.refused_creates.clear()  # acknowledged now


async def ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


@contextlib.asynccontextmanager
async def crm_on_its_own_emulator(
    workdir: Path, tenant: str
) -> AsyncIterator[tuple[RestartableFirestore, httpx.AsyncClient, Any]]:
    """An emulator of the test's own and a CRM on it, ready; a client as `tenant`, the app."""
    async with (
        restartable_firestore(workdir) as emulator,
        crm_client(emulator.host, tenant) as (http, app),
    ):
        await wait_for(lambda: ready(http), within=30, what="the CRM to reach Firestore")
        yield emulator, http, app


RESTARTS = [
    pytest.param(1, 3, id="ci"),
    pytest.param(3, 20, id="soak", marks=pytest.mark.soak),
]


@pytest.mark.parametrize(("restarts", "writes"), RESTARTS)
async def test_firestore_restart_gives_clean_503s_and_no_partial_writes(
    tmp_path: Path, restarts: int, writes: int
) -> None:
    tenant, ledger = f"t-faults-{uuid.uuid4().hex[:8]}", Ledger()
    async with crm_on_its_own_emulator(tmp_path, tenant) as (emulator, http, _):
        for n in range(restarts):
            await acknowledged_writes(http, ledger, writes, tag=f"r{n}")
            snapshot = await emulator.export()
            await emulator.stop()
            with server_logs() as logs:
                await refused_writes(http, ledger, writes, tag=f"r{n}")
                assert (await http.get("/readyz")).status_code == 503
            assert not [r for r in logs.records if r.exc_info], "a stack trace was logged"
            assert not [r for r in logs.records if r.levelno >= logging.ERROR and
                        r.name == "uvicorn.error"]  # fmt: skip
            await emulator.start(import_from=snapshot)
            await wait_for(lambda: ready(http), within=30, what="the CRM to reach Firestore again")
            await check_ledger(http, ledger)
            await retried_creates_happen_once(http, ledger)
        await check_ledger(http, ledger)


async def test_firestore_stall_gives_clean_503s_and_refused_writes_stay_refused(
    tmp_path: Path,
) -> None:
    tenant, ledger = f"t-stall-{uuid.uuid4().hex[:8]}", Ledger()
    async with crm_on_its_own_emulator(tmp_path, tenant) as (emulator, http, _):
        await acknowledged_writes(http, ledger, 2, tag="s")
        emulator.pause()
        try:
            with server_logs() as logs:
                await refused_writes(http, ledger, 3, tag="s")
        finally:
            emulator.resume()
        assert not [r for r in logs.records if r.exc_info], "a stack trace was logged"
        await wait_for(lambda: ready(http), within=30, what="the CRM to reach Firestore again")
        await check_ledger(http, ledger)
        await retried_creates_happen_once(http, ledger)
        await check_ledger(http, ledger)


async def test_a_transaction_begun_before_firestore_went_away_is_refused_within_its_deadline(
    tmp_path: Path,
) -> None:
    """Firestore dies between a transaction's begin and its reads (as when the emulator's java
    outlived gcloud at a stop and answered a begin). The request's deadline cancels it, and
    the client library then rolled the transaction back with the Rollback RPC's default
    retry: UNAVAILABLE retried for 60 s, which nothing cancelled, so the 503 came about a
    minute late (the CI flake: a client timeout of 50 s). The request now waits for the
    rollback at most `ROLLBACK_SECONDS` (it goes on in the background): the 503 comes well
    within a client timeout of 6 deadlines (30 s), and the refused write left nothing."""
    tenant, ledger = f"t-gone-{uuid.uuid4().hex[:8]}", Ledger()
    async with crm_on_its_own_emulator(tmp_path, tenant) as (emulator, http, app):
        await acknowledged_writes(http, ledger, 1, tag="g")
        snapshot = await emulator.export()
        (cid, acked), store = next(iter(ledger.contacts.items())), app.state.store
        transact, began = store._transact, []

        async def begin_then_die(body: Any) -> Any:
            async def then(transaction: Any) -> Any:
                began.append(transaction.in_progress)
                emulator.kill()
                return await body(transaction)

            return await transact(then)

        store._transact = begin_then_die
        with server_logs() as logs:
            r = await http.patch(
                f"{BASE}/{cid}",
                json={"company": "Refused"},
                headers={"If-Match": f'"{acked["version"]}"'},
                timeout=FIRESTORE_TIMEOUT * 6,
            )
        store._transact = transact
        assert began == [True]  # the transaction had begun when Firestore went away
        assert_unavailable(r)
        assert not [rec for rec in logs.records if rec.exc_info], "a stack trace was logged"
        await emulator.stop()
        await emulator.start(import_from=snapshot)
        await wait_for(lambda: ready(http), within=30, what="the CRM to reach Firestore again")
        await check_ledger(http, ledger)
