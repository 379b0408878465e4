"""FastAPI dependencies: the app's parts (``app.state.analytics``) and the caller."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from services.analytics.alerts import AnomalyEngine
from services.analytics.cluster import ClusterReader
from services.analytics.collectors import AiLedger
from services.analytics.costs import Costs
from services.analytics.ingest import EventIngest
from services.analytics.pubsub import PubSubIngest
from services.analytics.settings import AnalyticsSettings
from services.analytics.stores import SqlStore
from services.analytics.workflows import Orchestrator
from services.common.errors import ApiError
from services.common.identity import IDENTITY_HEADER, require_identity
from services.common.roles import has_role
from services.common.tenancy import Identity

__all__ = ["Analytics", "AnalyticsDep", "Caller", "CallerDep", "EditorDep"]


@dataclass
class Analytics:
    settings: AnalyticsSettings
    store: SqlStore
    costs: Costs
    ledger: AiLedger
    orchestrator: Orchestrator
    ingest: EventIngest | None = None
    pubsub: PubSubIngest | None = None
    """The Google Pub/Sub ingest, when ``PUBSUB_PROJECT`` asks for one."""
    cluster: ClusterReader | None = None
    anomalies: AnomalyEngine | None = None
    started: float = field(default_factory=time.time)

    def need_cluster(self) -> ClusterReader:
        if self.cluster is None:
            raise ApiError(503, "no access to the Kubernetes API (XYNERGY_ANALYTICS_KUBERNETES)")
        return self.cluster

    def need_anomalies(self) -> AnomalyEngine:
        if self.anomalies is None:
            raise ApiError(503, "no Prometheus configured (XYNERGY_ANALYTICS_PROMETHEUS_URL)")
        return self.anomalies


@dataclass(frozen=True)
class Caller:
    identity: Identity
    token: str

    @property
    def tenant(self) -> str:
        return self.identity.tenant_id


def _analytics(request: Request) -> Analytics:
    parts: Analytics = request.app.state.analytics
    return parts


def _caller(request: Request) -> Caller:
    identity = require_identity(request)
    return Caller(identity, request.headers[IDENTITY_HEADER])


def _editor(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
    if not has_role(caller.identity, "editor"):
        raise ApiError(403, "this needs the editor role")
    return caller


AnalyticsDep = Annotated[Analytics, Depends(_analytics)]
CallerDep = Annotated[Caller, Depends(_caller)]
EditorDep = Annotated[Caller, Depends(_editor)]


def view(obj: Any) -> Any:
    """A JSON-able form of dataclasses with datetimes (for answers)."""
    import dataclasses
    import datetime as dt

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: view(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: view(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [view(v) for v in obj]
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    return obj
