"""Settings shared by every service, read from the environment with pydantic-settings.

Each service declares its own ``BaseSettings`` subclass with its own env prefix; the pieces
every service needs (how to verify users, how to verify the gateway's internal identity) live
here so they are named and documented once. See docs/gateway.md for the full list.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "AuthSettings",
    "InternalIdentitySettings",
    "KeyRotationSettings",
    "SettingsError",
    "env_variables",
    "load_settings",
    "settings_error",
]

S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """Settings from the environment that do not validate, each named by its variable."""


def _variables(cls: type[BaseSettings], field: str) -> str:
    """The environment variable(s) a field is read from, e.g. ``JWT_SECRET``."""
    info = cls.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return " / ".join(str(c) for c in alias.choices)
    if isinstance(alias, str):
        return alias
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


def env_variables(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable ``cls`` reads."""
    return {v for field in cls.model_fields for v in _variables(cls, field).split(" / ")}


def load_settings(cls: type[S]) -> S:
    """``cls()`` from the environment; a SettingsError naming each variable that is wrong
    (what was expected, never the value: it may be a secret)."""
    try:
        return cls()
    except ValidationError as exc:
        raise _described(exc, cls) from None


def _settings_class(title: str) -> type[BaseSettings] | None:
    """The loaded BaseSettings subclass called ``title`` (a ValidationError's title)."""
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        cls = pending.pop()
        if cls.__name__ == title and cls is not BaseSettings:
            return cls
        pending.extend(cls.__subclasses__())
    return None


def settings_error(exc: ValidationError) -> SettingsError | None:
    """``exc`` as a SettingsError naming each variable that is wrong (as ``load_settings``
    says it), found by the settings class the error names; None when ``exc`` is not about a
    loaded settings class (a request body, say)."""
    cls = _settings_class(exc.title)
    return None if cls is None else _described(exc, cls)


def _described(exc: ValidationError, cls: type[BaseSettings]) -> SettingsError:
    """Each variable that is wrong and what was expected, never the value given (it may be
    a secret)."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        problems.append(f"{_variables(cls, field)}: {err['msg']}")
    return SettingsError("; ".join(problems))


class KeyRotationSettings(BaseSettings):
    """How a key given as a file rotates; shared by the JWT secret and the internal key
    (services.common.signing_keys)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    rotation_overlap_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        validation_alias="XYNERGY_JWT_ROTATION_OVERLAP_SECONDS",
        description="How long a key removed from its file still verifies.",
    )
    key_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        validation_alias="XYNERGY_JWT_KEY_POLL_SECONDS",
        description="How often a key file is checked for a change (a stat).",
    )


class AuthSettings(KeyRotationSettings):
    """How end-user tokens are verified (env prefix ``XYNERGY_AUTH_``)."""

    model_config = SettingsConfigDict(
        env_prefix="XYNERGY_AUTH_", extra="ignore", populate_by_name=True
    )

    jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("XYNERGY_AUTH_JWT_SECRET", "JWT_SECRET"),
        description="HS256 secret of the platform's own JWTs; JWT mode is off when unset.",
    )
    jwt_secret_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("XYNERGY_AUTH_JWT_SECRET_FILE", "JWT_SECRET_FILE"),
        description="A file of HS256 secrets, one a line (a mounted Secret), re-read when it "
        "changes; instead of JWT_SECRET. The first line is the newest.",
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


class InternalIdentitySettings(KeyRotationSettings):
    """The gateway-to-service identity token (env prefix ``XYNERGY_INTERNAL_``)."""

    model_config = SettingsConfigDict(
        env_prefix="XYNERGY_INTERNAL_", extra="ignore", populate_by_name=True
    )

    signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="Shared HS256 key; the gateway signs, services verify. Required unless "
        "XYNERGY_INTERNAL_SIGNING_KEY_FILE is set.",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="A file of keys, one a line (a mounted Secret), re-read when it changes; "
        "the first line signs, every line verifies.",
    )
    ttl_seconds: int = Field(default=60, ge=5, le=3600)
    issuer: str = "xynergy-gateway"
    audience: str = "xynergy-services"
