"""``/api/v1/reports``: a report of the caller's tenant for a period, as a CSV or PDF
download (``services.analytics.reports``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.analytics.deps import AnalyticsDep, CallerDep
from services.analytics.reports import (
    KINDS,
    Period,
    ReportError,
    generate_report,
    parse_format,
    parse_kind,
    parse_period,
)
from services.common.errors import field_error

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

From = Annotated[
    str | None,
    Query(alias="from", description="Start (ISO 8601, UTC when no zone); default: to - 7 days."),
]
To = Annotated[str | None, Query(alias="to", description="End (ISO 8601); default: now.")]
Format = Annotated[str, Query(alias="format", description="csv or pdf.")]


def _request(kind: str, fmt: str, start: str | None, end: str | None) -> Period:
    try:
        parse_kind(kind)
        parse_format(fmt)
        return parse_period(start, end, now=dt.datetime.now(dt.UTC))
    except ReportError as exc:
        raise field_error(exc.parameter, exc.message) from exc


@router.get(
    "/{kind}",
    summary=f"A report for a period as a download ({', '.join(KINDS)}; csv or pdf)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/pdf": {}}}},
)
async def download(
    kind: str,
    a: AnalyticsDep,
    caller: CallerDep,
    start: From = None,
    end: To = None,
    fmt: Format = "pdf",
) -> Response:
    period = _request(kind, fmt, start, end)
    file = await generate_report(a, kind=kind, tenant=caller.tenant, period=period, fmt=fmt)
    return Response(
        file.content,
        media_type=file.media_type,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )
