"""The Secrets of one OAuthConnection, read and written through the Kubernetes API.

Three Secrets matter: the client's (`spec.clientSecretRef`, read only), the tokens
(`spec.tokenSecretName`) and the pending authorization (`authorization_secret_name`), the last
two owned by the OAuthConnection. A Secret is the connection's only when its controller
ownerReference carries the connection's UID: one of that name that is not (another connection's
tokens, a user's own Secret) is never read as tokens, replaced or deleted, and the connection
stalls naming it. A refresh is single-flight across operator replicas: the
replica that wants to refresh first *claims* the token Secret with an annotation written under
its resourceVersion, so of two replicas only one write succeeds (the other gets 409 and
re-reads); the claim expires, so a replica that dies while holding it blocks nobody for long.
A replica holding refreshed tokens it could not write keeps its claim renewed (`hold_claim`)
and marks the Secret (`UNSTORED_ANNOTATION`): the stored refresh token was spent, so no one
else may refresh with it while the holder lives, and one who finds the mark after the holder
is gone knows why a rotating provider refuses it. Token writes are merge patches of the token
keys and the operator's own labels and annotations: what a reader (`refresh-requested`) or a
user put on the Secret stays. A token Secret deleted while refreshed tokens wait for their
write is created again with them (`store_refreshed`), as held tokens of a code exchange are
(`write` with no previous Secret); refreshed tokens are only ever patched into the Secret
just read through the owner check, named by its UID, so one made again under that name by
someone else meanwhile never receives them. A delete that a read decided (dead tokens, a
leftover authorization), and the emptying of a refused user token, are made only as that read
saw the Secret (DeleteOptions preconditions, `delete_unchanged`; a resourceVersion,
`drop_user_token`, as the write of a held user token beside older bot tokens is,
`store_user_token`): what another writer stored meanwhile survives, and the caller reads
again; such a write removes the claim and the unstored mark only when the claim it read is
the caller's, never another replica's.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType
from pydantic import SecretStr

from apis.v1alpha1.common import API_VERSION
from apis.v1alpha1.oauthconnection import (
    CLIENT_SECRET_LABEL,
    CONNECTION_LABEL,
    PROVIDER_LABEL,
    SECRET_ROLE_LABEL,
    TENANT_LABEL,
    TOKEN_KEYS,
    USER_TOKEN_KEYS,
    OAuthConnection,
    authorization_secret_name,
)
from controllers.core.errors import StalledError, TransientError
from controllers.providers.oauth import ClientCredentials

__all__ = ["CLAIM_ANNOTATION", "UNSTORED_ANNOTATION", "ClientSecret", "SecretData", "SecretStore"]

log = logging.getLogger(__name__)

CLAIM_ANNOTATION = "xynergy.io/refresh-claim"
"""`<holder> <until RFC 3339>`: the replica refreshing the connection's tokens."""
UNSTORED_ANNOTATION = "xynergy.io/tokens-not-stored"
"""`<RFC 3339>`: when the claim's holder refreshed tokens it holds in memory, not written yet
(never a token). Dropped by the write of those tokens, or of any newer ones."""
DeletePreconditioned = Callable[..., Awaitable[None]]
"""`(name, *, namespace, uid, resource_version)`: a Secret's DELETE with preconditions."""
_OURS_DROPPED = {CLAIM_ANNOTATION: None, UNSTORED_ANNOTATION: None}
"""The operator's annotations a token write removes: the tokens it was about are stored."""


