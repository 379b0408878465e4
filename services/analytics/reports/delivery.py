"""Reports by email: the Gmail service sends them from the tenant's OAuth-connected account
(``POST /api/v2/gmail/messages/send``, the file as an attachment), called with a signed
identity of an editor of that tenant (the caller's own, or one a scheduled step signs with
``services.common.identity.InternalIdentitySigner``). Tokens stay in the Gmail service."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.analytics.reports.generate import ReportFile
from services.common.identity import IDENTITY_HEADER

__all__ = ["DeliveryError", "ReportSettings", "deliver_report"]

SEND_PATH = "/api/v2/gmail/messages/send"


class ReportSettings(BaseSettings):
    """Report delivery settings (prefix ``XYNERGY_ANALYTICS_REPORTS_``)."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_ANALYTICS_REPORTS_", extra="ignore")

    gmail_url: str = Field(
        default="", pattern=r"^(https?://\S+)?$", description="The Gmail service; '' = none."
    )
    timeout_seconds: float = Field(default=60.0, gt=0, le=300)


class DeliveryError(Exception):
    """The Gmail service refused or failed; ``status`` is what to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def deliver_report(
    file: ReportFile,
    *,
    settings: ReportSettings,
    identity: str,
    recipients: list[str],
    subject: str,
    text: str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Send ``file`` to ``recipients``; the Gmail service's answer (message and thread id)."""
    if not settings.gmail_url:
        raise DeliveryError(
            503, "no Gmail service configured (XYNERGY_ANALYTICS_REPORTS_GMAIL_URL)"
        )
    body = {
        "to": recipients,
        "subject": subject,
        "text": text,
        "attachments": [
            {
                "filename": file.filename,
                "content_type": file.media_type.split(";")[0],
                "data": base64.b64encode(file.content).decode(),
            }
        ],
    }
    url = settings.gmail_url.rstrip("/") + SEND_PATH
    async with httpx.AsyncClient(timeout=settings.timeout_seconds, transport=transport) as http:
        try:
            r = await http.post(url, json=body, headers={IDENTITY_HEADER: identity})
        except httpx.HTTPError as exc:
            raise DeliveryError(502, f"Gmail service: {type(exc).__name__}") from exc
    if r.status_code != 201:
        message = _message(r)
        status = r.status_code if r.status_code in (403, 409, 413, 422) else 502
        raise DeliveryError(status, f"Gmail service ({r.status_code}): {message}")
    answer: dict[str, Any] = r.json()
    return answer


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", ""))[:500]
    except ValueError:
        return r.text[:200]
