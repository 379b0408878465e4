"""The CRM's storage on Firestore, and the only module that knows its layout.

Every document lives under its tenant::

    tenants/{tenant}/contacts/{id}          name, email, ..., deleted, version, search_keys
    tenants/{tenant}/interactions/{id}      contact_id, type, occurred_at, ...
    tenants/{tenant}/notes/{id}             contact_id, body
    tenants/{tenant}/tasks/{id}             contact_id, title, due_date (YYYY-MM-DD), status
    tenants/{tenant}/idempotency/{digest}   fingerprint, status, response, expires_at

Children are flat per tenant (not subcollections of a contact) so "tasks due" and the
statistics are plain queries inside one tenant's path, never collection-group queries that
could cross tenants. Every method takes the tenant first and builds every reference from it;
a document of another tenant is simply not on any path this module builds, so it reads as
missing (404). Writes that must agree run in one transaction: a create with its idempotency
record and the parent check, a patch with its version check. Composite indexes for every query
built here are declared in ``services/crm/firestore.indexes.json``.

Contention. Two transactions that read one document and then write it hold each other up
until Firestore aborts one or both (ABORTED; the emulator only after its 2 s lock timeout).
The client library retries at once, at most 5 times, so transactions that collided collide
again in lockstep, and gives up with a ``ValueError``. Every transaction here therefore runs
through :meth:`CrmStore._transact`: up to ``transaction_attempts`` attempts, each after a
jittered exponential back-off, then the last ``Aborted`` (503 with ``Retry-After``). Creates
with one idempotency key are also taken one at a time within the process (:class:`KeyedLocks`),
so concurrent retries of one request do not contend at all: the first writes the record, the
rest read it. Across processes the transaction alone keeps the record right.

Rollback. The client library rolls a failed transaction back on any exception, the request
deadline's cancellation included, with the Rollback RPC's default retry: UNAVAILABLE retried
for up to 60 s. Nothing cancels that rollback a second time, so a transaction that had begun
when Firestore went away held its request for about 60 s past the deadline (the CRM's 503
came a minute late, or a client gave up first). :class:`_Transaction` waits for a rollback
``ROLLBACK_SECONDS``; past that the request goes on with the transaction's own error while
the rollback carries on in the background (not cancelled: until it is done, or Firestore's
idle expiry drops the transaction, its locks stay and block a retry of the same writes),
held by the store (:class:`_Rollbacks`) for at most ``ROLLBACK_LIMIT_SECONDS``, and
ended at shutdown (:meth:`CrmStore.aclose`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, TypeVar, overload

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.async_query import AsyncQuery
from google.cloud.firestore_v1.async_transaction import AsyncTransaction
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel

from services.common.tenancy import valid_tenant_id
from services.crm.models import (
    CONTACT_STATUSES,
    Contact,
    Interaction,
    Note,
    Record,
    Statistics,
    Task,
    WeekCount,
    utcnow,
)
from services.crm.paging import Cursor, CursorError, normalise_search, search_keys
from services.crm.stats import week_counts, weeks_window

__all__ = [
    "ChildKind",
    "ContactFilters",
    "CrmStore",
    "IdempotencyConflictError",
    "IdempotencyKey",
    "KeyedLocks",
    "NotFoundError",
    "PreconditionFailedError",
]

ChildKind = Literal["interactions", "notes", "tasks"]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_ID_RE = re.compile(r"^(?!__.*__$)[A-Za-z0-9_-]{1,128}$")
_CHILD_MODELS: dict[str, type[Record]] = {
    "interactions": Interaction,
    "notes": Note,
    "tasks": Task,
}
_DELETE_BATCH = 400
# How long a request waits for its transaction's rollback before it goes on without it, and
# how long that rollback may go on in the background (see the module docstring).
ROLLBACK_SECONDS = 1.0
ROLLBACK_LIMIT_SECONDS = 60.0

log = logging.getLogger("xynergy.crm.store")


class NotFoundError(Exception):
    """No such document in this tenant (or it is soft-deleted, or belongs to another parent)."""


class PreconditionFailedError(Exception):
    """``If-Match`` named a version that is no longer current."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"current version is {current_version}")
        self.current_version = current_version


