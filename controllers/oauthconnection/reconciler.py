"""OAuthConnection: observe the connection's Secrets, decide, act -> one `Result`.

Level-based, from what the Secrets hold:
- the authorization Secret holds a `code` (or `error`) the gateway's callback put there:
  exchange it (PKCE verifier from the same Secret), store the tokens, drop the authorization;
  a refused code gives a new authorization URL;
- the token Secret holds tokens: refresh when `refreshBeforeExpirySeconds` from expiry (at
  most half the token's lifetime; claimed first, so one replica refreshes), else Connected
  until then; `invalid_grant`, or an expired token without a refresh token, deletes the dead
  tokens and asks for a new authorization (ReauthRequired); an unreadable `expires_at` counts
  as expired; Slack's user token (`spec.userScopes`, kept under the `user_*` keys) is
  refreshed by the same rule with its own refresh token, in the same claim and write; a
  refused one is dropped alone: the bot token stays Connected, Degraded, with a URL to
  authorize again (`_without_user_token`);
- neither: a state (single-use, expiring) and PKCE verifier in the authorization Secret and
  the authorization URL in status (PendingAuthorization, or ReauthRequired after a refusal,
  or when the token Secret of a Connected connection was deleted: `_deleted_tokens`).
New tokens whose write fails are retried in-process, then kept in memory by UID and written by
the next converge, retried with backoff whatever the failure (a code or rotated refresh token
cannot be used twice; why they are not persisted elsewhere: docs/oauthconnection.md): while
the token Secret's access token is valid, services keep reading it, so Connected (Ready True),
Degraded TokensNotStored; without one (none yet, or expired), Reconciling TokensNotStored.
Refreshed ones keep the refresh claim renewed meanwhile (`_hold_claim`; retried within a third
of its lifetime) and the Secret marked `tokens-not-stored`: the stored refresh token may be
spent (Slack rotates), so no replica may refresh with it; a restarted operator that lost them
finds the mark, and a refusal of that token then says why (ReauthRequired). A token Secret
deleted while tokens are held is created again with them (owned and labelled as the first
write makes it), and the connection is Connected again.
A connection whose name no Secret label can carry (stored before the CRD refused it) is
Stalled InvalidName before any Secret is touched.
`status.refreshFailures` counts refresh requests that failed, not converges (`_failures`).
Only Secrets whose controller ownerReference is this connection are read, written or deleted
(secrets.py); another's stalls the connection (SecretNotOwned). The
client Secret is read only to build a URL, exchange a code or refresh; a missing one, or a
client the provider refuses at refresh or at a code exchange while tokens are held (authorizing
again for Slack's user token), leaves a valid bot token Connected (Degraded; the user token may
expire meanwhile) until it expires, then stalls. A client the provider refuses
(`invalid_client`, in the exchange or the refresh) is put on record in `status.refusedClient`
(the client Secret's name and resourceVersion, the generation; never a value), so neither this
operator nor a restarted one sends it again until the client Secret or the spec changes (its
watch, clients.py, converges the connection at once).
Deletion (finalizer, when `revokeOnDelete`): revoke at the provider (retried; a provider out
of reach is a Warning Event and we let go), then delete both Secrets, when ours.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import SecretStr, ValidationError

from apis.conditions import get_condition
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import (
    UNREADABLE_EXPIRY,
    USER_TOKEN_KEYS,
    ConnectedAccount,
    OAuthConnection,
    OAuthPhase,
    RefusedClient,
    authorization_secret_name,
    encode_state,
    name_problem,
    token_expiry,
)
from controllers.core import (
    ChildEvent,
    Event,
    Kind,
    OperatorContext,
    ProviderError,
    Requeue,
    Result,
    RetryPolicy,
    StalledError,
    TransientError,
)
from controllers.core.retry import Sleep
from controllers.core.status import spec_error
from controllers.oauthconnection.secrets import (
    CLAIM_ANNOTATION,
    UNSTORED_ANNOTATION,
    ClientSecret,
    SecretData,
    SecretStore,
)
from controllers.oauthconnection.settings import OAuthSettings
from controllers.oauthconnection.status import DEGRADED, Outcome, build_status
from controllers.providers.oauth import (
    ClientRefusedError,
    GrantRefusedError,
    OAuthError,
    OAuthProvider,
    ProviderUnreachableError,
    TokenSet,
    UserToken,
)
from controllers.providers.oauth.google import GoogleOAuth
from controllers.providers.oauth.slack import SlackOAuth

__all__ = ["KIND", "OAuthConnectionReconciler", "from_context"]

log = logging.getLogger(__name__)
KIND = Kind(GROUP, VERSION, "OAuthConnection", "oauthconnections")


class TokensNotStoredError(TransientError):
    """New tokens the provider issued could not be written to the token Secret: they are held
    in memory and written by the next converge (`OAuthConnectionReconciler._store`)."""


class _ChangedMeanwhileError(TransientError):
    """The token Secret changed between the read that found its tokens dead and their
    delete: nothing was deleted (`_reauth`)."""


_DELETE_TRIES = 3
"""Reads and preconditioned deletes of refused tokens before a conflict is retried with
backoff (`_refused_refresh`)."""


@dataclass(frozen=True, repr=False)
class _Held:
    """Tokens the provider issued whose write to the token Secret failed (`repr` shows no
    token)."""

    tokens: TokenSet
    issued: dt.datetime
    refreshed: bool
    """From a refresh: written as a refresh is (a merge patch while the claim keeps other
    replicas off; the claim is renewed until then), else from a code exchange."""
    refused_user: UserToken | None = None
    """Slack's user token whose refresh token the provider refused in the refresh that
    issued these: emptied once they are stored, only while the Secret still holds it
    (`OAuthConnectionReconciler._drop_refused_user`)."""
    spent_user: UserToken | None = None
    """The Secret's user token whose refresh (in the refresh that issued these) gave
    `tokens.user`: its refresh token is spent (Slack rotates), so while the Secret still
    holds it, or holds no user token, the held user token is the only live one, also when
    the bot tokens held beside it are older than the Secret's (`_held_user_keys`). None:
    the held user token was carried over unrefreshed (or came from a code exchange, all of
    it new)."""

    def __repr__(self) -> str:
        return f"_Held(issued={self.issued!r}, refreshed={self.refreshed!r})"


@dataclass(frozen=True)
class _Spent:
    """The token Secret's UNSTORED_ANNOTATION: `at`, when a refresh whose new tokens were
    never stored spent its refresh token ("" none); `here`, whether this process held them
    (its own claim), so a refusal does not blame an operator that stopped."""

    at: str
    here: bool = False


def _claim_holder(data: SecretData) -> str:
    return data.annotations.get(CLAIM_ANNOTATION, "").partition(" ")[0]


def _rfc3339(when: dt.datetime | None) -> str:
    return "" if when is None else when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse(value: str) -> dt.datetime | None:
    """An RFC 3339 time; None when empty or unreadable (`token_expiry`'s reading)."""
    when = token_expiry(value) if value else None
    return None if when is UNREADABLE_EXPIRY else when


def token_data(tokens: TokenSet, *, issued: dt.datetime) -> dict[str, str]:
    """The token Secret's keys (see services/common/oauth_tokens.py); `issued_at` is when the
    operator received them (with `expires_at`, the token's lifetime); Slack's user token, when
    there is one, under the `user_*` keys (USER_TOKEN_KEYS)."""
    data = {
        "access_token": tokens.access_token.get_secret_value(),
        "refresh_token": tokens.refresh_token.get_secret_value() if tokens.refresh_token else "",
        "expires_at": _rfc3339(tokens.expires_at),
        "token_type": tokens.token_type,
        "scope": " ".join(tokens.scopes),
        "issued_at": _rfc3339(issued),
    }
    user = tokens.user
    if user is not None:
        data |= {
            "user_access_token": user.access_token.get_secret_value(),
            "user_refresh_token": user.refresh_token.get_secret_value()
            if user.refresh_token
            else "",
            "user_expires_at": _rfc3339(user.expires_at),
            "user_scope": " ".join(user.scopes),
            "user_issued_at": _rfc3339(user.issued_at or issued),
        }
    return data


def _token_set(data: SecretData) -> TokenSet:
    refresh = data.get("refresh_token")
    return TokenSet(
        access_token=SecretStr(data.get("access_token")),
        refresh_token=SecretStr(refresh) if refresh else None,
        expires_at=token_expiry(data.get("expires_at")),
        token_type=data.get("token_type") or "bearer",
        scopes=tuple(data.get("scope").split()),
        user=_user_token(data),
    )


def _user_token(data: SecretData) -> UserToken | None:
    if not data.get("user_access_token"):
        return None
    refresh = data.get("user_refresh_token")
    return UserToken(
        access_token=SecretStr(data.get("user_access_token")),
        refresh_token=SecretStr(refresh) if refresh else None,
        expires_at=token_expiry(data.get("user_expires_at")),
        scopes=tuple(data.get("user_scope").split()),
        issued_at=_parse(data.get("user_issued_at")),
    )


def _account(tokens: TokenSet) -> ConnectedAccount | None:
    a = tokens.account
    if a.team_id is None and a.user_id is None and a.email is None:
        return None
    return ConnectedAccount(team_id=a.team_id, user_id=a.user_id, email=a.email)


class OAuthConnectionReconciler:
    kind = KIND

    def __init__(
        self,
        store: SecretStore,
        providers: Mapping[str, OAuthProvider],
        *,
        settings: OAuthSettings,
        holder: str | None = None,
        revoke_retry: RetryPolicy | None = None,
        write_retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.providers = providers
        self.settings = settings
        self.holder = holder or uuid.uuid4().hex[:12]
        self.revoke_retry = revoke_retry or RetryPolicy(
            initial=1.0, maximum=5.0, deadline=30.0, max_attempts=settings.revoke_attempts
        )
        self.write_retry = write_retry or RetryPolicy(
            initial=0.5,
            maximum=4.0,
            deadline=min(15.0, settings.refresh_claim_seconds / 3),
            max_attempts=4,
        )
        """A token write's in-process retries start within a third of the refresh claim's
        lifetime (15 s at most): the next converge, which renews a claim held for unwritten
        tokens, comes another third later (`_claim_renewal`), so a renewal always comes
        before the claim's end, whatever `XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS` is."""
        self._sleep = sleep or _sleep
        self._clock = clock
        """The time a refresh claim is written at: its end counts from then, not from the
        converge's `now` (the Secrets read before it, a refresh's provider calls before a
        renewal, take part of it otherwise)."""
        self._unsaved: dict[str, _Held] = {}
        """Tokens the provider issued whose write to the token Secret failed, by connection
        UID: a code and a rotated refresh token are single-use, so they cannot be fetched
        again; the next converge writes these first (`release` revokes them). While refreshed
        ones wait, the refresh claim is renewed (`_hold_claim`): the stored refresh token they
        replace may be spent (a rotating provider), so no other replica may refresh with it."""
        self._refused: dict[str, RefusedClient | None] = {}
        """The refused client on record for each connection being converged, by UID: read
        from `status.refusedClient` when its converge starts and written back to it when it
        ends (so a restarted operator keeps it), never kept in between."""
        self._failures: dict[str, int] = {}
        """Refresh requests that failed in a row, for each connection being converged, by
        UID: read from `status.refreshFailures` when its converge starts, counted by
        `_refresh_one` (only a request sent, or a transport error sending it: a converge that
        sends none, stalled or backing off, leaves it as it was), back to 0 when the provider
        issues tokens, written back when the converge ends."""

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        try:
            conn = OAuthConnection.model_validate(body)
        except ValidationError as exc:
            return self._invalid(body, spec_error(exc), now)
        problem = name_problem(str(conn.metadata.name))
        if problem is not None:  # stored before the CRD refused it: no Secret can carry it
            return self._invalid(body, problem, now, reason="InvalidName")
        uid = str(conn.metadata.uid)
        self._refused[uid] = conn.status.refused_client if conn.status else None
        self._failures[uid] = conn.status.refresh_failures if conn.status else 0
        try:
            outcome = await self._converge(conn, now)
        except (ProviderError, OAuthError) as exc:
            outcome = self._raised(conn, exc)
        finally:
            refused = self._refused.pop(uid, None)
            failures = self._failures.pop(uid, 0)
        status = build_status(conn, outcome, now).model_copy(
            update={"refused_client": refused, "refresh_failures": failures}
        )
        backoff = outcome.failed or outcome.retry
        return Result(
            status=status,
            events=outcome.events,
            requeue=Requeue.BACKOFF if backoff else Requeue.RESYNC,
            requeue_after=self._claim_renewal(uid) if backoff else outcome.requeue_after,
        )

    def _claim_renewal(self, uid: str) -> float | None:
        """The longest wait before the next converge while refreshed tokens are held: a third
        of the claim's lifetime, so the next converge renews the claim before it lapses
        (the backoff alone grows to 60 s); None (the backoff's) otherwise."""
        held = self._unsaved.get(uid)
        if held is None or not held.refreshed:
            return None
        return self.settings.refresh_claim_seconds / 3

    def _invalid(
        self,
        body: Mapping[str, Any],
        message: str,
        now: dt.datetime,
        *,
        reason: str = "InvalidSpec",
    ) -> Result:
        """Stalled `reason` (the user must fix the object) before any Secret is read or
        written; refreshFailures kept, as no refresh was tried."""
        from apis.conditions import mark_stalled
        from apis.v1alpha1.oauthconnection import OAuthConnectionStatus

        generation = (body.get("metadata") or {}).get("generation")
        conditions = mark_stalled(
            [], reason=reason, message=message, generation=generation, now=now
        )
        failures = (body.get("status") or {}).get("refreshFailures")  # no refresh tried: kept
        status = OAuthConnectionStatus(
            conditions=conditions,
            phase=OAuthPhase.ERROR,
            refresh_failures=failures if isinstance(failures, int) else 0,
        )
        return Result(
            status=status,
            events=(Event("Warning", reason, message),),
            requeue=Requeue.BACKOFF,
        )

    def _raised(self, conn: OAuthConnection, exc: ProviderError | OAuthError) -> Outcome:
        """The outcome of a converge that raised: a stall, or a transient failure (an
        OAuthError is an unreachable provider while refreshing or exchanging)."""
        if isinstance(exc, ProviderError):
            return self._failed(
                conn, exc.reason, exc.message, stalled=isinstance(exc, StalledError)
            )
        return self._failed(conn, "ProviderUnreachable", str(exc), stalled=False)

    def _failed(
        self, conn: OAuthConnection, reason: str, message: str, *, stalled: bool
    ) -> Outcome:
        stored = conn.status
        phase = stored.phase if stored and stored.phase else OAuthPhase.PENDING_AUTHORIZATION
        return Outcome(
            phase=OAuthPhase.ERROR if stalled else phase,
            reason=reason,
            message=message,
            authorization_url=stored.authorization_url if stored else None,
            expires_at=stored.expires_at if stored else None,
            failed=not stalled,
            events=(Event("Warning", reason, message),) if stalled else (),
        )

    async def _converge(self, conn: OAuthConnection, now: dt.datetime) -> Outcome:
        # both Secrets first: either one someone else owns stalls before any provider call
        provider = self._provider(conn)
        authz = await self.store.authorization(conn)
        tokens = await self.store.tokens(conn)
        unsaved = self._unsaved.get(str(conn.metadata.uid))
        if unsaved is not None:
            tokens, unsaved = await self._drop_if_older(conn, tokens, unsaved)
        if unsaved is not None:
            return await self._store_unsaved(conn, authz, tokens, unsaved, now)
        if authz is not None and (authz.get("code") or authz.get("error")):
            return await self._complete(conn, provider, authz, now)
        if tokens is not None and tokens.get("access_token"):
            await self._drop_leftover(conn, authz, _token_set(tokens))
            return await self._keep_fresh(conn, provider, tokens, now)
        if tokens is None and _was_connected(conn):  # nothing read to delete
            return await self._reauth(conn, provider, _deleted_tokens(conn), now, dead=None)
        return await self._pending(conn, provider, authz, now)

    def _provider(self, conn: OAuthConnection) -> OAuthProvider:
        return self.providers["slack" if conn.spec.provider == "slack" else "google"]

    async def _drop_if_older(
        self, conn: OAuthConnection, tokens: SecretData | None, held: _Held
    ) -> tuple[SecretData | None, _Held | None]:
        """Held tokens older than the token Secret's (`_newer_stored`: the user authorized
        again, or another replica refreshed while these waited) are dropped, never written
        over the newer ones, and not revoked (at Google and Slack that could end the newer
        ones). Slack's user token is looked at on its own first (`_held_user_keys`): this
        replica may hold the only live one (it refreshed the user token, the write failed,
        it was paused by peering; meanwhile the active replica refreshed the bot token, and
        its refresh of the user token, with the refresh token this one spent, was refused
        and emptied). Then only the `user_*` keys are written, under the resourceVersion of
        the read (`SecretStore.store_user_token`): another write meanwhile is a conflict, the
        Secret is read again and the decision made anew (3 tries, then Reconciling
        `Conflict`, the tokens still held). The token Secret as it stands, and the held
        tokens still to be written (None: dropped)."""
        uid = str(conn.metadata.uid)
        for _ in range(_DELETE_TRIES):
            if tokens is None or not _newer_stored(tokens, held):
                return tokens, held
            user = _held_user_keys(tokens, held)
            if user is not None:
                written = await self.store.store_user_token(conn, tokens, user, holder=self.holder)
                if written is None:  # changed meanwhile: read again, decide anew
                    tokens = await self.store.tokens(conn)
                    continue
                log.info(
                    "OAuthConnection %s/%s: Secret %s holds newer bot tokens but an older user "
                    "token (or none): writing the user token issued %s held here",
                    conn.metadata.namespace,
                    conn.metadata.name,
                    conn.spec.token_secret_name,
                    user["user_issued_at"],
                )
                tokens = written
            self._unsaved.pop(uid, None)
            log.info(
                "OAuthConnection %s/%s: dropping held tokens issued %s, the token Secret holds "
                "newer ones (not revoked: at Google and Slack that could end the newer ones)",
                conn.metadata.namespace,
                conn.metadata.name,
                _rfc3339(held.issued),
            )
            return tokens, None
        raise _ChangedMeanwhileError(
            f"Secret {conn.spec.token_secret_name} changed at each of {_DELETE_TRIES} tries "
            "to write the user token held here beside its newer bot tokens; reading it again",
            reason="Conflict",
        )

    # -- authorization -------------------------------------------------------------------

    async def _pending(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        authz: SecretData | None,
        now: dt.datetime,
        *,
        reauth: bool | None = None,
        failure: str | None = None,
    ) -> Outcome:
        """Make sure a usable state exists; the status points the user at its URL. A new
        `failure` (why the user must authorize again) gets a new state and is kept with it in
        the authorization Secret, so later converges say it too, until the user authorizes."""
        reauth = bool(authz and authz.get("reauth")) if reauth is None else reauth
        keep = authz if failure is None and _usable(authz, now) else None
        failure = failure or (authz.get("failure") if authz is not None else "") or None
        if keep is not None:
            state, verifier = keep.get("state"), keep.get("code_verifier")
            expires = _parse(keep.get("expires_at")) or now
        else:
            state, verifier, expires = await self._new_state(
                conn, authz, now, reauth=reauth, failure=failure or ""
            )
        creds = await self.store.client_credentials(conn)
        url = provider.authorization_url(
            creds,
            redirect_uri=conn.spec.redirect_url,
            scopes=list(conn.spec.scopes),
            state=state,
            code_verifier=verifier,
            user_scopes=list(conn.spec.user_scopes or []),
        )
        phase = OAuthPhase.REAUTH_REQUIRED if reauth else OAuthPhase.PENDING_AUTHORIZATION
        message = f"authorize at status.authorizationURL (valid until {_rfc3339(expires)})"
        return Outcome(
            phase=phase,
            reason="AuthorizationFailed" if failure else "AuthorizationRequired",
            message=f"{failure}; {message}" if failure else message,
            authorization_url=url,
            requeue_after=max(1.0, (expires - now).total_seconds()),
        )

    async def _new_state(
        self,
        conn: OAuthConnection,
        authz: SecretData | None,
        now: dt.datetime,
        *,
        reauth: bool,
        failure: str = "",
    ) -> tuple[str, str, dt.datetime]:
        """A fresh single-use state and PKCE verifier, kept in the authorization Secret."""
        nonce = secrets.token_urlsafe(32)
        state = encode_state(str(conn.metadata.namespace), str(conn.metadata.name), nonce)
        verifier = secrets.token_urlsafe(64)
        expires = now + dt.timedelta(seconds=self.settings.state_ttl_seconds)
        data = {
            "state": state,
            "code_verifier": verifier,
            "expires_at": _rfc3339(expires),
            "tenant": conn.spec.tenant,
            "reauth": "true" if reauth else "",
            "failure": failure,
        }
        await self.store.write(conn, role="authorization", data=data, previous=authz)
        return state, verifier, expires

    async def _complete(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        authz: SecretData,
        now: dt.datetime,
    ) -> Outcome:
        """The callback delivered a code (or the provider's error): exchange it, once."""
        reauth = bool(authz.get("reauth"))
        if authz.get("error"):
            failure = f"the provider answered the authorization with {authz.get('error')}"
            return await self._not_authorized(conn, provider, authz, now, reauth, failure)
        try:
            client = await self.store.client(conn)
            self._still_refused(conn, client)
            tokens = await provider.exchange(
                client.credentials,
                code=authz.get("code"),
                code_verifier=authz.get("code_verifier"),
                redirect_uri=conn.spec.redirect_url,
            )
        except ProviderUnreachableError as exc:  # the code stays: exchanged on the retry
            raise TransientError(f"code exchange: {exc}", reason="ProviderUnreachable") from None
        except ClientRefusedError as exc:  # a new authorization would be refused the same
            return await self._unexchangeable(conn, self._refuse(conn, client, exc), now)
        except StalledError as exc:  # the client Secret missing, or its client refused before
            return await self._unexchangeable(conn, exc, now)
        except OAuthError as exc:  # refused code (replayed, expired, PKCE mismatch)
            failure = f"the provider refused the authorization code: {exc}"
            return await self._not_authorized(conn, provider, authz, now, reauth, failure)
        self._refused.pop(str(conn.metadata.uid), None)
        self._failures[str(conn.metadata.uid)] = 0  # new tokens: none of their refreshes failed
        await self._store(conn, _Held(tokens, now, refreshed=False))
        await self.store.delete(conn, authorization_secret_name(str(conn.metadata.name)))
        who = _account(tokens)
        message = f"connected to {provider.name}" + (f" as {_who(who)}" if who else "")
        return self._connected(
            conn, tokens, now, issued=now, message=message, account=who, refreshed=now
        ).with_events(Event("Normal", "Connected", message))

    async def _unexchangeable(
        self, conn: OAuthConnection, exc: StalledError, now: dt.datetime
    ) -> Outcome:
        """A code that cannot be exchanged for want of a working client (missing, or refused
        by the provider): the code stays for when the client Secret is fixed, and the user is
        not sent round again. A connection authorizing again while it holds tokens (Slack's
        user token) keeps serving them as a refused refresh does (`_unrefreshable`:
        Connected, Degraded, until the bot token expires); without tokens it stalls."""
        data = await self.store.tokens(conn)
        if data is None or not data.get("access_token"):
            raise exc
        tokens = _token_set(data)
        return self._unrefreshable(conn, tokens, now, _parse(data.get("issued_at")), exc)

    async def _not_authorized(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        authz: SecretData,
        now: dt.datetime,
        reauth: bool,
        failure: str,
    ) -> Outcome:
        """An authorization that failed: a new state and URL. A connection that still holds
        tokens (authorizing again for Slack's user token) keeps them and stays as it was: the
        failure is said in this converge's Degraded message and Event, and not kept in the
        authorization Secret, whose `failure` is why a connection without usable tokens
        waits for the user (`_drop_leftover`). Once the new state replaced the error (or
        code), this converge is the only one to know of the failure: when keeping the tokens
        fresh then fails (the provider out of reach, an apiserver error), the failure's
        outcome says it too, Event and message. (Keeping them fresh first would not do: for
        Slack's user token it makes the new state itself, `_without_user_token`.)"""
        event = Event("Warning", "AuthorizationFailed", failure)
        tokens = await self.store.tokens(conn)
        if tokens is None or not tokens.get("access_token"):
            outcome = await self._pending(
                conn, provider, authz, now, reauth=reauth, failure=failure
            )
            return outcome.with_events(event)
        await self._new_state(conn, authz, now, reauth=reauth)  # the used one is gone
        try:
            kept = await self._keep_fresh(conn, provider, tokens, now)
        except (ProviderError, OAuthError) as exc:
            raised = self._raised(conn, exc)
            return replace(raised, message=f"{raised.message}; {failure}").with_events(event)
        if kept.degraded is not None:
            reason, message = kept.degraded
            kept = replace(kept, degraded=(reason, f"{failure}; {message}"))
        return kept.with_events(event)

    async def _store(self, conn: OAuthConnection, held: _Held) -> None:
        """Write tokens the provider just issued, retried here with backoff; when every try
        fails they stay in memory (by UID) for the next converge, never asked for again, and
        the failure is transient whatever its cause (Reconciling `TokensNotStored`, retried
        with the scheduler's backoff): a refused write (403, an admission policy) that became
        a stall would hold them in memory until the resync, 10 minutes for a restart to lose
        them. Refreshed tokens are a merge patch that drops the claim (a reader's annotation
        is kept); exchanged ones are `SecretStore.write`'s (created, or patched under the
        resourceVersion read). The merge of a refresh keeps the keys it does not name: a
        user token refused beside it is emptied by a write of its own, after this one
        (`_drop_refused_user`)."""
        uid, tokens = str(conn.metadata.uid), held.tokens
        self._unsaved[uid] = held
        data = token_data(tokens, issued=held.issued)
        try:
            async for attempt in self.write_retry.retrying(
                retry_if=lambda e: isinstance(e, TransientError), sleep=self._sleep
            ):
                with attempt:
                    if held.refreshed:
                        await self.store.store_refreshed(conn, data)
                    else:
                        previous = await self.store.tokens(conn)
                        await self.store.write(conn, role="tokens", data=data, previous=previous)
        except ProviderError as exc:  # exc.message names the Secret and the apiserver's answer
            message = (
                f"the provider issued new tokens, but {exc.message}; they are kept only in "
                "this operator's memory and written on the next attempt (retried with "
                "backoff); a restart before then loses them"
            )
            raise TokensNotStoredError(message, reason="TokensNotStored") from None
        self._unsaved.pop(uid, None)

    async def _hold_claim(self, conn: OAuthConnection, held: _Held) -> None:
        """Keep the refresh claim while refreshed tokens wait in memory, marked as such
        (UNSTORED_ANNOTATION, the refresh's time): the refused write of the tokens carried
        the claim's removal, so without this the claim lapsed after
        `XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS` and another replica could refresh with the
        stored refresh token, which a rotating provider (Slack) already spent: refused, the
        user sent to authorize again for nothing. A claim-only write may pass where the
        token write is refused (an admission policy on the token keys); one that fails as
        well fails alike for any replica's claim (the apiserver down, RBAC)."""
        try:  # its length counts from the renewal, after the refresh and the write's retries
            kept = await self.store.hold_claim(
                conn,
                holder=self.holder,
                lasting=dt.timedelta(seconds=self.settings.refresh_claim_seconds),
                clock=self._clock,
                unstored=_rfc3339(held.issued),
            )
        except ProviderError as exc:
            kept, why = False, exc.message
        else:
            why = "another replica claimed it, or the Secret is gone"
        if not kept:
            log.warning(
                "refreshed tokens of OAuthConnection %s/%s are held in memory but the refresh "
                "claim on Secret %s was not renewed: %s",
                conn.metadata.namespace,
                conn.metadata.name,
                conn.spec.token_secret_name,
                why,
            )

    async def _store_unsaved(
        self,
        conn: OAuthConnection,
        authz: SecretData | None,
        stored: SecretData | None,
        held: _Held,
        now: dt.datetime,
    ) -> Outcome:
        """Write the tokens an earlier converge received but could not store (`stored`: what
        the token Secret holds meanwhile, which services keep reading), the way their first
        write went (`_store`); refreshed ones renew the claim first (`_hold_claim`), so it
        never lapses while they wait. A code in the authorization Secret is used up when the
        held tokens came from it (a code exchange): deleted. Beside refreshed ones it is the
        user's new authorization (e.g. for Slack's user token, UserReauthRequired): kept,
        and exchanged by the next converge, a second later."""
        if held.refreshed:
            await self._hold_claim(conn, held)
        try:
            await self._store(conn, held)
        except TokensNotStoredError as exc:
            if stored is None or not stored.get("access_token"):
                raise
            kept, kept_issued = _token_set(stored), _parse(stored.get("issued_at"))
            return self._not_stored(conn, kept, kept_issued, exc, now)
        tokens = held.tokens
        if held.refused_user is not None:  # emptied only while the Secret still holds it
            user = await self._drop_refused_user(conn, held.refused_user)
            tokens = replace(tokens, user=user)
        await self._drop_leftover(conn, authz, tokens)
        message = "tokens stored (issued earlier; their first write had failed)"
        waiting = authz is not None and bool(authz.get("code") or authz.get("error"))
        if waiting and not held.refreshed:  # the code they came from is used up
            await self.store.delete(conn, authorization_secret_name(str(conn.metadata.name)))
            waiting = False
        outcome = self._connected(
            conn, tokens, now, issued=held.issued, message=message, refreshed=held.issued
        ).with_events(Event("Normal", "Connected", message))
        if waiting:  # refreshed tokens: the code is the user's new authorization, not theirs
            outcome = replace(
                outcome,
                message=f"{message}; the new authorization is completed next",
                requeue_after=1.0,
            )
        return outcome

    async def _drop_leftover(
        self, conn: OAuthConnection, authz: SecretData | None, tokens: TokenSet
    ) -> None:
        """Delete an authorization Secret nobody needs any more: no code or error in it (the
        user is not completing an authorization) while the token Secret holds every token
        the spec asks for (Slack's user token too, with `spec.userScopes`). It is left over
        from a ReauthRequired another replica wrote (`reauth`, `failure`) when it saw the
        token Secret gone while this one held the tokens and then stored them: kept, its
        stale `failure` would reappear in later messages (`_pending` carries it over).
        A Slack connection serving its bot token without the user token keeps the Secret (its
        state is the user token's authorization, `_without_user_token`) but not a `failure`
        in it: that one is why tokens were missing, and tokens are stored now; kept, every
        later Degraded message, and each new state when one expires, said it again."""
        if authz is None or authz.get("code") or authz.get("error"):
            return
        wants_user = conn.spec.provider == "slack" and bool(conn.spec.user_scopes)
        if wants_user and tokens.user is None:  # its state is the user token's authorization
            if authz.get("failure"):
                data = {**authz.data, "failure": ""}
                await self.store.write(conn, role="authorization", data=data, previous=authz)
            return
        # only as read: a code the callback put in meanwhile (the user completing that
        # authorization) stays, and its Secret's event converges the connection to exchange it
        name = authorization_secret_name(str(conn.metadata.name))
        await self.store.delete_unchanged(conn, name, authz)

    # -- refresh -------------------------------------------------------------------------

    def _lead(
        self, conn: OAuthConnection, tokens: TokenSet, issued: dt.datetime | None
    ) -> tuple[dt.timedelta, str]:
        """How long before expiry to refresh: `refreshBeforeExpirySeconds`, at most half the
        token's lifetime (a lead as long as the lifetime would refresh at once, forever); and,
        when capped, a note saying so."""
        lead = dt.timedelta(seconds=conn.spec.refresh_before_expiry_seconds)
        if issued is None or tokens.expires_at is None:
            return lead, ""
        lifetime = tokens.expires_at - issued
        if lifetime <= dt.timedelta(0) or lead <= lifetime / 2:
            return lead, ""
        note = (
            f"spec.refreshBeforeExpirySeconds ({conn.spec.refresh_before_expiry_seconds}) is "
            f"more than half the token's lifetime ({lifetime.total_seconds():.0f} s): "
            "refreshing at half its lifetime"
        )
        return lifetime / 2, note

    def _due(
        self, conn: OAuthConnection, tokens: TokenSet, issued: dt.datetime | None
    ) -> dt.datetime | None:
        """When the next refresh is due: the earlier of the access token's and (Slack) the
        user token's; None when neither can be refreshed."""
        dues = [
            d
            for d in (self._bot_due(conn, tokens, issued), self._user_due(conn, tokens, issued))
            if d
        ]
        return min(dues) if dues else None

    def _bot_due(
        self, conn: OAuthConnection, tokens: TokenSet, issued: dt.datetime | None
    ) -> dt.datetime | None:
        if tokens.expires_at is None or tokens.refresh_token is None:
            return None
        return tokens.expires_at - self._lead(conn, tokens, issued)[0]

    def _user_due(
        self, conn: OAuthConnection, tokens: TokenSet, issued: dt.datetime | None
    ) -> dt.datetime | None:
        """The user token's refresh time: the same lead, capped at half its own lifetime."""
        user = tokens.user
        if user is None or user.expires_at is None or user.refresh_token is None:
            return None
        as_token = replace(tokens, expires_at=user.expires_at)
        return user.expires_at - self._lead(conn, as_token, user.issued_at or issued)[0]

    def _connected(
        self,
        conn: OAuthConnection,
        tokens: TokenSet,
        now: dt.datetime,
        *,
        issued: dt.datetime | None,
        message: str = "tokens are current",
        account: ConnectedAccount | None = None,
        refreshed: dt.datetime | None = None,
    ) -> Outcome:
        due = self._due(conn, tokens, issued)
        note = self._lead(conn, tokens, issued)[1] if due is not None else ""
        if due is None and tokens.expires_at is not None:  # no refresh token: look at expiry
            due = tokens.expires_at
        return Outcome(
            phase=OAuthPhase.CONNECTED,
            reason="Connected",
            message=f"{message}; {note}" if note else message,
            account=account,
            granted_scopes=tokens.scopes or None,
            expires_at=tokens.expires_at,
            last_refresh_time=refreshed,
            requeue_after=None if due is None else max(1.0, (due - now).total_seconds()),
        )

    async def _keep_fresh(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        data: SecretData,
        now: dt.datetime,
    ) -> Outcome:
        tokens = _token_set(data)
        issued = _parse(data.get("issued_at"))
        failure = _expired_unrefreshable(tokens, now)
        if failure is not None:
            return await self._expired_dead(conn, provider, data, now, failure)
        due = self._due(conn, tokens, issued)
        if due is None or due > now:
            outcome = self._connected(conn, tokens, now, issued=issued)
            if tokens.user is None:
                outcome = await self._without_user_token(conn, provider, outcome, now)
            return outcome
        try:
            client = await self.store.client(conn)
            self._still_refused(conn, client)
        except StalledError as exc:  # missing or refused client: usable until they expire
            return self._unrefreshable(conn, tokens, now, issued, exc)
        at = self._clock()  # the claim's time counts from its write, not the converge's start
        until = at + dt.timedelta(seconds=self.settings.refresh_claim_seconds)
        claimed = await self.store.claim(conn, data, holder=self.holder, until=until, now=at)
        if claimed is None:  # another replica refreshes (or just did): look again soon
            return Outcome(
                phase=OAuthPhase.REFRESHING,
                reason="Refreshing",
                message="another operator replica is refreshing the tokens",
                expires_at=tokens.expires_at,
                requeue_after=2.0,
            )
        spent = _Spent(
            data.annotations.get(UNSTORED_ANNOTATION, ""),
            here=_claim_holder(data) == self.holder,
        )
        try:
            return await self._refresh(conn, client, provider, tokens, issued, now, spent=spent)
        except TokensNotStoredError as exc:  # refreshed, not written: the Secret's still serve
            held = self._unsaved.get(str(conn.metadata.uid))
            if held is not None:
                await self._hold_claim(conn, held)
            return self._not_stored(conn, tokens, issued, exc, now)

    def _not_stored(
        self,
        conn: OAuthConnection,
        stored: TokenSet,
        issued: dt.datetime | None,
        exc: TokensNotStoredError,
        now: dt.datetime,
    ) -> Outcome:
        """New tokens wait in memory for their write (retried with backoff) while the token
        Secret still holds `stored`: services read those, so while their access token has not
        expired the connection stays Connected (Ready True) with a Degraded condition
        `TokensNotStored` saying the new ones are not written yet (a restart would lose them);
        once it has expired, `exc` stands (Reconciling, Ready False): services have no usable
        token. The Warning Event is posted once, when it starts."""
        expires = stored.expires_at
        if expires is not None and expires <= now:
            raise exc
        valid = f"valid until {_rfc3339(expires)}" if expires is not None else "not expiring"
        message = f"{exc.message}; services keep reading the stored access token, {valid}"
        outcome = self._connected(
            conn,
            stored,
            now,
            issued=issued,
            message=f"the stored access token is {valid}; newer tokens are not stored yet",
        )
        outcome = replace(outcome, degraded=("TokensNotStored", message), retry=True)
        before = get_condition(conn.status.conditions, DEGRADED) if conn.status else None
        if before is not None and before.status == "True" and before.reason == "TokensNotStored":
            return outcome
        return outcome.with_events(Event("Warning", "TokensNotStored", message))

    def _unrefreshable(
        self,
        conn: OAuthConnection,
        tokens: TokenSet,
        now: dt.datetime,
        issued: dt.datetime | None,
        exc: StalledError,
    ) -> Outcome:
        """Due for a refresh that cannot be made (the client Secret missing, or its client
        refused by the provider) while the bot (access) token works: stay Connected (services
        read the phase) until it expires, Degraded naming why, and look again soon; once it
        has expired, `exc` stalls the connection. Slack's user token expiring first stalls
        nothing: the Secret says it expired (readers hand out the bot token alone and only a
        caller of the user token waits, services/common/oauth_tokens.py), and it is refreshed
        as soon as the client works again."""
        bot = tokens.expires_at
        if bot is not None and bot <= now:
            raise exc
        user = tokens.user.expires_at if tokens.user is not None else None
        if user is not None and user <= now:
            valid = f"valid until {_rfc3339(bot)}" if bot is not None else "not expiring"
            state = (
                f"the bot token is {valid} and the user token expired at {_rfc3339(user)} "
                "(Slack search fails until it is refreshed); neither can be refreshed"
            )
        else:
            ends = [t for t in (bot, user) if t is not None]
            until = f"valid until {_rfc3339(min(ends))}" if ends else "not expiring"
            state = f"tokens are {until} but cannot be refreshed"
        message = f"{state}: {exc.message}"
        outcome = self._connected(conn, tokens, now, issued=issued, message=message)
        left = 60.0 if bot is None else (bot - now).total_seconds()
        outcome = replace(
            outcome, requeue_after=max(1.0, min(60.0, left)), degraded=(exc.reason, message)
        )
        # said once per cause, not at each of the minute's looks while it lasts
        before = get_condition(conn.status.conditions, DEGRADED) if conn.status else None
        if before is not None and before.status == "True" and before.reason == exc.reason:
            return outcome
        return outcome.with_events(Event("Warning", exc.reason, message))

    async def _refresh(
        self,
        conn: OAuthConnection,
        client: ClientSecret,
        provider: OAuthProvider,
        tokens: TokenSet,
        issued: dt.datetime | None,
        now: dt.datetime,
        *,
        spent: _Spent | None = None,
    ) -> Outcome:
        """Refresh each token that is due: the access token, then (Slack) the user token with
        its own refresh token. Both land in one write; when the user token's refresh fails
        after the access token's worked, the new access token is written first (a rotated
        refresh token works once); a write that fails raises TokensNotStoredError. A refused
        user refresh token loses the user token only: the (new) access token is kept and the
        connection stays Connected, Degraded, with an authorization URL to get a user token
        again (`_without_user_token`). After a bot refresh, the new bot tokens are written
        without touching the user keys, and the refused user token is then emptied by a write
        of its own, only while the Secret still holds it (`_drop_refused_user`): a user token
        another writer stored meanwhile is kept. `spent`: a refresh whose tokens an operator
        held and lost (UNSTORED_ANNOTATION), which a refusal names as its cause."""
        fresh, when = tokens, issued
        bot_due, user_due = (
            self._bot_due(conn, tokens, issued),
            self._user_due(conn, tokens, issued),
        )
        dropped, refused_user, spent_user = "", None, None
        if bot_due is not None and bot_due <= now:
            assert tokens.refresh_token is not None
            try:
                got = await self._refresh_one(conn, client, provider, tokens.refresh_token)
            except GrantRefusedError as exc:
                failure = _refused_grant(conn, "refresh token", exc.code, spent)
                return await self._refused_refresh(conn, provider, tokens, issued, now, failure)
            except StalledError as exc:  # a refused client: usable until the tokens expire
                return self._unrefreshable(conn, tokens, now, issued, exc)
            fresh, when = replace(got, user=tokens.user), now
        if tokens.user is not None and user_due is not None and user_due <= now:
            assert tokens.user.refresh_token is not None
            try:
                got = await self._refresh_one(
                    conn, client, provider, tokens.user.refresh_token, release=fresh is tokens
                )
            except GrantRefusedError as exc:
                failure = _refused_grant(conn, "user token's refresh token", exc.code, spent)
                if fresh is tokens:  # nothing refreshed here: adopt newer ones, or drop it
                    return await self._user_refused_alone(
                        conn, provider, tokens, issued, now, failure
                    )
                # the bot token refreshed here: stored first (it must never be lost), then
                # the refused user token emptied, only while the Secret still holds it
                dropped, refused_user = failure, tokens.user
                fresh = replace(fresh, user=None)
            except ProviderError as exc:
                if fresh is not tokens:
                    await self._store(conn, _Held(fresh, when or now, refreshed=True))
                if isinstance(exc, StalledError):
                    return self._unrefreshable(conn, fresh, now, when, exc)
                raise
            else:
                user = UserToken(
                    got.access_token, got.refresh_token, got.expires_at, got.scopes, issued_at=now
                )
                fresh, spent_user = replace(fresh, user=user), tokens.user
        self._refused.pop(str(conn.metadata.uid), None)
        held = _Held(
            fresh, when or now, refreshed=True, refused_user=refused_user, spent_user=spent_user
        )
        await self._store(conn, held)
        if refused_user is not None:
            kept = await self._drop_refused_user(conn, refused_user)
            if kept is not None:  # another writer's user token, stored meanwhile: kept
                fresh, dropped = replace(fresh, user=kept), ""
        outcome = self._connected(
            conn, fresh, now, issued=when, message="tokens refreshed", refreshed=now
        )
        if fresh.user is None:
            outcome = await self._without_user_token(conn, provider, outcome, now, dropped)
        return outcome

    async def _refused_refresh(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        used: TokenSet,
        issued: dt.datetime | None,
        now: dt.datetime,
        failure: str,
    ) -> Outcome:
        """The bot's refresh token refused: newer tokens another writer stored meanwhile are
        adopted (`_rewritten`), else the dead ones are deleted (ReauthRequired), only as the
        read that found nothing newer saw them: tokens stored between that read and the
        delete make the apiserver refuse it (409, `SecretStore.delete_unchanged`), and the
        Secret is read again and they are adopted. A Secret that changes at every try (a
        reader's annotation each time) is a conflict, retried with backoff."""
        for _ in range(_DELETE_TRIES):
            data = await self.store.tokens(conn)
            adopted = await self._rewritten(conn, provider, data, used, issued, now, bot=True)
            if adopted is not None:
                return adopted
            try:
                return await self._reauth(conn, provider, failure, now, dead=data)
            except _ChangedMeanwhileError:
                continue
        raise _ChangedMeanwhileError(
            f"Secret {conn.spec.token_secret_name} changed at each of {_DELETE_TRIES} tries "
            "to delete its refused tokens; reading it again",
            reason="Conflict",
        )

    async def _expired_dead(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        data: SecretData,
        now: dt.datetime,
        failure: str,
    ) -> Outcome:
        """An access token expired with no refresh token (`data`, as the converge read it):
        the tokens are dead, deleted only as a read saw them (`_reauth`). A write between
        that read and the delete (readers annotate `refresh-requested` exactly when the
        token has expired; newer tokens stored) makes it a conflict: the Secret is read
        again, and while it still holds an expired access token with no refresh token it is
        deleted as read then; tokens that are not dead any more are kept and kept fresh
        (`_keep_fresh`); a Secret gone meanwhile leaves nothing to delete. Changed at each of
        3 tries: Reconciling `Conflict`, retried with backoff."""
        name = conn.spec.token_secret_name
        read: SecretData | None = data
        for tries in range(1, _DELETE_TRIES + 1):
            try:
                return await self._reauth(conn, provider, failure, now, dead=read)
            except _ChangedMeanwhileError:
                if tries == _DELETE_TRIES:
                    break
            read = await self.store.tokens(conn)
            if read is None:  # deleted meanwhile: nothing left to delete (`_reauth`)
                continue
            if not read.get("access_token"):  # emptied meanwhile: the next converge decides
                raise _ChangedMeanwhileError(
                    f"Secret {name} lost its access token meanwhile", reason="Conflict"
                )
            again = _expired_unrefreshable(_token_set(read), now)
            if again is None:  # another writer stored live tokens: go on with them
                return await self._keep_fresh(conn, provider, read, now)
            failure = again
        raise _ChangedMeanwhileError(
            f"Secret {name} changed at each of {_DELETE_TRIES} tries to delete its expired "
            "tokens; reading it again",
            reason="Conflict",
        )

    async def _user_refused_alone(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        used: TokenSet,
        issued: dt.datetime | None,
        now: dt.datetime,
        failure: str,
    ) -> Outcome:
        """Slack's user refresh token refused, nothing refreshed in this converge: newer
        tokens another writer stored meanwhile are adopted (`_rewritten`), else the user
        token's keys are emptied (the bot token stays, Degraded `UserReauthRequired`), only
        as the read that found nothing newer saw the Secret (`SecretStore.drop_user_token`,
        under its resourceVersion): no new token is held here, so a conflict loses nothing
        and the Secret is read again; a user token stored between that read and the write is
        then kept, not emptied. Changed at every try: Reconciling `Conflict`, backoff."""
        for _ in range(_DELETE_TRIES):
            data = await self.store.tokens(conn)
            adopted = await self._rewritten(conn, provider, data, used, issued, now)
            if adopted is not None:
                return adopted
            if data is None:  # deleted meanwhile: the next converge says so
                raise _ChangedMeanwhileError(
                    f"Secret {conn.spec.token_secret_name} was deleted meanwhile",
                    reason="Conflict",
                )
            if await self.store.drop_user_token(conn, data, holder=self.holder):
                break
        else:
            raise _ChangedMeanwhileError(
                f"Secret {conn.spec.token_secret_name} changed at each of {_DELETE_TRIES} "
                "tries to empty its refused user token; reading it again",
                reason="Conflict",
            )
        self._refused.pop(str(conn.metadata.uid), None)
        bot = replace(used, user=None)
        outcome = self._connected(
            conn, bot, now, issued=issued, message="tokens refreshed", refreshed=now
        )
        return await self._without_user_token(conn, provider, outcome, now, failure)

    async def _rewritten(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        data: SecretData | None,
        used: TokenSet,
        issued: dt.datetime | None,
        now: dt.datetime,
        *,
        bot: bool = False,
    ) -> Outcome | None:
        """After the provider refused a refresh token: the token Secret read again (`data`,
        None when gone), and when it holds tokens issued after the ones the refresh used
        (another writer stored them meanwhile: a replica paused by peering that resumed and
        wrote the tokens it held, whose refresh spent the one we sent), the connection goes
        on with those (Connected; our claim, if still there, let go) instead of deleting
        them as dead. `bot`: the
        refused one is the bot's refresh token, so only a newer bot token (`issued_at`)
        counts; a newer user token alone leaves the bot refresh token dead. Else (the user
        token's refused) a newer bot or user token counts. None when the Secret holds
        nothing newer: the refusal stands."""
        if data is None or not data.get("access_token"):
            return None
        stored = _token_set(data)
        stored_issued = _parse(data.get("issued_at"))
        newer = stored_issued is not None and (issued is None or stored_issued > issued)
        user_before = used.user.issued_at if used.user is not None else None
        user_now = stored.user.issued_at if stored.user is not None else None
        newer_user = user_now is not None and (user_before is None or user_now > user_before)
        if not newer and (bot or not (used.user is not None and newer_user)):
            return None
        if _claim_holder(data) == self.holder:
            await self.store.release_claim(conn)
        log.info(
            "OAuthConnection %s/%s: the provider refused the refresh token, but Secret %s "
            "holds tokens issued %s by another writer since it was read: keeping them",
            conn.metadata.namespace,
            conn.metadata.name,
            conn.spec.token_secret_name,
            _rfc3339(stored_issued),
        )
        outcome = self._connected(
            conn,
            stored,
            now,
            issued=stored_issued,
            message=(
                "the provider refused the refresh token this operator sent, which another "
                f"operator replica had already used: the tokens it stored at "
                f"{_rfc3339(stored_issued)} are kept"
            ),
        )
        if stored.user is None:
            outcome = await self._without_user_token(conn, provider, outcome, now)
        return outcome

    async def _drop_refused_user(
        self, conn: OAuthConnection, refused: UserToken
    ) -> UserToken | None:
        """Once new bot tokens are stored (a merge that leaves the user keys as they are):
        empty the user token's keys, as Slack's user refresh token was refused in the same
        refresh, only while the token Secret still holds that refresh token, and only as a
        read saw it (`SecretStore.drop_user_token`, under its UID and resourceVersion). A
        user token another writer stored (before the bot tokens' write, or between the read
        and the drop: a conflict, read again) is kept and returned: a replica paused by
        peering that resumed and wrote the user token its own refresh got, spending the
        refresh token this one sent. None: emptied, or no user token stored (the keys are
        then written empty when missing: a token Secret made again with the bot tokens). A
        Secret changed at each of 3 tries, or deleted, is Reconciling `Conflict` (the bot
        tokens are stored already; the next refresh of the user token, refused again,
        empties it, `_user_refused_alone`)."""
        name = conn.spec.token_secret_name
        for _ in range(_DELETE_TRIES):
            data = await self.store.tokens(conn)
            if data is None:
                raise _ChangedMeanwhileError(
                    f"Secret {name} was deleted meanwhile", reason="Conflict"
                )
            stored = _user_token(data)
            if stored is None and all(k in data.data for k in USER_TOKEN_KEYS):
                return None  # emptied meanwhile: nothing to drop
            if stored is not None and not _same_refresh_token(stored, refused):
                log.info(
                    "OAuthConnection %s/%s: the provider refused the user token's refresh "
                    "token, but Secret %s holds another user token (issued %s) stored "
                    "meanwhile: keeping it",
                    conn.metadata.namespace,
                    conn.metadata.name,
                    name,
                    _rfc3339(stored.issued_at),
                )
                return stored
            # no annotation touched: our claim went with the bot tokens' write, and one there
            # now is another replica's (a conflict read again must not remove it)
            if await self.store.drop_user_token(conn, data, holder=None):
                return None
        raise _ChangedMeanwhileError(
            f"Secret {name} changed at each of {_DELETE_TRIES} tries to empty its refused "
            "user token (the new bot tokens are stored); reading it again",
            reason="Conflict",
        )

    async def _refresh_one(
        self,
        conn: OAuthConnection,
        client: ClientSecret,
        provider: OAuthProvider,
        refresh_token: SecretStr,
        *,
        release: bool = True,
    ) -> TokenSet:
        """One refresh grant: the new tokens. A refused refresh token raises
        GrantRefusedError (the caller decides); a refused client stalls, anything else is
        transient (the claim let go either way, unless not `release`: the bot token was
        refreshed first, and the claim stays until its new tokens are stored, as the write
        drops it, or held, as `_hold_claim` renews it). Each failure counts one more in
        `status.refreshFailures`; tokens issued set it back to 0."""
        uid = str(conn.metadata.uid)
        try:
            tokens = await provider.refresh(
                client.credentials, refresh_token=refresh_token.get_secret_value()
            )
        except OAuthError as exc:  # refused, failed or unreachable: a failed refresh
            self._failures[uid] = self._failures.get(uid, 0) + 1
            if isinstance(exc, GrantRefusedError):
                raise
            if release:
                await self.store.release_claim(conn)
            if isinstance(exc, ClientRefusedError):  # retrying would be refused the same
                raise self._refuse(conn, client, exc) from None
            raise TransientError(f"refresh: {exc}", reason="RefreshFailed") from None
        self._failures[uid] = 0
        return tokens

    async def _without_user_token(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        outcome: Outcome,
        now: dt.datetime,
        failure: str = "",
    ) -> Outcome:
        """A Connected Slack connection with `spec.userScopes` but no user token (its refresh
        token refused, or the user scopes added after authorizing): the bot token still
        works, so it stays Connected, Degraded `UserReauthRequired`, with an authorization URL
        in status (a state kept in the authorization Secret, as while pending) whose code
        replaces both tokens."""
        if conn.spec.provider != "slack" or not conn.spec.user_scopes:
            return outcome
        lost = failure or "no user token for spec.userScopes"
        try:
            authz = await self.store.authorization(conn)
            pending = await self._pending(conn, provider, authz, now, reauth=True)
        except StalledError as exc:  # no client to build a URL with: say so
            message = f"{lost}; the bot token still works; authorizing again needs: {exc.message}"
            url, requeue = None, outcome.requeue_after
        else:
            message = (
                f"{lost}; the bot token still works, Slack search needs a user token: "
                f"{pending.message}"
            )
            url, requeue = pending.authorization_url, pending.requeue_after
            if outcome.requeue_after is not None and requeue is not None:
                requeue = min(requeue, outcome.requeue_after)
        degraded = replace(
            outcome,
            message=f"{outcome.message}; {message}",
            authorization_url=url,
            requeue_after=requeue,
            degraded=("UserReauthRequired", message),
        )
        if not failure:  # the Warning Event is posted once, when the user token is lost
            return degraded
        return degraded.with_events(Event("Warning", "UserReauthRequired", message))

    # -- a refused client ------------------------------------------------------------------

    def _refuse(
        self, conn: OAuthConnection, client: ClientSecret, exc: ClientRefusedError
    ) -> StalledError:
        """The stall for a client the provider refused, put on record (status.refusedClient:
        the Secret's name and resourceVersion, the generation, the provider's answer; never a
        value) so that the same client is not sent again (`_still_refused`)."""
        record = RefusedClient(
            secret_name=conn.spec.client_secret_ref.name,
            resource_version=client.resource_version,
            generation=conn.metadata.generation,
            error=str(exc)[:1024],
        )
        self._refused[str(conn.metadata.uid)] = record
        return StalledError(_refusal(conn, record), reason="ClientRefused")

    def _still_refused(self, conn: OAuthConnection, client: ClientSecret) -> None:
        """Raise the recorded stall when the provider refused this very version of the client
        Secret for this generation of the spec; forget it once either changed."""
        uid = str(conn.metadata.uid)
        record = self._refused.get(uid)
        if record is None:
            return
        if (
            record.secret_name == conn.spec.client_secret_ref.name
            and record.resource_version == client.resource_version
            and record.generation == conn.metadata.generation
        ):
            raise StalledError(_refusal(conn, record), reason="ClientRefused")
        self._refused[uid] = None

    async def _reauth(
        self,
        conn: OAuthConnection,
        provider: OAuthProvider,
        failure: str,
        now: dt.datetime,
        *,
        dead: SecretData | None,
    ) -> Outcome:
        """The tokens are dead (refresh refused, or expired with no refresh token): drop
        them, ask the user to authorize again. `dead` is the token Secret as read when they
        were found dead, deleted only as it was read (DeleteOptions preconditions: its UID
        and resourceVersion): one written since (newer tokens another replica stored, or the
        Secret made again by the replica holding them) is not deleted, and
        _ChangedMeanwhileError says so (read again and decide anew). None: nothing read,
        nothing deleted."""
        name = conn.spec.token_secret_name
        if not await self.store.delete_unchanged(conn, name, dead):
            raise _ChangedMeanwhileError(
                f"Secret {name} changed since its tokens were found dead: not deleted, "
                "reading it again",
                reason="Conflict",
            )
        authz = await self.store.authorization(conn)
        outcome = await self._pending(conn, provider, authz, now, reauth=True, failure=failure)
        return outcome.with_events(
            Event("Warning", "ReauthRequired", f"{failure}: authorize again")
        )

    # -- deletion ------------------------------------------------------------------------

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:
        """Revoke and delete the Secrets this connection owns; a Secret of the same name it
        does not own (another connection's, a user's) is neither revoked nor deleted."""
        conn = OAuthConnection.model_validate(body)
        event: Event | None = None
        unsaved = self._unsaved.pop(str(conn.metadata.uid), None)
        data = await self.store.owned(conn, conn.spec.token_secret_name)
        if conn.spec.revoke_on_delete and unsaved is not None:  # the newest: never stored
            event = await self._revoke(conn, unsaved.tokens)
        elif conn.spec.revoke_on_delete and data is not None and data.get("access_token"):
            event = await self._revoke(conn, _token_set(data))
        await self.store.delete(conn, conn.spec.token_secret_name)
        await self.store.delete(conn, authorization_secret_name(str(conn.metadata.name)))
        return True, event

    async def _revoke(self, conn: OAuthConnection, tokens: TokenSet) -> Event:
        provider = self._provider(conn)
        try:
            creds = await self.store.client_credentials(conn)
            async for attempt in self.revoke_retry.retrying(
                retry_if=lambda e: isinstance(e, ProviderUnreachableError), sleep=self._sleep
            ):
                with attempt:
                    await provider.revoke(creds, tokens=tokens)
        except GrantRefusedError:
            return Event("Normal", "Revoked", f"the tokens were already revoked at {provider.name}")
        except (OAuthError, StalledError) as exc:
            message = (
                f"could not revoke the tokens at {provider.name} ({exc}); deleting them here "
                "anyway: they stay valid at the provider until they expire or the app is removed"
            )
            return Event("Warning", "RevokeFailed", message)
        return Event("Normal", "Revoked", f"tokens revoked at {provider.name}")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _refusal(conn: OAuthConnection, record: RefusedClient) -> str:
    """The ClientRefused message: the Secret and its keys, never a value."""
    ref = conn.spec.client_secret_ref
    return (
        f"spec.clientSecretRef: the provider refused the OAuth client of Secret {ref.name} "
        f"(keys {ref.client_id_key} and {ref.client_secret_key}): {record.error}; fix its "
        "client id or secret (tried again as soon as that Secret or the spec changes)"
    )


def _refused_grant(conn: OAuthConnection, what: str, code: str, spent: _Spent | None) -> str:
    """The provider refused `what` (`code`); with `spent`, why it most likely did: an
    operator refreshed with it at that time and lost the new tokens before storing them (a
    stopped one, or this one: its claim, e.g. the tokens dropped for newer ones). A replica
    paused by peering looks the same from here (its claim lapsed unrenewed), but still holds
    them: resuming, it writes them unless newer ones are stored (`_converge`)."""
    failure = f"the provider refused the {what} ({code})"
    if spent is None or not spent.at:
        return failure
    lost = (
        "were dropped by this operator"
        if spent.here
        else "were lost when the operator holding them stopped (a replica paused by kopf "
        "peering keeps them, and writes them if it acts again before newer tokens are stored)"
    )
    return (
        f"{failure}: it was already used by a refresh at {spent.at} whose new tokens could "
        f"not be written to Secret {conn.spec.token_secret_name} and {lost}; a provider that "
        "rotates refresh tokens (Slack) takes each one once"
    )


def _expired_unrefreshable(tokens: TokenSet, now: dt.datetime) -> str | None:
    """Why `tokens` are dead when their access token has expired (or its expiry is
    unreadable) and there is no refresh token; None when they are not."""
    expired = tokens.expires_at is not None and tokens.expires_at <= now
    if tokens.refresh_token is not None or not expired:
        return None
    when = (
        f"expired at {_rfc3339(tokens.expires_at)}"
        if tokens.expires_at != UNREADABLE_EXPIRY
        else "counts as expired (expires_at is not an RFC 3339 time)"
    )
    return f"the access token {when} and the provider issued no refresh token"


def _same_refresh_token(stored: UserToken, refused: UserToken) -> bool:
    """Whether the stored user token is the one whose refresh token was refused (the same
    refresh token): any other was issued to another writer, and is not ours to empty."""
    if stored.refresh_token is None or refused.refresh_token is None:
        return False
    return stored.refresh_token.get_secret_value() == refused.refresh_token.get_secret_value()


def _held_user_keys(stored: SecretData, held: _Held) -> dict[str, str] | None:
    """The `user_*` keys of Slack's user token `held` beside bot tokens older than the
    `stored` ones, when this replica's own refresh of the user token issued it and the
    Secret holds no user token or still the one whose refresh token that refresh spent.
    Any other user token stored came from a newer writer (ours was spent): it is kept, and
    no time stamped on another replica's clock is compared. None: nothing held to write (no
    user token, one carried over unrefreshed, or a code exchange's: one grant, whose user
    token is never written beside another grant's bot token)."""
    user = held.tokens.user
    if user is None or not held.refreshed or held.spent_user is None:
        return None
    kept = _user_token(stored)
    if kept is not None and not _same_refresh_token(kept, held.spent_user):
        return None
    data = token_data(held.tokens, issued=held.issued)
    return {key: data[key] for key in USER_TOKEN_KEYS}


def _newer_stored(stored: SecretData | None, held: _Held) -> bool:
    """The token Secret holds tokens issued after `held` (the user authorized again, or
    another replica refreshed while these waited): never overwrite newer tokens with older
    ones."""
    issued = _parse(stored.get("issued_at")) if stored is not None else None
    return issued is not None and issued > held.issued


def _was_connected(conn: OAuthConnection) -> bool:
    """The last converge found tokens in the token Secret (or another replica refreshing
    them): a Secret missing now was deleted behind the operator's back, which deletes it
    only with a ReauthRequired of its own."""
    phase = conn.status.phase if conn.status else None
    return phase in (OAuthPhase.CONNECTED, OAuthPhase.REFRESHING)


def _deleted_tokens(conn: OAuthConnection) -> str:
    """Why a connection that was Connected must be authorized again: its token Secret was
    deleted and no operator holds a copy (held tokens would have created it again)."""
    return (
        f"the token Secret {conn.spec.token_secret_name} was deleted and the operator holds "
        "no copy of its tokens (they stay valid at the provider until they expire or are "
        "revoked there)"
    )


def _usable(authz: SecretData | None, now: dt.datetime) -> bool:
    if authz is None or not authz.get("state") or not authz.get("code_verifier"):
        return False
    expires = _parse(authz.get("expires_at"))
    return expires is not None and expires > now


def _who(account: ConnectedAccount) -> str:
    return account.email or "/".join(x for x in (account.team_id, account.user_id) if x)


def from_context(
    ctx: OperatorContext,
    *,
    missing_client: Callable[[str, str], None] | None = None,
    settings: OAuthSettings | None = None,
) -> OAuthConnectionReconciler:
    """The reconciler on the operator's client, with both providers from `settings` (loaded
    when not given; SettingsError when they cannot work); `missing_client` is told of a
    client Secret found missing (the handlers pass the client watch's `await_creation`)."""
    settings = settings or OAuthSettings.load()
    timeout = settings.http_timeout_seconds
    providers: dict[str, OAuthProvider] = {
        "slack": SlackOAuth(settings.endpoints("slack"), timeout=timeout),
        "google": GoogleOAuth(settings.endpoints("google"), timeout=timeout),
    }
    return OAuthConnectionReconciler(
        SecretStore(ctx.client, limit=ctx.api_limit, missing_client=missing_client),
        providers,
        settings=settings,
    )
