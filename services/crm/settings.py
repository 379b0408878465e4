"""CRM settings, read from the environment (prefix ``XYNERGY_CRM_``).

Every setting is listed in docs/services/crm.md. The identity key is shared with the gateway
and read by :class:`services.common.settings.InternalIdentitySettings`
(``XYNERGY_INTERNAL_SIGNING_KEY``). ``FIRESTORE_EMULATOR_HOST`` points the Firestore client
at the emulator, as the client library itself defines.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CrmSettings"]


class CrmSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_CRM_", extra="ignore")

    project_id: str = Field(
        default="demo-xynergy",
        validation_alias=AliasChoices("XYNERGY_CRM_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"),
        description="Google Cloud project of the Firestore database.",
    )
    database: str = Field(default="(default)", description="Firestore database id.")
    redis_url: str | None = Field(
        default="redis://127.0.0.1:6379/0",
        description="Where `crm-changes` events are published; empty turns events off.",
    )
    events_topic: str = "crm-changes"
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)
    default_page_size: int = Field(default=50, ge=1, le=100)
    firestore_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long one API request may wait on Firestore; then 503 + Retry-After.",
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=64 << 10, description="Larger request bodies are refused with 413."
    )
    cache_max_age_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="max-age of Cache-Control: private on reads under /contacts; 0: no-store.",
    )
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    log_level: str = "INFO"
    access_log: bool = True
