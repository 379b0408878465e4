"""The store under transaction contention, on an in-memory fake of Firestore's RPCs.

The fake (:class:`FakeFirestore`) stands behind a real ``firestore.AsyncClient``, so the
client library's transaction code runs as in production. Its transactions are optimistic: a
commit is ABORTED when a document the transaction read has been written since, or when the
test asks for aborts (``abort_commits``, ``abort_reads``), which is how Firestore (or its
emulator, after a lock timeout) answers contended transactions.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers, types

from services.crm import store as store_module
from services.crm.models import ContactCreate, NoteCreate
from services.crm.store import (
    ROLLBACK_SECONDS,
    CrmStore,
    IdempotencyConflictError,
    IdempotencyKey,
    KeyedLocks,
    NotFoundError,
    backoff_delay,
)

TENANT = "t-contention"
BASE, CAP, ATTEMPTS = 0.05, 2.0, 8


class FakeFirestore:
    """BeginTransaction, BatchGetDocuments, Commit and Rollback over a dict of documents."""

    def __init__(self) -> None:
        self.client: firestore.AsyncClient | None = None
        self.docs: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.open: dict[bytes, dict[str, int]] = {}  # transaction -> versions it read
        self.begins = 0
        self.max_open = 0
        self.abort_commits = 0
        self.abort_reads = 0
        self.unavailable_reads = 0
        self.fail_rollbacks = 0
        self.rollbacks_started = asyncio.Event()
        self.hold_rollbacks: asyncio.Event | None = None  # set: held rollbacks go on
        self._ids = itertools.count(1)

    def attach(self) -> firestore.AsyncClient:
        """A client of this fake (one per simulated process)."""
        client = firestore.AsyncClient(project="demo-fake", credentials=AnonymousCredentials())
        client._firestore_api_internal = self
        self.client = self.client or client
        return client

    def names(self, collection: str) -> list[str]:
        prefix = f"/documents/tenants/{TENANT}/{collection}/"
        return [n for n in self.docs if prefix in n]

    async def begin_transaction(self, request: Any, **_: Any) -> Any:
        await asyncio.sleep(0)  # every RPC lets the other tasks run, as a network call would
        tid = str(next(self._ids)).encode()
        self.open[tid] = {}
        self.begins += 1
        self.max_open = max(self.max_open, len(self.open))
        return types.BeginTransactionResponse(transaction=tid)

    async def batch_get_documents(self, request: Any, **_: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        if self.abort_reads:
            self.abort_reads -= 1
            raise gexc.Aborted("too much contention on these documents (fake)")
        if self.unavailable_reads:
            self.unavailable_reads -= 1
            raise gexc.ServiceUnavailable("failed to connect to all addresses (fake)")
        now = datetime.now(UTC)
        found = []
        for name in request["documents"]:
            if request.get("transaction"):
                self.open[request["transaction"]][name] = self.versions.get(name, 0)
            if name in self.docs:
                doc = types.Document(
                    name=name,
                    fields=_helpers.encode_dict(self.docs[name]),
                    create_time=now,
                    update_time=now,
                )
                found.append(types.BatchGetDocumentsResponse(found=doc, read_time=now))
            else:
                found.append(types.BatchGetDocumentsResponse(missing=name, read_time=now))

        async def stream() -> AsyncIterator[Any]:
            for response in found:
                yield response

        return stream()

    async def commit(self, request: Any, **_: Any) -> Any:
        await asyncio.sleep(0)
        read = self.open.pop(request["transaction"])
        if self.abort_commits:
            self.abort_commits -= 1
            raise gexc.Aborted("transaction lock timeout (fake)")
        if any(self.versions.get(name, 0) != seen for name, seen in read.items()):
            raise gexc.Aborted("a document this transaction read was written since (fake)")
        writes = list(request["writes"])
        for write in writes:
            name = write.update.name
            if write._pb.current_document.HasField("exists") and (
                write.current_document.exists != (name in self.docs)
            ):
                raise gexc.FailedPrecondition(f"precondition failed for {name}")
            data = cast(dict[str, Any], _helpers.decode_dict(write.update.fields, self.client))
            paths = list(write.update_mask.field_paths) if write._pb.HasField("update_mask") else []
            self.docs[name] = {**self.docs[name], **data} if paths else data
            self.versions[name] = self.versions.get(name, 0) + 1
        now = datetime.now(UTC)
        return types.CommitResponse(
            write_results=[types.WriteResult(update_time=now) for _ in writes], commit_time=now
        )

    async def rollback(self, request: Any, **_: Any) -> None:
        self.rollbacks_started.set()
        await asyncio.sleep(0)
        if self.hold_rollbacks is not None:  # Firestore away: no answer until it is back
            await self.hold_rollbacks.wait()
        self.open.pop(request["transaction"], None)
        if self.fail_rollbacks:
            self.fail_rollbacks -= 1
            raise gexc.InvalidArgument("transaction is no longer active (fake)")


class RecordedSleep:
    """The store's back-off: records each delay and only yields, so tests do not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def fake() -> FakeFirestore:
    return FakeFirestore()


