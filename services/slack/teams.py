"""Which tenants a Slack workspace (team) belongs to, for the Events API webhook.

Slack sends one webhook for every workspace that installed the app; the event's ``team_id``
says which. The tenants are those whose slack OAuthConnection is usable and whose
``status.account.teamId`` is that team (never a token is read). A lookup is reused for
``teams_cache_seconds``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from apis.v1alpha1.oauthconnection import OAuthProvider
from services.common.connections import usable_connections

__all__ = ["KubeTeamDirectory", "TeamDirectory"]


class TeamDirectory(Protocol):
    async def tenants(self, team_id: str) -> list[str]:
        """The tenants connected to ``team_id`` (none when nobody is)."""
        ...


class KubeTeamDirectory:
    """Team -> tenants from the OAuthConnections in the cluster (lightkube)."""

    def __init__(
        self, client: Any, *, namespace: str | None = None, cache_seconds: float = 10.0
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._ttl = cache_seconds
        self._cached: tuple[float, dict[str, list[str]]] | None = None

    async def tenants(self, team_id: str) -> list[str]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._ttl:
            self._cached = (now, await self._load())
        return self._cached[1].get(team_id, [])

    async def _load(self) -> dict[str, list[str]]:
        teams: dict[str, list[str]] = {}
        conns = await usable_connections(
            self._client, OAuthProvider.SLACK, namespace=self._namespace
        )
        for conn in conns:
            account = conn.status.account if conn.status else None
            if account and account.team_id:
                tenants = teams.setdefault(account.team_id, [])
                if conn.spec.tenant not in tenants:
                    tenants.append(conn.spec.tenant)
        return teams
