"""Slack service settings, read from the environment (prefix ``XYNERGY_SLACK_``).

Every setting is listed in docs/services/slack.md. Tokens are not settings: they come from the
tenant's OAuthConnection through :mod:`services.common.oauth_tokens` (``XYNERGY_OAUTH_*``). The
signing secret is the Slack app's, shared by every workspace that installed it.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SlackSettings"]


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_SLACK_", extra="ignore")

    api_url: str = Field(
        default="https://slack.com/api/",
        pattern=r"^https?://\S+/$",
        description="Base URL of the Slack Web API (ends with '/').",
    )
    signing_secret: SecretStr = Field(
        default=SecretStr(""),
        description="The Slack app's signing secret; the events webhook answers 503 without it.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Replay detection of webhook requests and the `slack-messages` stream.",
    )
    events_topic: str = "slack-messages"
    timestamp_tolerance_seconds: int = Field(
        default=300, ge=30, le=900, description="Older (or newer) webhook requests are refused."
    )
    event_dedup_seconds: int = Field(
        default=3600, ge=60, description="How long an event id is remembered (Slack retries)."
    )
    request_timeout_seconds: int = Field(default=15, ge=1, le=120)
    teams_cache_seconds: float = Field(
        default=10.0, ge=0, description="How long a team -> tenants lookup is reused."
    )
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    log_level: str = "INFO"