@pytest.fixture
def slept() -> RecordedSleep:
    return RecordedSleep()


def make_store(fake: FakeFirestore, slept: RecordedSleep) -> CrmStore:
    return CrmStore(
        fake.attach(),
        idempotency_ttl=timedelta(hours=1),
        transaction_attempts=ATTEMPTS,
        backoff_base_seconds=BASE,
        backoff_cap_seconds=CAP,
        sleep=slept,
    )


@pytest.fixture
def store(fake: FakeFirestore, slept: RecordedSleep) -> CrmStore:
    return make_store(fake, slept)


def key(name: str = "create-grace-1", body: str = "Grace") -> IdempotencyKey:
    return IdempotencyKey.for_request(
        user_id="u-1", key=name, method="POST", path="/contacts", body={"name": body}
    )


async def create(store: CrmStore, idem: IdempotencyKey | None, name: str = "Grace") -> Any:
    fields = ContactCreate(name=name).model_dump()
    return await store.create_contact(TENANT, fields=fields, actor="u-1", idem=idem)


def contact_name(contact_id: str) -> str:
    return (
        f"projects/demo-fake/databases/(default)/documents/tenants/{TENANT}/contacts/{contact_id}"
    )


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    top = [backoff_delay(n, base=BASE, cap=CAP, rand=lambda: 1.0) for n in range(1, 9)]
    assert top == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff_delay(3, base=BASE, cap=CAP, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, base=BASE, cap=CAP, rand=lambda: 0.5) == pytest.approx(0.1)


async def test_a_create_aborted_more_often_than_the_library_retries_still_succeeds(
    store: CrmStore, fake: FakeFirestore, slept: RecordedSleep
) -> None:
    # The client library alone gives up after 5 attempts (a ValueError, which was a 500, or
    # on the emulator, 5 lock timeouts of 2 s each: past the 10 s deadline, a 503).
    fake.abort_commits = 6
    contact, replayed = await create(store, key())
    assert not replayed
    assert fake.begins == 7
    assert fake.names("contacts") == [contact_name(contact.id)]
    assert len(fake.names("idempotency")) == 1
    assert len(slept.delays) == 6
    for attempt, delay in enumerate(slept.delays, start=1):
        assert 0 <= delay <= min(CAP, BASE * 2 ** (attempt - 1))


async def test_an_aborted_read_is_retried_too(
    store: CrmStore, fake: FakeFirestore, slept: RecordedSleep
) -> None:
    fake.abort_reads = 2
    contact, replayed = await create(store, key())
    assert not replayed
    assert fake.names("contacts") == [contact_name(contact.id)]
    assert len(slept.delays) == 2


async def test_a_failed_rollback_of_an_aborted_transaction_is_still_contention(
    store: CrmStore, fake: FakeFirestore, slept: RecordedSleep
) -> None:
    fake.abort_commits = 2
    fake.fail_rollbacks = 2
    contact, replayed = await create(store, key())
    assert not replayed
    assert fake.names("contacts") == [contact_name(contact.id)]
    assert len(slept.delays) == 2


async def test_contention_that_never_ends_is_an_aborted_error_after_the_attempts(
    store: CrmStore, fake: FakeFirestore, slept: RecordedSleep
) -> None:
    # Aborted is a GoogleAPICallError: the API answers 503 with Retry-After, not a 500.
    fake.abort_commits = 1000
    with pytest.raises(gexc.Aborted):
        await create(store, key())
    assert fake.begins == ATTEMPTS
    assert len(slept.delays) == ATTEMPTS - 1
    assert fake.docs == {}


