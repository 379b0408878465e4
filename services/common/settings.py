"""Settings shared by every service, read from the environment with pydantic-settings.

Each service declares its own ``BaseSettings`` subclass with its own env prefix; the pieces
every service needs (how to verify users, how to verify the gateway's internal identity) live
here so they are named and documented once. See docs/gateway.md for the full list.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AuthSettings", "InternalIdentitySettings"]


class AuthSettings(BaseSettings):
    """How end-user tokens are verified (env prefix ``XYNERGY_AUTH_``)."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_AUTH_", extra="ignore")

    jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("XYNERGY_AUTH_JWT_SECRET", "JWT_SECRET"),
        description="HS256 secret of the platform's own JWTs; JWT mode is off when unset.",
    )
    jwt_issuer: str = "xynergy"
    jwt_audience: str = "xynergy-api"
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    firebase_enabled: bool = True
    firebase_project_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "XYNERGY_AUTH_FIREBASE_PROJECT_ID", "FIREBASE_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"
        ),
    )
    tenant_claims: tuple[str, ...] = ("tenant_id", "tenantId")


class InternalIdentitySettings(BaseSettings):
    """The gateway-to-service identity token (env prefix ``XYNERGY_INTERNAL_``)."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_INTERNAL_", extra="ignore")

    signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="Shared HS256 key; the gateway signs, services verify. Required.",
    )
    ttl_seconds: int = Field(default=60, ge=5, le=3600)
    issuer: str = "xynergy-gateway"
    audience: str = "xynergy-services"