@dataclass(frozen=True, repr=False)
class SecretData:
    """A Secret's decoded data, its resourceVersion and annotations. `repr` shows keys only."""

    data: Mapping[str, str]
    resource_version: str | None
    annotations: Mapping[str, str]
    owner_uid: str | None = None
    """The UID of the Secret's controller ownerReference (None: no controller)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    """The Secret's own UID: a Secret deleted and made again under the same name has
    another (`store_refreshed` patches only the one it read)."""

    def __repr__(self) -> str:
        return f"SecretData(keys={sorted(self.data)}, resource_version={self.resource_version!r})"

    def get(self, key: str) -> str:
        return self.data.get(key, "")


@dataclass(frozen=True)
class ClientSecret:
    """The OAuth client of `spec.clientSecretRef` and the resourceVersion it was read at (a
    refused client is remembered by that version, never by a value)."""

    credentials: ClientCredentials
    resource_version: str


def _decode(obj: Any) -> SecretData:
    raw = obj.data or {}
    meta = obj.metadata
    controller = [ref.uid for ref in meta.ownerReferences or () if ref.controller]
    return SecretData(
        data={k: base64.b64decode(v).decode() for k, v in raw.items()},
        resource_version=meta.resourceVersion,
        annotations=dict(meta.annotations or {}),
        owner_uid=controller[0] if controller else None,
        labels=dict(meta.labels or {}),
        uid=meta.uid,
    )


def _ours(conn: OAuthConnection, secret: SecretData) -> bool:
    return secret.owner_uid is not None and secret.owner_uid == str(conn.metadata.uid)


def _owner(conn: OAuthConnection) -> OwnerReference:
    return OwnerReference(
        apiVersion=API_VERSION,
        kind="OAuthConnection",
        name=str(conn.metadata.name),
        uid=str(conn.metadata.uid),
        controller=True,
        blockOwnerDeletion=True,
    )


def _ns(conn: OAuthConnection) -> str:
    return conn.metadata.namespace or "default"


def _error(exc: ApiError, what: str) -> StalledError | TransientError:
    """`what` failed, with the apiserver's answer: "writing Secret x failed: <answer>"."""
    code = exc.status.code or 0
    message = f"{what} failed: {exc.status.message or code}"
    if code in (400, 403, 422):
        return StalledError(message, reason="Forbidden" if code == 403 else "ApiRejected")
    return TransientError(message, reason="ApiUnavailable")