async def test_answers_that_are_not_contention_are_not_retried(
    store: CrmStore, fake: FakeFirestore, slept: RecordedSleep
) -> None:
    await create(store, key())
    fake.begins = 0
    with pytest.raises(IdempotencyConflictError):
        await create(store, key(body="Someone else"), name="Someone else")
    with pytest.raises(NotFoundError):
        await store.create_child(
            TENANT,
            "notes",
            contact_id="no-such-contact",
            fields=NoteCreate(body="hi").model_dump(),
            actor="u-1",
            idem=None,
        )
    assert fake.begins == 2
    assert slept.delays == []


async def test_concurrent_retries_of_one_key_run_one_at_a_time_in_the_process(
    store: CrmStore, fake: FakeFirestore, slept: RecordedSleep
) -> None:
    results = await asyncio.gather(*(create(store, key()) for _ in range(5)))
    assert len({contact.id for contact, _ in results}) == 1
    assert [replayed for _, replayed in results] == [False, True, True, True, True]
    # One transaction at a time, each committed at its first attempt: nothing to contend.
    assert fake.max_open == 1
    assert fake.begins == 5
    assert slept.delays == []
    assert len(fake.names("contacts")) == 1


async def test_different_keys_are_not_serialised(store: CrmStore, fake: FakeFirestore) -> None:
    results = await asyncio.gather(*(create(store, key(f"k-{i}")) for i in range(5)))
    assert len({contact.id for contact, _ in results}) == 5
    assert fake.max_open == 5
    assert len(fake.names("contacts")) == 5


async def test_retries_from_other_processes_still_make_one_record(
    fake: FakeFirestore, slept: RecordedSleep
) -> None:
    # Three processes (three stores: no lock in common) send the same request at once: their
    # transactions contend, the losers are aborted and retried, and they replay the winner.
    stores = [make_store(fake, slept) for _ in range(3)]
    results = await asyncio.gather(*(create(s, key()) for s in stores))
    assert len({contact.id for contact, _ in results}) == 1
    assert sorted(replayed for _, replayed in results) == [False, True, True]
    assert len(fake.names("contacts")) == 1
    assert len(fake.names("idempotency")) == 1
    assert slept.delays  # there was contention, and it was backed off


async def test_keyed_locks_hold_only_keys_in_use() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    a_entered = asyncio.Event()
    release_a = asyncio.Event()

    async def hold_a(tag: str) -> None:
        async with locks.hold("a"):
            inside.append(tag)
            a_entered.set()
            await release_a.wait()

    first = asyncio.create_task(hold_a("a1"))
    await a_entered.wait()
    second = asyncio.create_task(hold_a("a2"))
    async with locks.hold("b"):  # another key does not wait for "a"
        inside.append("b")
    assert inside == ["a1", "b"]
    assert len(locks) == 1
    release_a.set()
    await asyncio.gather(first, second)
    assert inside == ["a1", "b", "a2"]
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_no_lock_behind() -> None:
    locks = KeyedLocks()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            entered.set()
            await release.wait()

    queued = asyncio.Event()

    async def waiter() -> None:
        queued.set()  # nothing yields from here until it waits on the lock
        async with locks.hold("k"):
            pytest.fail("the waiter was cancelled before the lock was free")

    held = asyncio.create_task(holder())
    await entered.wait()
    waiting = asyncio.create_task(waiter())
    await queued.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await held
    assert len(locks) == 0


# -- rollbacks -----------------------------------------------------------------------------


async def patch_gone(store: CrmStore) -> Any:
    """A PATCH whose transaction had begun when Firestore went away: its read fails
    UNAVAILABLE, and the client library then rolls the transaction back. Bounded: a rollback
    that held the request (not through ``_Transaction._rollback``) fails the test, not hangs."""
    async with asyncio.timeout(ROLLBACK_SECONDS + 2):
        return await store.update_contact(
            TENANT, "c-gone", changes={"company": "Refused"}, expected_versions=None, actor="u-1"
        )


