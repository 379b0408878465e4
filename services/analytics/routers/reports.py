"""``/api/v1/reports``: a report of the caller's tenant for a period, as a CSV or PDF
download (``services.analytics.reports``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.analytics.deps import AnalyticsDep, CallerDep, EditorDep
from services.analytics.reports import (
    FORMATS,
    KINDS,
    Period,
    Report,
    ReportError,
    build_report,
    generate_report,
    parse_format,
    parse_kind,
    parse_period,
    render,
)
from services.analytics.reports.delivery import DeliveryError, ReportSettings, deliver_report
from services.analytics.reports.sources import Sources
from services.common.errors import ApiError, field_error
from services.common.mail import ONE_LINE_PATTERN, EmailAddress

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

From = Annotated[
    str | None,
    Query(alias="from", description="Start (ISO 8601, UTC when no zone); default: to - 7 days."),
]
To = Annotated[str | None, Query(alias="to", description="End (ISO 8601); default: now.")]
# documented as the enums they are (checked by hand, so a 422 names the parameter)
Format = Annotated[
    str, Query(alias="format", description="csv or pdf.", json_schema_extra={"enum": list(FORMATS)})
]
Kind = Annotated[str, Path(description="The report.", json_schema_extra={"enum": list(KINDS)})]


@dataclass(frozen=True)
class Asked:
    kind: str
    fmt: str
    period: Period


def _asked(kind: Kind, start: From = None, end: To = None, fmt: Format = "pdf") -> Asked:
    """The report asked for, checked: 422 naming ``kind``, ``format``, ``from`` or ``to``."""
    try:
        return Asked(
            parse_kind(kind),
            parse_format(fmt),
            parse_period(start, end, now=dt.datetime.now(dt.UTC)),
        )
    except ReportError as exc:
        raise field_error(exc.parameter, exc.message) from exc


AskedDep = Annotated[Asked, Depends(_asked)]


@router.get(
    "/{kind}",
    summary=f"A report for a period as a download ({', '.join(KINDS)}; csv or pdf)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/pdf": {}}}},
)
async def download(a: AnalyticsDep, caller: CallerDep, asked: AskedDep) -> Response:
    file = await generate_report(
        a, kind=asked.kind, tenant=caller.tenant, period=asked.period, fmt=asked.fmt
    )
    return Response(
        file.content,
        media_type=file.media_type,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )


Address = EmailAddress


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipients: list[Address] = Field(min_length=1, max_length=50)
    subject: str | None = Field(default=None, max_length=200, pattern=ONE_LINE_PATTERN)
    message: str | None = Field(default=None, max_length=10_000)


def _settings(request: Request) -> ReportSettings:
    state = request.app.state
    if getattr(state, "report_settings", None) is None:
        state.report_settings = ReportSettings()
    settings: ReportSettings = state.report_settings
    return settings


def _text(report: Report, message: str | None) -> str:
    lines = [message, ""] if message else []
    lines.append(f"{report.title} of {report.tenant}, {report.period.label()}.")
    lines += [f"{k}: {v}" for k, v in report.summary]
    return "\n".join(lines)


@router.post(
    "/{kind}/deliver",
    status_code=201,
    summary="Send a report by email from the tenant's Gmail connection (editors)",
)
async def deliver(
    a: AnalyticsDep, caller: EditorDep, asked: AskedDep, body: Delivery, request: Request
) -> dict[str, Any]:
    report = await build_report(
        Sources.of(a), kind=asked.kind, tenant=caller.tenant, period=asked.period
    )
    file = render(report, asked.fmt)
    try:
        sent = await deliver_report(
            file,
            settings=_settings(request),
            identity=caller.token,
            recipients=body.recipients,
            subject=body.subject or f"{report.title}: {report.period.label()}",
            text=_text(report, body.message),
        )
    except DeliveryError as exc:
        raise ApiError(exc.status, exc.message) from exc
    return {"filename": file.filename, "recipients": body.recipients, **sent}
