"""The OAuthConnection reconciler of an operator whose XYNERGY_OAUTH_* settings cannot work.

A bad OAuth setting must not stop the operator (XynergyServices, Rollouts and ScalingPolicies
keep being reconciled), nor may it act on connections with settings it cannot trust. So each
connection is only reported: Ready False, Stalled `InvalidSettings`, the message naming each
setting and why (never a value of a Secret), and nothing else is done (no code exchange,
refresh or revoke; no Secret written or deleted, and none read but by a deletion, below). The
phase is kept: a connection whose stored tokens services use (Connected, Refreshing) keeps its
expiry (the tokens in its Secret work until they expire, and readers see them expire,
services/common/oauth_tokens.py); one waiting for the user (PendingAuthorization,
ReauthRequired; a new one reads PendingAuthorization) keeps saying it has no tokens, without
an authorization URL (the code it would bring could not be exchanged). A deletion with
something to revoke (`spec.revokeOnDelete` and an owned token Secret holding an access token:
one read, nothing written) waits until an operator with valid settings revokes the tokens
(the finalizer stays; the status says why); with nothing to revoke it is let go at once.
Fixing the settings and restarting the operator converges every connection as usual. Imports
no authlib.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError

from apis.conditions import get_condition, mark_stalled
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import OAuthConnection, OAuthConnectionStatus, OAuthPhase
from controllers.core import ChildEvent, Event, Kind, ProviderError, Requeue, Result

__all__ = ["INVALID_SETTINGS", "HoldsTokens", "MisconfiguredReconciler"]

log = logging.getLogger(__name__)

HoldsTokens = Callable[[OAuthConnection], Awaitable[bool]]
"""Whether the connection's token Secret is its own and holds an access token: a read only
(`SecretStore.holds_tokens`)."""

INVALID_SETTINGS = "InvalidSettings"
KIND = Kind(GROUP, VERSION, "OAuthConnection", "oauthconnections")
_KEPT = (OAuthPhase.CONNECTED, OAuthPhase.REFRESHING)
_WAITING = (OAuthPhase.PENDING_AUTHORIZATION, OAuthPhase.REAUTH_REQUIRED)


class MisconfiguredReconciler:
    """Reports every OAuthConnection Stalled `InvalidSettings` and touches nothing else."""

    kind = KIND

    def __init__(
        self,
        problem: str,
        *,
        holds_tokens: HoldsTokens,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.problem = problem
        """SettingsError's message: each bad XYNERGY_OAUTH_* variable and why (no value of a
        Secret: the settings hold none)."""
        self._holds_tokens = holds_tokens
        """Read by a deletion only, to let go of a connection with nothing to revoke."""
        self._clock = clock

    def _message(self, body: Mapping[str, Any], *, deleting: bool = False) -> str:
        if deleting:
            return (
                f"{self.problem}; the deletion waits for an operator with valid settings to "
                "revoke the tokens (the Secrets are kept until then; removing the finalizer "
                "by hand lets it go without revoking them)"
            )
        message = (
            f"{self.problem}; the operator does not exchange, refresh or revoke tokens of any "
            "OAuthConnection until its XYNERGY_OAUTH_* settings are fixed and it is restarted"
        )
        if _phase(body) in _WAITING:
            message += (
                "; the connection has no tokens (it waits for the user to authorize, and no "
                "authorization URL is offered until then)"
            )
        return message

    def _status(
        self, body: Mapping[str, Any], message: str, now: dt.datetime
    ) -> OAuthConnectionStatus:
        stored = _stored(body)
        generation = (body.get("metadata") or {}).get("generation")
        conditions = mark_stalled(
            list(stored.conditions),
            reason=INVALID_SETTINGS,
            message=message,
            generation=generation,
            now=now,
        )
        conditions = [c for c in conditions if c.type != "Degraded"]  # only beside Ready True
        if stored.phase in _KEPT:  # its stored tokens still serve until they expire
            return stored.model_copy(update={"conditions": conditions, "authorization_url": None})
        return stored.model_copy(  # the phase says what it was: "no tokens" stays visible
            update={
                "conditions": conditions,
                "phase": _phase(body),
                "authorization_url": None,
                "expires_at": None,
            }
        )

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        message = self._message(body)
        status = self._status(body, message, now)
        before = get_condition(_stored(body).conditions, "Stalled")  # said once, not per look
        said = before is not None and before.status == "True" and before.reason == INVALID_SETTINGS
        events = () if said else (Event("Warning", INVALID_SETTINGS, message),)
        return Result(status=status, events=events, requeue=Requeue.RESYNC)

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:
        """Held while there is something to revoke: revoking needs the provider's endpoints,
        which these settings may name wrongly, and letting go would let the garbage collector
        delete the owned token Secret with tokens still valid at the provider. Let go when
        nothing is to be revoked: `spec.revokeOnDelete` false (also when set during the
        wait), or no access token in a token Secret this connection owns (never connected,
        or waiting to authorize again; a read, nothing written). A read that fails holds."""
        if not await self._revokes(body):
            return True, None
        message = self._message(body, deleting=True)
        return False, Event("Warning", INVALID_SETTINGS, message, key=INVALID_SETTINGS)

    async def _revokes(self, body: Mapping[str, Any]) -> bool:
        if (body.get("spec") or {}).get("revokeOnDelete") is False:
            return False
        try:
            conn = OAuthConnection.model_validate(body)
            return await self._holds_tokens(conn)
        except ValidationError:  # no token Secret to read by: held, as before
            return True
        except ProviderError as exc:  # the apiserver's answer; never a value of the Secret
            log.warning(
                "OAuthConnection %s/%s: its deletion waits: the token Secret could not be read: %s",
                (body.get("metadata") or {}).get("namespace"),
                (body.get("metadata") or {}).get("name"),
                exc.message,
            )
            return True

    def deletion_status(self, body: Mapping[str, Any]) -> OAuthConnectionStatus | None:
        """The status while the deletion waits: Stalled `InvalidSettings`, saying so."""
        return self._status(body, self._message(body, deleting=True), self._clock())


def _phase(body: Mapping[str, Any]) -> OAuthPhase:
    """The stored phase; a connection with none (new) is waiting for its first
    authorization."""
    return _stored(body).phase or OAuthPhase.PENDING_AUTHORIZATION


def _stored(body: Mapping[str, Any]) -> OAuthConnectionStatus:
    try:
        return OAuthConnectionStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return OAuthConnectionStatus()
