"""``/dashboard``: the Platform Dashboard page, its static files and its panels.

- ``GET /dashboard``: the page shell (no data; public through the gateway).
- ``GET /dashboard/static/...``: the page's script, style and the vendored socket.io client.
- ``GET /dashboard/panels``: every panel as server-rendered HTML for the caller's tenant,
  with the tenant's workflow schedules and their last runs (behind the gateway's auth like
  every other endpoint: the page sends its Bearer token).

The page takes its token as a frontend does (see docs/services/analytics.md: the URL
fragment ``#token=...`` once, then sessionStorage), connects to the gateway's socket.io stream
with it, subscribes to ``platform-status`` and ``anomaly-alerts`` and re-reads the panels
when one arrives (and every ``POLL_SECONDS`` in case the stream is down).
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from services.analytics.dashboard.render import e, panels
from services.analytics.deps import AnalyticsDep, CallerDep
from services.analytics.routers.platform import complete
from services.analytics.routers.schedules import SchedulerDep, schedule_summary

__all__ = ["STATIC", "router", "static_files"]

HERE = Path(__file__).parent
STATIC = HERE / "static"
STREAM_PATH = "/api/xynergyos/v2/stream"
router = APIRouter(prefix="/dashboard", tags=["dashboard"])
_NO_STORE = {"Cache-Control": "no-store"}


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)


@router.get("", response_class=HTMLResponse, summary="The Platform Dashboard page")
async def page() -> HTMLResponse:
    text = (HERE / "templates" / "index.html").read_text()
    return HTMLResponse(text.replace("{{stream_path}}", e(STREAM_PATH)), headers=_NO_STORE)


@router.get("/panels", response_class=HTMLResponse, summary="The dashboard's panels (HTML)")
async def panels_html(a: AnalyticsDep, scheduler: SchedulerDep, caller: CallerDep) -> HTMLResponse:
    data = await complete(a, caller)
    try:
        data["schedules"] = await schedule_summary(scheduler, caller.tenant)
    except Exception as exc:  # Redis down: the panel says so, the page still renders
        data["schedules"] = {"error": f"schedules not readable: {type(exc).__name__}"}
    return HTMLResponse(panels(data, now=time.time()), headers=_NO_STORE)
