"""OAuthConnection settings (env prefix ``XYNERGY_OAUTH_``): the providers' endpoints (tests
and `make dev` point them at tests/fakes/oauth), the state's lifetime, timeouts and retries.

They are checked when the operator starts (`OAuthSettings.load`, from the handlers' startup):
settings that cannot work are logged there once, in one message naming each; the operator
starts all the same (its other kinds do not use them) and reports every OAuthConnection
Stalled `InvalidSettings` without acting on it (misconfigured.py). This module imports no
authlib (the defaults come from `controllers.providers.oauth.endpoints`), so the check costs
an operator without connections nothing.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controllers.providers.oauth import Endpoints
from controllers.providers.oauth import endpoints as defaults

__all__ = ["CLAIM_PER_TIMEOUT", "OAuthSettings", "SettingsError"]

ENV_PREFIX = "XYNERGY_OAUTH_"
CLAIM_PER_TIMEOUT = 3
"""A refresh claim must outlast this many HTTP timeouts: a refresh makes up to two provider
calls under it (Slack's bot token, then its user token), then writes the new tokens."""


class SettingsError(ValueError):
    """XYNERGY_OAUTH_* settings that cannot work; the message names each one and why."""


class OAuthSettings(BaseSettings):
    """Each field reads XYNERGY_OAUTH_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    slack_authorize_url: str = defaults.SLACK.authorize
    slack_token_url: str = defaults.SLACK.token
    slack_revoke_url: str = defaults.SLACK.revoke
    google_authorize_url: str = defaults.GOOGLE.authorize
    google_token_url: str = defaults.GOOGLE.token
    google_revoke_url: str = defaults.GOOGLE.revoke
    state_ttl_seconds: int = Field(
        default=900, ge=60, le=86400, description="How long an authorization URL stays usable."
    )
    http_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="The whole of one provider call, from connecting to the answer's last byte.",
    )
    revoke_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries to revoke on delete before letting go."
    )
    refresh_claim_seconds: int = Field(
        default=60,
        ge=5,
        le=600,
        description=(
            "How long a replica's claim to refresh a connection holds if it dies; more than "
            f"{CLAIM_PER_TIMEOUT} x http_timeout_seconds."
        ),
    )

    @model_validator(mode="after")
    def _claim_outlasts_a_refresh(self) -> Self:
        """The claim keeps other replicas from refreshing while this one does: one that ends
        during the refresh's provider calls lets another replica refresh with the same
        refresh token, which a rotating provider (Slack) has just spent (refused, and the
        user sent to authorize again for nothing)."""
        floor = CLAIM_PER_TIMEOUT * self.http_timeout_seconds
        if self.refresh_claim_seconds <= floor:
            raise ValueError(
                f"{ENV_PREFIX}REFRESH_CLAIM_SECONDS ({self.refresh_claim_seconds}) must be more "
                f"than {CLAIM_PER_TIMEOUT} x {ENV_PREFIX}HTTP_TIMEOUT_SECONDS "
                f"({self.http_timeout_seconds:g}), {floor:g} s: a refresh makes up to two "
                "provider calls under the claim (Slack's bot and user tokens), each up to the "
                "HTTP timeout, then writes the tokens; raise the claim or lower the timeout"
            )
        return self

    @classmethod
    def load(cls) -> OAuthSettings:
        """The settings from the environment; SettingsError naming each bad one (its
        variable and the rule) instead of pydantic's report."""
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    def endpoints(self, provider: str) -> Endpoints:
        """Endpoints of ``slack`` or ``google``."""
        if provider == "slack":
            return Endpoints(self.slack_authorize_url, self.slack_token_url, self.slack_revoke_url)
        return Endpoints(self.google_authorize_url, self.google_token_url, self.google_revoke_url)


def _describe(exc: ValidationError) -> str:
    """One line for every error: `invalid OAuthConnection settings: XYNERGY_OAUTH_X: <why>;
    ...` (the claim rule's own message names its two variables)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = "".join(str(part) for part in error["loc"][:1])
        parts.append(f"{ENV_PREFIX}{loc.upper()}: {message}" if loc else message)
    return "invalid OAuthConnection settings: " + "; ".join(parts)