async def test_a_rollback_that_never_returns_does_not_hold_the_error_and_is_not_cancelled(
    store: CrmStore, fake: FakeFirestore, caplog: pytest.LogCaptureFixture
) -> None:
    """The Rollback never answers (Firestore away). ``async_transactional`` rolls back through
    ``_Transaction._rollback`` (were ``_rollback`` renamed in the library, its own rollback
    would wait here for ever: the timeout of ``patch_gone``), the read's own error comes out after
    ``ROLLBACK_SECONDS``, and the rollback goes on, held by the store: once Firestore answers
    it ends the transaction (its locks), where a cancelled one left them to Firestore's idle
    expiry and the client's retries of its 503 met them."""
    fake.hold_rollbacks = asyncio.Event()
    fake.unavailable_reads = 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(gexc.ServiceUnavailable, match="fake"):
            await patch_gone(store)
        assert ROLLBACK_SECONDS <= loop.time() - started < ROLLBACK_SECONDS + 1
        (rollback,) = store._rollbacks.running
        assert not rollback.done(), "the rollback was cancelled, or never left to run"
        assert len(fake.open) == 1, "Firestore still holds the transaction"
        assert "firestore rollback still running; the request goes on without it" in (
            caplog.messages
        )
        fake.hold_rollbacks.set()  # Firestore answers again
        await asyncio.wait({rollback}, timeout=5)
        assert rollback.done()
        assert not rollback.cancelled()
        assert rollback.exception() is None
        assert fake.open == {}, "the rollback reached Firestore: the transaction is over"
        assert len(store._rollbacks) == 0
    finally:
        fake.hold_rollbacks.set()
        await store.aclose()


async def test_a_request_cancelled_while_it_waits_for_its_rollback_leaves_it_running(
    store: CrmStore, fake: FakeFirestore
) -> None:
    """The request is cancelled (again) while it waits for the rollback: the request ends at
    once, and the rollback is not cancelled with it."""
    fake.hold_rollbacks = asyncio.Event()
    fake.unavailable_reads = 1
    try:
        request = asyncio.create_task(patch_gone(store))
        await fake.rollbacks_started.wait()
        request.cancel()
        async with asyncio.timeout(ROLLBACK_SECONDS / 2):
            with pytest.raises(asyncio.CancelledError):
                await request
        (rollback,) = store._rollbacks.running
        assert not rollback.done()
        fake.hold_rollbacks.set()
        await asyncio.wait({rollback}, timeout=5)
        assert rollback.done()
        assert not rollback.cancelled()
        assert fake.open == {}
    finally:
        fake.hold_rollbacks.set()
        await store.aclose()


async def test_a_rollback_left_running_is_bounded(
    store: CrmStore,
    fake: FakeFirestore,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "ROLLBACK_SECONDS", 0.05)
    monkeypatch.setattr(store_module, "ROLLBACK_LIMIT_SECONDS", 0.3)
    fake.hold_rollbacks = asyncio.Event()
    fake.unavailable_reads = 1
    try:
        with pytest.raises(gexc.ServiceUnavailable):
            await patch_gone(store)
        (rollback,) = store._rollbacks.running
        await asyncio.wait({rollback}, timeout=5)
        assert isinstance(rollback.exception(), TimeoutError)
        assert len(store._rollbacks) == 0
        assert [r for r in caplog.records if r.getMessage().startswith("firestore rollback failed")]
    finally:
        fake.hold_rollbacks.set()
        await store.aclose()


async def test_shutdown_cancels_a_rollback_that_never_returns(
    store: CrmStore, fake: FakeFirestore, caplog: pytest.LogCaptureFixture
) -> None:
    fake.hold_rollbacks = asyncio.Event()  # never set
    fake.unavailable_reads = 1
    with pytest.raises(gexc.ServiceUnavailable):
        await patch_gone(store)
    (rollback,) = store._rollbacks.running
    async with asyncio.timeout(ROLLBACK_SECONDS + 1):
        await store.aclose()  # ROLLBACK_SECONDS of grace, then cancelled
    assert rollback.cancelled()
    assert len(store._rollbacks) == 0
    assert "firestore rollbacks cancelled at shutdown" in caplog.messages