class IdempotencyConflictError(Exception):
    """An ``Idempotency-Key`` reused with a different request."""


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's key, scoped to the user who sent it, and a fingerprint of the request."""

    user_id: str
    key: str
    fingerprint: str

    @classmethod
    def for_request(
        cls, *, user_id: str, key: str, method: str, path: str, body: Any
    ) -> IdempotencyKey:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        fingerprint = hashlib.sha256(f"{method}\0{path}\0{canonical}".encode()).hexdigest()
        return cls(user_id=user_id, key=key, fingerprint=fingerprint)

    @property
    def doc_id(self) -> str:
        return hashlib.sha256(f"{self.user_id}\0{self.key}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ContactFilters:
    deleted: bool = False
    status: str | None = None
    tag: str | None = None
    company: str | None = None
    owner: str | None = None
    search: str | None = None


def _check_ids(*ids: str) -> None:
    for ident in ids:
        if not _ID_RE.match(ident):
            raise NotFoundError(ident)


def _contact_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """Fields derived from a contact for queries: sort key, company key, search prefixes."""
    return {
        "name_key": normalise_search(doc["name"]),
        "company_key": normalise_search(doc["company"]) if doc.get("company") else None,
        "search_keys": search_keys(name=doc["name"], email=doc.get("email")),
    }


def _to_store(values: dict[str, Any]) -> dict[str, Any]:
    """Firestore has no date type: dates are stored as sortable ``YYYY-MM-DD`` strings."""
    return {
        k: v.isoformat() if isinstance(v, date) and not isinstance(v, datetime) else v
        for k, v in values.items()
    }


def _model(cls: type[M], snap: DocumentSnapshot[Any]) -> M:
    return cls.model_validate({**(snap.to_dict() or {}), "id": snap.id})


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, ...): "full jitter", a uniform
    draw below ``base * 2**(attempt - 1)`` capped at ``cap``, so that transactions that
    aborted together do not all come back together."""
    return rand() * min(cap, base * 2.0 ** (attempt - 1))


def _aborted(exc: BaseException) -> gexc.Aborted | None:
    """The ABORTED behind ``exc``, if contention is what failed the attempt: raised by a read
    in the transaction, wrapped by the client library in a ``ValueError`` (its attempts were
    used up), or the context of an error from the rollback that followed."""
    seen: BaseException | None = exc
    for _ in range(3):
        if seen is None or isinstance(seen, gexc.Aborted):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Rollbacks:
    """The rollbacks of a store's transactions, each a task held here until it is done: a
    request waits ``ROLLBACK_SECONDS`` for its rollback, then goes on while the rollback
    carries on (a rollback cancelled or dropped would leave the transaction's locks in
    Firestore until its idle expiry). Each is bounded by ``ROLLBACK_LIMIT_SECONDS``;
    :meth:`aclose` ends those still running."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._running)

    @property
    def running(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._running)

    async def run(self, rollback: Coroutine[Any, Any, None]) -> None:
        """Run ``rollback`` and wait for it ``ROLLBACK_SECONDS``: its error, if it fails in
        that time (chained by the client library to the transaction's own); else return with
        it still running. A second cancellation of the waiting request does not cancel it."""
        task = asyncio.get_running_loop().create_task(self._bounded(rollback))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            await asyncio.wait({task}, timeout=ROLLBACK_SECONDS)
        finally:
            late = not task.done()
            task.add_done_callback(functools.partial(_settled, late=late))
            if late:
                log.warning(
                    "firestore rollback still running; the request goes on without it",
                    extra={"fields": {"after_seconds": ROLLBACK_SECONDS}},
                )
        if not late:
            task.result()

    @staticmethod
    async def _bounded(rollback: Coroutine[Any, Any, None]) -> None:
        async with asyncio.timeout(ROLLBACK_LIMIT_SECONDS):
            await rollback

    async def aclose(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the rollbacks still running, then cancel the rest
        and wait for them (the app's shutdown)."""
        running = set(self._running)
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "firestore rollbacks cancelled at shutdown",
                extra={"fields": {"count": len(pending)}},
            )
        await asyncio.gather(*running, return_exceptions=True)


def _settled(task: asyncio.Task[None], *, late: bool) -> None:
    """A rollback task's end: its outcome logged when its request no longer waited for it (the
    error is taken here either way, so none is reported as never retrieved)."""
    error = None if task.cancelled() else task.exception()
    if not late:
        return
    if task.cancelled():
        return  # said by aclose
    if error is None:
        log.info("firestore rollback finished after its request went on")
    else:
        log.warning(
            "firestore rollback failed after its request went on; the transaction's locks stay"
            " until Firestore expires it",
            extra={"fields": {"error": type(error).__name__}},
        )


class _Transaction(AsyncTransaction):
    """A transaction whose rollback a request waits for at most ``ROLLBACK_SECONDS``.

    ``firestore.async_transactional`` calls ``_rollback`` from ``except BaseException`` and
    then raises the transaction's own error; a rollback that fails within the bound raises as
    before (its error chained to that one), one that has not finished by then goes on in the
    background (``rollbacks``, not cancelled, so the transaction's locks are released as soon
    as Firestore answers) while the transaction's own error (the deadline's cancellation, an
    UNAVAILABLE) goes on at once."""

    def __init__(self, client: Any, *, rollbacks: _Rollbacks, max_attempts: int = 1) -> None:
        super().__init__(client, max_attempts=max_attempts)
        self._rollbacks = rollbacks

    async def _rollback(self, *args: Any, **kwargs: Any) -> None:
        await self._rollbacks.run(super()._rollback(*args, **kwargs))


@dataclass
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyedLocks:
    """One ``asyncio.Lock`` per key, kept only while a task holds or awaits it.

    Unrelated keys never wait for each other, and the table holds at most one entry per task
    inside :meth:`hold`, so it does not grow with the number of keys ever seen.
    """

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        held = self._held.setdefault(key, _Held())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._held[key]


class CrmStore:
    """Tenant-scoped reads and writes of the CRM's documents."""

    def __init__(
        self,
        client: firestore.AsyncClient,
        *,
        idempotency_ttl: timedelta,
        transaction_attempts: int = 8,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if transaction_attempts < 1:
            raise ValueError("transaction_attempts must be at least 1")
        self._db = client
        self._idempotency_ttl = idempotency_ttl
        self._attempts = transaction_attempts
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._sleep = sleep
        self._idempotency_locks = KeyedLocks()
        self._rollbacks = _Rollbacks()

    async def aclose(self) -> None:
        """The app's shutdown: rollbacks still running get ``ROLLBACK_SECONDS`` more, then
        are cancelled (their transactions' locks then stay until Firestore expires them)."""
        await self._rollbacks.aclose(grace=ROLLBACK_SECONDS)

    # -- layout --------------------------------------------------------------------------

    def _col(self, tenant: str, kind: str) -> Any:
        if not valid_tenant_id(tenant):
            raise NotFoundError(tenant)
        return self._db.collection("tenants", tenant, kind)

    async def ping(self) -> None:
        """One cheap read, to prove Firestore answers."""
        await self._db.collection("_health").document("ping").get()

    # -- transactions --------------------------------------------------------------------

    async def _transact(self, body: Callable[[AsyncTransaction], Awaitable[T]]) -> T:
        """Run ``body`` in a transaction; when Firestore aborts it (contention), back off and
        run it again in a new one, ``transaction_attempts`` times in all, then raise the last
        ``Aborted``. ``body`` must be safe to run again: it reads through the transaction."""
        run = firestore.async_transactional(body)
        attempt = 1
        while True:
            try:
                return await run(_Transaction(self._db, rollbacks=self._rollbacks))
            except (gexc.GoogleAPICallError, ValueError) as exc:
                aborted = _aborted(exc)
                if aborted is None or attempt >= self._attempts:
                    if aborted is None or aborted is exc:
                        raise
                    raise aborted from None
            await self._sleep(
                backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_cap)
            )
            attempt += 1

    # -- pagination ----------------------------------------------------------------------

    async def _page(
        self,
        query: AsyncQuery,
        *,
        order: str,
        fields: Sequence[tuple[str, str]],
        limit: int,
        cursor: str | None,
        build: Callable[[DocumentSnapshot[Any]], M],
    ) -> tuple[list[M], str | None]:
        """One page of ``query`` in a stable order: the sort fields, then the document id."""
        direction = fields[-1][1]
        for name, dirn in fields:
            query = query.order_by(name, direction=dirn)
        query = query.order_by("__name__", direction=direction)
        if cursor is not None:
            pos = Cursor.decode(cursor, order=order)
            if len(pos.values) != len(fields) or not _ID_RE.match(pos.id):
                raise CursorError("not a cursor returned by this API")
            at = {name: value for (name, _), value in zip(fields, pos.values, strict=True)}
            query = query.start_after({**at, "__name__": pos.id})
        snaps = [s async for s in query.limit(limit + 1).stream()]
        more = len(snaps) > limit
        snaps = snaps[:limit]
        next_cursor = None
        if more:
            last = snaps[-1].to_dict() or {}
            next_cursor = Cursor(
                order=order, values=tuple(last.get(name) for name, _ in fields), id=snaps[-1].id
            ).encode()
        return [build(s) for s in snaps], next_cursor

    # -- idempotent creates --------------------------------------------------------------

    async def _create(
        self,
        tenant: str,
        *,
        kind: str,
        data: dict[str, Any],
        model: type[M],
        idem: IdempotencyKey | None,
        parent_id: str | None = None,
    ) -> tuple[M, bool]:
        """Create a document; with a key, the first result is returned again on retries.

        Requests with one key run one at a time in this process (the others then find the
        record and replay it); the transaction keeps that right across processes too.
        """
        if idem is None:
            return await self._create_once(
                tenant, kind=kind, data=data, model=model, idem=None, parent_id=parent_id
            )
        async with self._idempotency_locks.hold(f"{tenant}/{idem.doc_id}"):
            return await self._create_once(
                tenant, kind=kind, data=data, model=model, idem=idem, parent_id=parent_id
            )

    async def _create_once(
        self,
        tenant: str,
        *,
        kind: str,
        data: dict[str, Any],
        model: type[M],
        idem: IdempotencyKey | None,
        parent_id: str | None,
    ) -> tuple[M, bool]:
        ref = self._col(tenant, kind).document()
        record = model.model_validate({**data, "id": ref.id})
        idem_ref = self._col(tenant, "idempotency").document(idem.doc_id) if idem else None
        parent_ref = self._col(tenant, "contacts").document(parent_id) if parent_id else None

        async def run(tx: AsyncTransaction) -> tuple[M, bool]:
            now = utcnow()
            if idem is not None and idem_ref is not None:
                seen = await idem_ref.get(transaction=tx)
                stored = seen.to_dict() if seen.exists else None
                if stored is not None and stored["expires_at"] > now:
                    if stored["fingerprint"] != idem.fingerprint:
                        raise IdempotencyConflictError(idem.key)
                    return model.model_validate_json(stored["response"]), True
            if parent_ref is not None:
                parent = await parent_ref.get(transaction=tx)
                if not parent.exists or (parent.to_dict() or {}).get("deleted"):
                    raise NotFoundError(parent_id)
            tx.create(ref, _to_store(data))
            if idem is not None and idem_ref is not None:
                tx.set(
                    idem_ref,
                    {
                        "fingerprint": idem.fingerprint,
                        "kind": kind,
                        "id": ref.id,
                        "response": record.model_dump_json(),
                        "created_at": now,
                        "expires_at": now + self._idempotency_ttl,
                    },
                )
            return record, False

        return await self._transact(run)

    def _stamp(self, actor: str) -> dict[str, Any]:
        now = utcnow()
        return {"version": 1, "created_at": now, "updated_at": now, "created_by": actor}

    # -- contacts ------------------------------------------------------------------------

    async def create_contact(
        self, tenant: str, *, fields: dict[str, Any], actor: str, idem: IdempotencyKey | None
    ) -> tuple[Contact, bool]:
        data = {
            **fields,
            **self._stamp(actor),
            "updated_by": actor,
            "deleted": False,
            "deleted_at": None,
        }
        data.update(_contact_keys(data))
        return await self._create(tenant, kind="contacts", data=data, model=Contact, idem=idem)

    async def get_contact(
        self, tenant: str, contact_id: str, *, include_deleted: bool = False
    ) -> Contact:
        _check_ids(contact_id)
        snap = await self._col(tenant, "contacts").document(contact_id).get()
        if not snap.exists:
            raise NotFoundError(contact_id)
        contact = _model(Contact, snap)
        if contact.deleted and not include_deleted:
            raise NotFoundError(contact_id)
        return contact

    async def list_contacts(
        self,
        tenant: str,
        *,
        filters: ContactFilters,
        order: Literal["created", "name"],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Contact], str | None]:
        q = self._col(tenant, "contacts").where(
            filter=FieldFilter("deleted", "==", filters.deleted)
        )
        if filters.status is not None:
            q = q.where(filter=FieldFilter("status", "==", filters.status))
        if filters.owner is not None:
            q = q.where(filter=FieldFilter("owner", "==", filters.owner))
        if filters.company is not None:
            q = q.where(filter=FieldFilter("company_key", "==", normalise_search(filters.company)))
        # Firestore allows one array-contains per query: the routes refuse tag with search.
        if filters.tag is not None:
            q = q.where(filter=FieldFilter("tags", "array_contains", filters.tag))
        if filters.search is not None:
            q = q.where(
                filter=FieldFilter(
                    "search_keys", "array_contains", normalise_search(filters.search)
                )
            )
        field = "created_at" if order == "created" else "name_key"
        return await self._page(
            q,
            order=order,
            fields=[(field, "ASCENDING")],
            limit=limit,
            cursor=cursor,
            build=lambda s: _model(Contact, s),
        )

    async def _mutate_contact(
        self,
        tenant: str,
        contact_id: str,
        *,
        change: Callable[[Contact], dict[str, Any] | None],
        expected_versions: frozenset[int] | None,
        actor: str,
        include_deleted: bool = False,
    ) -> tuple[Contact, bool]:
        """Read, check the version, apply ``change`` (None: nothing to do), write; one txn."""
        _check_ids(contact_id)
        ref = self._col(tenant, "contacts").document(contact_id)

        async def run(tx: AsyncTransaction) -> tuple[Contact, bool]:
            snap = await ref.get(transaction=tx)
            if not snap.exists:
                raise NotFoundError(contact_id)
            current = _model(Contact, snap)
            if current.deleted and not include_deleted:
                raise NotFoundError(contact_id)
            if expected_versions is not None and current.version not in expected_versions:
                raise PreconditionFailedError(current.version)
            updates = change(current)
            if updates is None:
                return current, False
            merged = {**current.model_dump(), **updates}
            if merged == current.model_dump():
                return current, False
            updates |= {"version": current.version + 1, "updated_at": utcnow(), "updated_by": actor}
            updates |= _contact_keys(merged)
            tx.update(ref, updates)
            return Contact.model_validate({**merged, **updates}), True

        return await self._transact(run)

    async def update_contact(
        self,
        tenant: str,
        contact_id: str,
        *,
        changes: dict[str, Any],
        expected_versions: frozenset[int] | None,
        actor: str,
    ) -> tuple[Contact, bool]:
        return await self._mutate_contact(
            tenant,
            contact_id,
            change=lambda _: dict(changes),
            expected_versions=expected_versions,
            actor=actor,
        )

    async def soft_delete_contact(
        self,
        tenant: str,
        contact_id: str,
        *,
        expected_versions: frozenset[int] | None,
        actor: str,
    ) -> tuple[Contact, bool]:
        return await self._mutate_contact(
            tenant,
            contact_id,
            change=lambda c: None if c.deleted else {"deleted": True, "deleted_at": utcnow()},
            expected_versions=expected_versions,
            actor=actor,
            include_deleted=True,
        )

    async def restore_contact(
        self, tenant: str, contact_id: str, *, actor: str
    ) -> tuple[Contact, bool]:
        return await self._mutate_contact(
            tenant,
            contact_id,
            change=lambda c: {"deleted": False, "deleted_at": None} if c.deleted else None,
            expected_versions=None,
            actor=actor,
            include_deleted=True,
        )

    async def purge_contact(self, tenant: str, contact_id: str, *, actor: str) -> None:
        """Hard delete: mark deleted (no new children from here on), drop children, then it."""
        await self.soft_delete_contact(tenant, contact_id, expected_versions=None, actor=actor)
        for kind in ("interactions", "notes", "tasks"):
            col = self._col(tenant, kind)
            while True:
                q = col.where(filter=FieldFilter("contact_id", "==", contact_id))
                refs = [s.reference async for s in q.select([]).limit(_DELETE_BATCH).stream()]
                if not refs:
                    break
                batch = self._db.batch()
                for r in refs:
                    batch.delete(r)
                await batch.commit()
        await self._col(tenant, "contacts").document(contact_id).delete()

    # -- interactions, notes, tasks ------------------------------------------------------

    async def create_child(
        self,
        tenant: str,
        kind: ChildKind,
        *,
        contact_id: str,
        fields: dict[str, Any],
        actor: str,
        idem: IdempotencyKey | None,
    ) -> tuple[Record, bool]:
        _check_ids(contact_id)
        data = {**fields, **self._stamp(actor), "contact_id": contact_id}
        return await self._create(
            tenant, kind=kind, data=data, model=_CHILD_MODELS[kind], idem=idem, parent_id=contact_id
        )

    async def _live_contact(self, tenant: str, contact_id: str) -> None:
        await self.get_contact(tenant, contact_id)

    async def get_child(
        self, tenant: str, kind: ChildKind, *, contact_id: str, child_id: str
    ) -> Record:
        _check_ids(contact_id, child_id)
        snap, _ = await asyncio.gather(
            self._col(tenant, kind).document(child_id).get(), self._live_contact(tenant, contact_id)
        )
        if not snap.exists or (snap.to_dict() or {}).get("contact_id") != contact_id:
            raise NotFoundError(child_id)
        return _model(_CHILD_MODELS[kind], snap)

    # One overload per kind, so that a caller gets its kind's model (a Page[Task] takes
    # list[Task]), as _CHILD_MODELS maps them.
    @overload
    async def list_children(
        self,
        tenant: str,
        kind: Literal["interactions"],
        *,
        contact_id: str,
        limit: int,
        cursor: str | None,
        equals: dict[str, str] | None = None,
    ) -> tuple[list[Interaction], str | None]: ...

    @overload
    async def list_children(
        self,
        tenant: str,
        kind: Literal["notes"],
        *,
        contact_id: str,
        limit: int,
        cursor: str | None,
        equals: dict[str, str] | None = None,
    ) -> tuple[list[Note], str | None]: ...

    @overload
    async def list_children(
        self,
        tenant: str,
        kind: Literal["tasks"],
        *,
        contact_id: str,
        limit: int,
        cursor: str | None,
        equals: dict[str, str] | None = None,
    ) -> tuple[list[Task], str | None]: ...

    async def list_children(
        self,
        tenant: str,
        kind: ChildKind,
        *,
        contact_id: str,
        limit: int,
        cursor: str | None,
        equals: dict[str, str] | None = None,
    ) -> tuple[Sequence[Record], str | None]:
        """A contact's interactions (newest first), notes (newest first) or tasks (oldest first)."""
        _check_ids(contact_id)
        await self._live_contact(tenant, contact_id)
        q = self._col(tenant, kind).where(filter=FieldFilter("contact_id", "==", contact_id))
        for name, value in (equals or {}).items():
            q = q.where(filter=FieldFilter(name, "==", value))
        fields = {
            "interactions": [("occurred_at", "DESCENDING")],
            "notes": [("created_at", "DESCENDING")],
            "tasks": [("created_at", "ASCENDING")],
        }[kind]
        model = _CHILD_MODELS[kind]
        return await self._page(
            q,
            order=kind,
            fields=fields,
            limit=limit,
            cursor=cursor,
            build=lambda s: _model(model, s),
        )

    async def delete_child(
        self, tenant: str, kind: ChildKind, *, contact_id: str, child_id: str
    ) -> None:
        await self.get_child(tenant, kind, contact_id=contact_id, child_id=child_id)
        await self._col(tenant, kind).document(child_id).delete()

    async def update_task(
        self,
        tenant: str,
        *,
        contact_id: str,
        task_id: str,
        changes: dict[str, Any],
        expected_versions: frozenset[int] | None,
        actor: str,
    ) -> tuple[Task, bool]:
        _check_ids(contact_id, task_id)
        contact_ref = self._col(tenant, "contacts").document(contact_id)
        ref = self._col(tenant, "tasks").document(task_id)

        async def run(tx: AsyncTransaction) -> tuple[Task, bool]:
            contact = await contact_ref.get(transaction=tx)
            snap = await ref.get(transaction=tx)
            if not contact.exists or (contact.to_dict() or {}).get("deleted"):
                raise NotFoundError(contact_id)
            if not snap.exists or (snap.to_dict() or {}).get("contact_id") != contact_id:
                raise NotFoundError(task_id)
            current = _model(Task, snap)
            if expected_versions is not None and current.version not in expected_versions:
                raise PreconditionFailedError(current.version)
            merged = {**current.model_dump(), **changes}
            if merged == current.model_dump():
                return current, False
            updates = {
                **changes,
                "version": current.version + 1,
                "updated_at": utcnow(),
                "updated_by": actor,
            }
            tx.update(ref, _to_store(updates))
            return Task.model_validate({**merged, **updates}), True

        return await self._transact(run)

    async def _deleted_contact_ids(self, tenant: str) -> set[str]:
        q = self._col(tenant, "contacts").where(filter=FieldFilter("deleted", "==", True))
        return {s.id async for s in q.select([]).stream()}

    async def tasks_due(
        self,
        tenant: str,
        *,
        before: date,
        assignee: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Task], str | None]:
        """Open tasks due on or before ``before`` across live contacts, soonest first."""
        q = (
            self._col(tenant, "tasks")
            .where(filter=FieldFilter("status", "==", "open"))
            .where(filter=FieldFilter("due_date", "<=", before.isoformat()))
        )
        if assignee is not None:
            q = q.where(filter=FieldFilter("assignee", "==", assignee))
        deleted, (tasks, next_cursor) = await asyncio.gather(
            self._deleted_contact_ids(tenant),
            self._page(
                q,
                order="due",
                fields=[("due_date", "ASCENDING")],
                limit=limit,
                cursor=cursor,
                build=lambda s: _model(Task, s),
            ),
        )
        # A soft-deleted contact's tasks stay stored (restore brings them back) but are not due;
        # such a page can be shorter than ``limit`` while the cursor still goes on.
        return [t for t in tasks if t.contact_id not in deleted], next_cursor

    # -- statistics ----------------------------------------------------------------------

    async def _count(self, query: AsyncQuery) -> int:
        aggregation: Any = query.count(alias="n")
        result = await aggregation.get()
        return int(result[0][0].value)

    async def statistics(self, tenant: str, *, as_of: date, weeks: int) -> Statistics:
        contacts = self._col(tenant, "contacts")
        live = contacts.where(filter=FieldFilter("deleted", "==", False))
        start, end = weeks_window(as_of=as_of, weeks=weeks)
        interactions = (
            self._col(tenant, "interactions")
            .where(filter=FieldFilter("occurred_at", ">=", start))
            .where(filter=FieldFilter("occurred_at", "<", end))
            .select(["occurred_at", "contact_id"])
        )
        open_tasks = (
            self._col(tenant, "tasks")
            .where(filter=FieldFilter("status", "==", "open"))
            .select(["due_date", "contact_id"])
        )

        async def rows(query: AsyncQuery) -> list[dict[str, Any]]:
            return [s.to_dict() or {} async for s in query.stream()]

        jobs: list[Awaitable[Any]] = [
            self._count(live.where(filter=FieldFilter("status", "==", s))) for s in CONTACT_STATUSES
        ]
        jobs += [
            self._deleted_contact_ids(tenant),
            rows(live.select(["tags"])),
            rows(interactions),
            rows(open_tasks),
        ]
        *by_status, deleted, tag_rows, interaction_rows, task_rows = await asyncio.gather(*jobs)
        tags: Counter[str] = Counter(t for row in tag_rows for t in row.get("tags") or [])
        stamps = [r["occurred_at"] for r in interaction_rows if r.get("contact_id") not in deleted]
        tasks = [r for r in task_rows if r.get("contact_id") not in deleted]
        today = as_of.isoformat()
        return Statistics(
            as_of=as_of,
            contacts_total=sum(by_status),
            contacts_deleted=len(deleted),
            contacts_by_status=dict(zip(CONTACT_STATUSES, by_status, strict=True)),
            contacts_by_tag=dict(sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))),
            interactions_per_week=[
                WeekCount(week_start=w, count=n)
                for w, n in week_counts(stamps, as_of=as_of, weeks=weeks)
            ],
            open_tasks=len(tasks),
            overdue_tasks=sum(1 for t in tasks if t.get("due_date") and t["due_date"] < today),
        )
