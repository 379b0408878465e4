"""Gmail service settings, read from the environment (prefix ``XYNERGY_GMAIL_``).

Every setting is listed in docs/services/gmail.md. Tokens are not settings: they come from the
tenant's OAuthConnection through :mod:`services.common.oauth_tokens` (``XYNERGY_OAUTH_*``).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GmailSettings"]


class GmailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_GMAIL_", extra="ignore")

    api_url: str = Field(
        default="https://gmail.googleapis.com/",
        pattern=r"^https?://\S+/$",
        description="Root URL of the Gmail API (ends with '/'); the discovery document is the "
        "one google-api-python-client ships, never fetched.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="History ids, poll locks and the `email-updates` stream.",
    )
    events_topic: str = "email-updates"
    poll_interval_seconds: float = Field(
        default=30.0, ge=0, description="History polling period per connection; 0 turns it off."
    )
    poll_lock_seconds: int = Field(
        default=120, ge=5, description="How long one replica holds a connection's poll."
    )
    request_timeout_seconds: int = Field(default=30, ge=1, le=300)
    max_send_bytes: int = Field(
        default=25 << 20, ge=1 << 20, description="Larger messages (with attachments) get 413."
    )
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    log_level: str = "INFO"
