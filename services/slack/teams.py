"""Which tenants a Slack workspace (team) belongs to, for the Events API webhook.

Slack sends one webhook for every workspace that installed the app; the event's ``team_id``
says which. The tenants are those whose slack OAuthConnection is usable and whose
``status.account.teamId`` is that team (read through the apis model; never a token). A lookup
is reused for ``teams_cache_seconds``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from pydantic import ValidationError

from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import OAuthConnection, OAuthPhase, OAuthProvider

__all__ = ["KubeTeamDirectory", "TeamDirectory"]

_USABLE = (OAuthPhase.CONNECTED, OAuthPhase.REFRESHING)


class TeamDirectory(Protocol):
    async def tenants(self, team_id: str) -> list[str]:
        """The tenants connected to ``team_id`` (none when nobody is)."""
        ...


class KubeTeamDirectory:
    """Team -> tenants from the OAuthConnections in the cluster (lightkube)."""

    def __init__(
        self, client: Any, *, namespace: str | None = None, cache_seconds: float = 10.0
    ) -> None:
        from lightkube.generic_resource import create_namespaced_resource

        crd = OAuthConnection.crd
        self._resource = create_namespaced_resource(GROUP, VERSION, crd.kind, crd.plural)
        self._client = client
        self._namespace = namespace or "*"
        self._ttl = cache_seconds
        self._cached: tuple[float, dict[str, list[str]]] | None = None

    async def tenants(self, team_id: str) -> list[str]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._ttl:
            self._cached = (now, await self._load())
        return self._cached[1].get(team_id, [])

    async def _load(self) -> dict[str, list[str]]:
        teams: dict[str, list[str]] = {}
        async for item in self._client.list(self._resource, namespace=self._namespace):
            raw = item if isinstance(item, dict) else item.to_dict()
            try:
                conn = OAuthConnection.model_validate(raw)
            except ValidationError:
                continue
            status = conn.status
            if conn.spec.provider != OAuthProvider.SLACK or status is None:
                continue
            team = status.account.team_id if status.account else None
            if team and status.phase in _USABLE and conn.spec.tenant not in teams.get(team, []):
                teams.setdefault(team, []).append(conn.spec.tenant)
        return teams