class SecretStore:
    """Reads and writes one connection's Secrets; every call under the shared API limit."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        limit: asyncio.Semaphore | None = None,
        missing_client: Callable[[str, str], None] | None = None,
        delete_preconditioned: DeletePreconditioned | None = None,
    ) -> None:
        self._client = client
        self._limit = limit or asyncio.Semaphore(32)
        self._missing_client = missing_client
        """Told (namespace, name) of a client Secret found missing: it cannot carry the
        watched label yet, so the operator watches for its creation (clients.py)."""
        self._delete_preconditioned = delete_preconditioned or functools.partial(
            _delete_preconditioned, client
        )
        """A Secret's DELETE with preconditions (`delete_unchanged`); lightkube's by default,
        the test apiserver's in unit tests."""

    async def read(self, conn: OAuthConnection, name: str) -> SecretData | None:
        try:
            async with self._limit:
                obj = await self._client.get(Secret, name, namespace=_ns(conn))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise _error(exc, f"reading Secret {name}") from None
        return _decode(obj)

    async def client_credentials(self, conn: OAuthConnection) -> ClientCredentials:
        """The client id and secret of `spec.clientSecretRef` (`client`)."""
        return (await self.client(conn)).credentials

    async def client(self, conn: OAuthConnection) -> ClientSecret:
        """The client id and secret of `spec.clientSecretRef` and the Secret's
        resourceVersion; the Secret is labelled `xynergy.io/oauth-client=true` (once) so the
        operator's watch sees it change (the version is the labelled one's)."""
        ref = conn.spec.client_secret_ref
        secret = await self.read(conn, ref.name)
        if secret is None:
            if self._missing_client is not None:
                self._missing_client(_ns(conn), ref.name)
            raise StalledError(
                f"spec.clientSecretRef: Secret {ref.name} not found", reason="ClientSecretMissing"
            )
        if secret.labels.get(CLIENT_SECRET_LABEL) != "true":
            secret = await self._label_client(conn, ref.name) or secret
        for key in (ref.client_id_key, ref.client_secret_key):
            if not secret.get(key):
                raise StalledError(
                    f"spec.clientSecretRef: Secret {ref.name} has no key {key}",
                    reason="ClientSecretMissing",
                )
        creds = ClientCredentials(
            secret.get(ref.client_id_key), SecretStr(secret.get(ref.client_secret_key))
        )
        return ClientSecret(creds, secret.resource_version or "")

    async def _label_client(self, conn: OAuthConnection, name: str) -> SecretData | None:
        """A merge patch of that one label (nothing else of the user's Secret is touched):
        the labelled Secret, as the apiserver answered (data and resourceVersion of one
        version). One we may not patch is logged and left (its changes are then seen at
        resync): None."""
        patch = {"metadata": {"labels": {CLIENT_SECRET_LABEL: "true"}}}
        try:
            async with self._limit:
                obj = await self._client.patch(
                    Secret, name, patch, namespace=_ns(conn), patch_type=PatchType.MERGE
                )
        except ApiError as exc:
            if exc.status.code not in (403, 404):
                raise _error(exc, f"labelling Secret {name}") from None
            log.info("not labelling client Secret %s/%s: %s", _ns(conn), name, exc)
            return None
        return _decode(obj)

    async def owned(self, conn: OAuthConnection, name: str) -> SecretData | None:
        """Secret `name` when this connection owns it (its controller ownerReference carries
        the connection's UID); None when it is missing or someone else's."""
        secret = await self.read(conn, name)
        return secret if secret is not None and _ours(conn, secret) else None

    async def holds_tokens(self, conn: OAuthConnection) -> bool:
        """Whether the token Secret is this connection's and holds an access token (a read
        only: a deletion with bad settings lets go when there is nothing to revoke)."""
        data = await self.owned(conn, conn.spec.token_secret_name)
        return data is not None and bool(data.get("access_token"))

    async def tokens(self, conn: OAuthConnection) -> SecretData | None:
        """The token Secret (None: not made yet). A Secret of that name the connection does
        not own (another connection's tokens, a user's Secret) is never read as tokens."""
        name = conn.spec.token_secret_name
        return await self._ours_or_stall(conn, name, f"spec.tokenSecretName: Secret {name}")

    async def authorization(self, conn: OAuthConnection) -> SecretData | None:
        name = authorization_secret_name(str(conn.metadata.name))
        return await self._ours_or_stall(conn, name, f"the authorization Secret {name}")

    async def _ours_or_stall(
        self, conn: OAuthConnection, name: str, what: str
    ) -> SecretData | None:
        secret = await self.read(conn, name)
        if secret is None or _ours(conn, secret):
            return secret
        raise StalledError(
            f"{what} exists and is not owned by this OAuthConnection; the operator neither "
            "reads, writes nor deletes it (rename or delete that Secret, or name another)",
            reason="SecretNotOwned",
        )

    async def write(
        self,
        conn: OAuthConnection,
        *,
        role: str,
        data: Mapping[str, str],
        previous: SecretData | None,
    ) -> None:
        """Create (`previous` None) or update the connection's `role` Secret ("tokens" or
        "authorization") to hold `data`, under `previous`'s resourceVersion (read through
        `tokens`/`authorization`, so ours): a Secret changed or replaced meanwhile is a
        conflict, never overwritten. The authorization Secret is replaced with exactly `data`;
        the token Secret gets a merge patch of the token keys (one of TOKEN_KEYS or
        USER_TOKEN_KEYS that `data` lacks is removed), the operator's labels and the drop of
        its annotations (`_OURS_DROPPED`), so a reader's or a user's annotation or label
        stays."""
        name = (
            conn.spec.token_secret_name
            if role == "tokens"
            else authorization_secret_name(str(conn.metadata.name))
        )
        labels = {CONNECTION_LABEL: str(conn.metadata.name), SECRET_ROLE_LABEL: role}
        labels |= {TENANT_LABEL: conn.spec.tenant, PROVIDER_LABEL: str(conn.spec.provider)}
        secret = Secret(
            metadata=ObjectMeta(
                name=name,
                namespace=_ns(conn),
                labels=labels,
                ownerReferences=[_owner(conn)],
                resourceVersion=previous.resource_version if previous is not None else None,
            ),
            type="Opaque",
            stringData=dict(data),
        )
        try:
            async with self._limit:
                if previous is None:
                    await self._client.create(secret)
                elif role == "tokens":
                    await self._client.patch(
                        Secret,
                        name,
                        _token_patch(data, previous, labels),
                        namespace=_ns(conn),
                        patch_type=PatchType.MERGE,
                    )
                else:
                    await self._client.replace(secret)
        except ApiError as exc:
            if exc.status.code == 409:
                raise TransientError(
                    f"Secret {name} changed meanwhile", reason="Conflict"
                ) from None
            raise _error(exc, f"writing Secret {name}") from None

    async def delete(self, conn: OAuthConnection, name: str) -> None:
        """Delete Secret `name` when this connection owns it (else leave it alone), whatever
        it holds now: for Secrets nothing else decided on (a deletion, a used-up code); a
        delete that a read decided is `delete_unchanged`'s."""
        if await self.owned(conn, name) is None:
            return
        try:
            async with self._limit:
                await self._client.delete(Secret, name, namespace=_ns(conn))
        except ApiError as exc:
            if exc.status.code != 404:
                raise _error(exc, f"deleting Secret {name}") from None

    async def delete_unchanged(
        self, conn: OAuthConnection, name: str, read: SecretData | None
    ) -> bool:
        """Delete Secret `name` only as it was `read` (through the owner check): DeleteOptions
        preconditions with its UID and resourceVersion, so a Secret written since (tokens
        another replica stored, a code the gateway's callback put in) or made again under
        that name is not deleted. lightkube's `delete` sends no preconditions, hence the
        request of our own (`_delete_preconditioned`). False when the apiserver refuses it
        (409: changed meanwhile; the caller reads again and decides anew); True when deleted,
        already gone, or `read` None (nothing was there to decide on: nothing deleted)."""
        if read is None:
            return True
        try:
            async with self._limit:
                await self._delete_preconditioned(
                    name, namespace=_ns(conn), uid=read.uid, resource_version=read.resource_version
                )
        except ApiError as exc:
            if exc.status.code == 409:
                log.info("Secret %s/%s changed since it was read: not deleting it", _ns(conn), name)
                return False
            if exc.status.code != 404:
                raise _error(exc, f"deleting Secret {name}") from None
        return True

    async def claim(
        self,
        conn: OAuthConnection,
        tokens: SecretData,
        *,
        holder: str,
        until: dt.datetime,
        now: dt.datetime,
        unstored: str | None = None,
    ) -> SecretData | None:
        """Claim the refresh of `tokens` (as read) for `holder` until `until`; None when
        another replica holds a claim unexpired at `now` or changed the Secret since it was
        read. `unstored` (a time) also sets UNSTORED_ANNOTATION, in the same write."""
        if _claimed_by_another(tokens, holder, now):
            return None
        annotations = {CLAIM_ANNOTATION: f"{holder} {until.isoformat().replace('+00:00', 'Z')}"}
        if unstored is not None:
            annotations[UNSTORED_ANNOTATION] = unstored
        patch = {
            "metadata": {"resourceVersion": tokens.resource_version, "annotations": annotations}
        }
        try:
            async with self._limit:
                obj = await self._client.patch(
                    Secret,
                    conn.spec.token_secret_name,
                    patch,
                    namespace=_ns(conn),
                    patch_type=PatchType.MERGE,
                )
        except ApiError as exc:
            if exc.status.code in (404, 409):
                return None
            raise _error(exc, f"claiming Secret {conn.spec.token_secret_name}") from None
        return _decode(obj)

    async def hold_claim(
        self,
        conn: OAuthConnection,
        *,
        holder: str,
        lasting: dt.timedelta,
        clock: Callable[[], dt.datetime],
        unstored: str,
    ) -> bool:
        """Renew `holder`'s claim for `lasting` from its write (`clock` read after the Secret
        is) and mark the Secret UNSTORED_ANNOTATION (refreshed tokens held in memory): a
        claim-only write, so a refused write of the tokens does not leave the claim to lapse
        while the refresh token they replace is spent. Re-read on a conflict (a reader's
        annotation); False when the Secret is gone or another replica holds an unexpired
        claim (ours lapsed)."""
        for _ in range(3):
            tokens = await self.tokens(conn)
            now = clock()
            if tokens is None or _claimed_by_another(tokens, holder, now):
                return False
            claimed = await self.claim(
                conn, tokens, holder=holder, until=now + lasting, now=now, unstored=unstored
            )
            if claimed is not None:
                return True
        return False

    async def store_refreshed(self, conn: OAuthConnection, data: Mapping[str, str]) -> None:
        """Write refreshed tokens and drop the claim and the unstored mark: a merge patch
        without a resourceVersion (the claim keeps other replicas off, and a reader's
        annotation written meanwhile must not make us lose tokens the provider may not issue
        again) but with the UID of the token Secret just read through `tokens`, so it lands
        only on that Secret, this connection's: one deleted and made again meanwhile under
        the same name (by a user, or by another connection naming the same Secret) has
        another UID, the apiserver refuses the patch, and the retry reads again (a foreign
        Secret then stalls SecretNotOwned instead of receiving our tokens). A token Secret
        deleted since it was read (by a user, while the tokens were held in memory) is
        created again with them, owned and labelled as `write` creates it: they are the
        newest tokens, and the refresh token the deleted Secret held may be spent, so there
        is nothing else to go back to; a create that finds the name taken (409) is retried
        the same way, through the owner check, never patched blind."""
        name = conn.spec.token_secret_name
        current = await self.tokens(conn)
        if current is None:
            log.info(
                "token Secret %s/%s is gone: creating it with the refreshed tokens",
                _ns(conn),
                name,
            )
            await self.write(conn, role="tokens", data=data, previous=None)
            return
        patch = {
            "metadata": {"uid": current.uid, "annotations": dict(_OURS_DROPPED)},
            "stringData": dict(data),
        }
        try:
            async with self._limit:
                await self._client.patch(
                    Secret, name, patch, namespace=_ns(conn), patch_type=PatchType.MERGE
                )
        except ApiError as exc:
            if exc.status.code == 404 or _uid_refused(exc):
                raise TransientError(
                    f"Secret {name} was deleted or replaced meanwhile", reason="Conflict"
                ) from None
            raise _error(exc, f"writing Secret {name}") from None

    async def drop_user_token(
        self, conn: OAuthConnection, read: SecretData, *, holder: str | None
    ) -> bool:
        """Empty the user token's keys (USER_TOKEN_KEYS) of the token Secret as it was
        `read`: a merge patch under its UID and resourceVersion, as no new token rides on it
        (a conflict loses nothing). The claim and the unstored mark go with it only when the
        claim `read` holds is `holder`'s (`_ours_dropped`); None leaves every annotation
        alone (the caller's claim already went with its token write). False when the Secret
        changed, was deleted or replaced since (the caller reads again)."""
        empty = dict.fromkeys(USER_TOKEN_KEYS, "")
        written = await self._user_keys(conn, read, empty, holder=holder, what="emptying")
        return written is not None

    async def store_user_token(
        self, conn: OAuthConnection, read: SecretData, data: Mapping[str, str], *, holder: str
    ) -> SecretData | None:
        """Write Slack's user token alone (`data`: the USER_TOKEN_KEYS) into the token Secret
        as it was `read`, under its UID and resourceVersion, the other keys left as they are:
        held user tokens newer than the Secret's, beside bot tokens older than its own. The
        claim and the unstored mark go only when the claim `read` holds is `holder`'s. The
        Secret as written; None when it changed, was deleted or replaced since (the caller
        reads again and decides anew)."""
        return await self._user_keys(conn, read, data, holder=holder, what="writing")

    async def _user_keys(
        self,
        conn: OAuthConnection,
        read: SecretData,
        data: Mapping[str, str],
        *,
        holder: str | None,
        what: str,
    ) -> SecretData | None:
        name = conn.spec.token_secret_name
        meta: dict[str, Any] = {"uid": read.uid, "resourceVersion": read.resource_version}
        if dropped := _ours_dropped(read, holder):
            meta["annotations"] = dropped
        patch = {"metadata": meta, "stringData": {k: data[k] for k in USER_TOKEN_KEYS}}
        try:
            async with self._limit:
                obj = await self._client.patch(
                    Secret, name, patch, namespace=_ns(conn), patch_type=PatchType.MERGE
                )
        except ApiError as exc:
            if exc.status.code in (404, 409) or _uid_refused(exc):
                log.info(
                    "Secret %s/%s changed since it was read: not %s its user token",
                    _ns(conn),
                    name,
                    what,
                )
                return None
            raise _error(exc, f"writing Secret {name}") from None
        return _decode(obj)

    async def release_claim(self, conn: OAuthConnection) -> None:
        await self._patch(conn, {"metadata": {"annotations": {CLAIM_ANNOTATION: None}}})

    async def _patch(self, conn: OAuthConnection, patch: dict[str, Any]) -> None:
        name = conn.spec.token_secret_name
        try:
            async with self._limit:
                await self._client.patch(
                    Secret, name, patch, namespace=_ns(conn), patch_type=PatchType.MERGE
                )
        except ApiError as exc:
            raise _error(exc, f"writing Secret {name}") from None


