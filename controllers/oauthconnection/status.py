"""Pure: what one converge found (an `Outcome`) -> the OAuthConnection's status and events.

Ready is True only while Connected. PendingAuthorization and ReauthRequired are Ready=False
with Reconciling=False: the user has to act (visit `status.authorizationURL`), so they are
reported as Stalled with reason `AuthorizationRequired` (kstatus: Failed until authorized).
Degraded (only while True, only beside Ready=True) says what is wrong with a connection whose
tokens still work: a refresh that cannot be made (the client Secret missing or refused),
Slack's user token lost, or newer tokens not written to the Secret yet (retried with backoff
while the stored access token is still valid). `refreshFailures` is the reconciler's count of
failed refresh requests; this module keeps the stored one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from apis.conditions import mark_ready, mark_reconciling, mark_stalled, set_condition
from apis.v1alpha1.oauthconnection import (
    ConnectedAccount,
    OAuthConnection,
    OAuthConnectionStatus,
    OAuthPhase,
)
from controllers.core import Event

__all__ = ["DEGRADED", "Outcome", "build_status"]

DEGRADED = "Degraded"


@dataclass(frozen=True)
class Outcome:
    """The state a converge left the connection in (no token in any field)."""

    phase: OAuthPhase
    reason: str
    message: str
    authorization_url: str | None = None
    account: ConnectedAccount | None = None
    granted_scopes: tuple[str, ...] | None = None
    expires_at: dt.datetime | None = None
    last_refresh_time: dt.datetime | None = None
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    failed: bool = False
    """A transient failure (Reconciling, retried with backoff), not a user's task."""
    retry: bool = False
    """Look again after the backoff although nothing failed for users (Connected while newer
    tokens wait to be written: the stored ones still work)."""
    degraded: tuple[str, str] | None = None
    """Connected, but (reason, message): what the user should fix before the tokens expire."""

    def with_events(self, *events: Event) -> Outcome:
        return replace(self, events=(*self.events, *events))


def build_status(
    conn: OAuthConnection, outcome: Outcome, now: dt.datetime
) -> OAuthConnectionStatus:
    """The status for `outcome`, keeping what it does not say from the stored status."""
    stored = conn.status or OAuthConnectionStatus()
    generation = conn.metadata.generation
    conditions = list(stored.conditions)
    if outcome.phase is OAuthPhase.CONNECTED and not outcome.failed:
        conditions = mark_ready(
            conditions,
            reason=outcome.reason,
            message=outcome.message,
            generation=generation,
            now=now,
        )
    elif outcome.failed or outcome.phase is OAuthPhase.REFRESHING:
        conditions = mark_reconciling(
            conditions,
            reason=outcome.reason,
            message=outcome.message,
            generation=generation,
            now=now,
        )
    else:
        conditions = mark_stalled(
            conditions,
            reason=outcome.reason,
            message=outcome.message,
            generation=generation,
            now=now,
        )
    if outcome.degraded is None or outcome.phase is not OAuthPhase.CONNECTED:
        conditions = [c for c in conditions if c.type != DEGRADED]
    else:  # on the list that holds the previous one: its lastTransitionTime stays put
        conditions = set_condition(
            conditions,
            type_=DEGRADED,
            status="True",
            reason=outcome.degraded[0],
            message=outcome.degraded[1],
            observed_generation=generation,
            now=now,
        )
    connected = outcome.phase in (OAuthPhase.CONNECTED, OAuthPhase.REFRESHING)
    return OAuthConnectionStatus(
        conditions=conditions,
        phase=outcome.phase,
        authorization_url=outcome.authorization_url,
        account=outcome.account or stored.account,
        granted_scopes=list(outcome.granted_scopes or stored.granted_scopes or []) or None,
        expires_at=outcome.expires_at if connected else None,
        last_refresh_time=outcome.last_refresh_time or stored.last_refresh_time,
        refresh_failures=stored.refresh_failures,
    )
