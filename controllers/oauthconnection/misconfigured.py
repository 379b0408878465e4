"""The OAuthConnection reconciler of an operator whose XYNERGY_OAUTH_* settings cannot work.

A bad OAuth setting must not stop the operator (XynergyServices, Rollouts and ScalingPolicies
keep being reconciled), nor may it act on connections with settings it cannot trust. So each
connection is only reported: Ready False, Stalled `InvalidSettings`, the message naming each
setting and why (never a value of a Secret), and nothing else is done (no code exchange,
refresh or revoke; no Secret read, written or deleted). The phase of a connection whose
stored tokens services use (Connected, Refreshing) is kept, with its expiry: the tokens in its
Secret work until they expire, and readers see them expire (services/common/oauth_tokens.py);
any other phase becomes Error, without an authorization URL (the code it would bring could not
be exchanged). A deletion waits until an operator with valid settings revokes the tokens (the
finalizer stays; the status says why). Fixing the settings and restarting the operator
converges every connection as usual. Imports no authlib.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from apis.conditions import get_condition, mark_stalled
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import OAuthConnectionStatus, OAuthPhase
from controllers.core import ChildEvent, Event, Kind, Requeue, Result

__all__ = ["INVALID_SETTINGS", "MisconfiguredReconciler"]

INVALID_SETTINGS = "InvalidSettings"
KIND = Kind(GROUP, VERSION, "OAuthConnection", "oauthconnections")
_KEPT = (OAuthPhase.CONNECTED, OAuthPhase.REFRESHING)


class MisconfiguredReconciler:
    """Reports every OAuthConnection Stalled `InvalidSettings` and touches nothing else."""

    kind = KIND

    def __init__(
        self, problem: str, *, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    ) -> None:
        self.problem = problem
        """SettingsError's message: each bad XYNERGY_OAUTH_* variable and why (no value of a
        Secret: the settings hold none)."""
        self._clock = clock

    def _message(self, *, deleting: bool = False) -> str:
        if deleting:
            return (
                f"{self.problem}; the deletion waits for an operator with valid settings to "
                "revoke the tokens (the Secrets are kept until then; removing the finalizer "
                "by hand lets it go without revoking them)"
            )
        return (
            f"{self.problem}; the operator does not exchange, refresh or revoke tokens of any "
            "OAuthConnection until its XYNERGY_OAUTH_* settings are fixed and it is restarted"
        )

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
        return stored.model_copy(
            update={
                "conditions": conditions,
                "phase": OAuthPhase.ERROR,
                "authorization_url": None,
                "expires_at": None,
            }
        )

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        message = self._message()
        status = self._status(body, message, now)
        before = get_condition(_stored(body).conditions, "Stalled")  # said once, not per look
        said = before is not None and before.status == "True" and before.reason == INVALID_SETTINGS
        events = () if said else (Event("Warning", INVALID_SETTINGS, message),)
        return Result(status=status, events=events, requeue=Requeue.RESYNC)

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:
        """Held: revoking needs the provider's endpoints, which these settings may name
        wrongly; letting go would let the garbage collector delete the owned token Secret with
        tokens still valid at the provider."""
        message = self._message(deleting=True)
        return False, Event("Warning", INVALID_SETTINGS, message, key=INVALID_SETTINGS)

    def deletion_status(self, body: Mapping[str, Any]) -> OAuthConnectionStatus | None:
        """The status while the deletion waits: Stalled `InvalidSettings`, saying so."""
        return self._status(body, self._message(deleting=True), self._clock())


def _stored(body: Mapping[str, Any]) -> OAuthConnectionStatus:
    try:
        return OAuthConnectionStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return OAuthConnectionStatus()