async def _delete_preconditioned(
    client: AsyncClient,
    name: str,
    *,
    namespace: str,
    uid: str | None,
    resource_version: str | None,
) -> None:
    """DELETE Secret `name` with DeleteOptions `preconditions` (uid, resourceVersion): the
    apiserver answers 409 Conflict when the stored Secret has another. lightkube's
    `AsyncClient.delete` sends no body, so the request is built by lightkube's own generic
    client (as its `AsyncClient.log` does) with DeleteOptions as the body; errors are
    lightkube's ApiError, as from any of its calls."""
    generic = client._client
    request = generic.prepare_request("delete", Secret, name=name, namespace=namespace)
    preconditions = {"uid": uid, "resourceVersion": resource_version}
    request.data = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {k: v for k, v in preconditions.items() if v is not None},
    }
    outgoing = generic.build_adapter_request(request)
    response = await generic.send(outgoing)  # type: ignore[no-untyped-call]  # unannotated there
    generic.handle_response("delete", response, request)


def _claimed_by_another(tokens: SecretData, holder: str, now: dt.datetime) -> bool:
    other, _, expiry = tokens.annotations.get(CLAIM_ANNOTATION, "").partition(" ")
    return bool(other) and other != holder and bool(expiry) and _parse(expiry) > now


def _ours_dropped(read: SecretData, holder: str | None) -> dict[str, None]:
    """The annotations a conditional write under `read`'s resourceVersion removes: the claim
    and the unstored mark when the claim `read` holds is `holder`'s (the mark is written with
    the claim, by its holder); none when it is another replica's (or there is none): that
    replica's claim keeps others off a refresh token it may have spent, and its mark says
    so."""
    claimant = read.annotations.get(CLAIM_ANNOTATION, "").partition(" ")[0]
    return dict(_OURS_DROPPED) if holder is not None and claimant == holder else {}


def _uid_refused(exc: ApiError) -> bool:
    """The apiserver's answer to a patch whose `metadata.uid` is not the object's: 422 Invalid,
    "metadata.uid: ... field is immutable" (tests/integration/test_oauthconnection_secrets.py)."""
    if exc.status.code != 422:
        return False
    causes = (exc.status.details.causes if exc.status.details else None) or ()
    return any(cause.field == "metadata.uid" for cause in causes)


def _token_patch(
    data: Mapping[str, str], previous: SecretData, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The merge patch writing `data` over the token Secret `previous` (see `write`)."""
    stale = [k for k in (*TOKEN_KEYS, *USER_TOKEN_KEYS) if k in previous.data and k not in data]
    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": previous.resource_version,
            "labels": dict(labels),
            "annotations": dict(_OURS_DROPPED),
        },
        "stringData": dict(data),
    }
    if stale:
        patch["data"] = dict.fromkeys(stale)
    return patch


def _parse(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
