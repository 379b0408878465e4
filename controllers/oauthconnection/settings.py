"""OAuthConnection settings (env prefix ``XYNERGY_OAUTH_``): the providers' endpoints (tests
and `make dev` point them at tests/fakes/oauth), the state's lifetime, timeouts and retries."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from controllers.providers.oauth import Endpoints
from controllers.providers.oauth import google as google_oauth
from controllers.providers.oauth import slack as slack_oauth

__all__ = ["OAuthSettings"]


class OAuthSettings(BaseSettings):
    """Each field reads XYNERGY_OAUTH_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_OAUTH_", extra="ignore")

    slack_authorize_url: str = slack_oauth.DEFAULT_ENDPOINTS.authorize
    slack_token_url: str = slack_oauth.DEFAULT_ENDPOINTS.token
    slack_revoke_url: str = slack_oauth.DEFAULT_ENDPOINTS.revoke
    google_authorize_url: str = google_oauth.DEFAULT_ENDPOINTS.authorize
    google_token_url: str = google_oauth.DEFAULT_ENDPOINTS.token
    google_revoke_url: str = google_oauth.DEFAULT_ENDPOINTS.revoke
    state_ttl_seconds: int = Field(
        default=900, ge=60, le=86400, description="How long an authorization URL stays usable."
    )
    http_timeout_seconds: float = Field(default=10.0, gt=0, description="Per provider call.")
    revoke_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries to revoke on delete before letting go."
    )
    refresh_claim_seconds: int = Field(
        default=60,
        ge=5,
        le=600,
        description="How long a replica's claim to refresh a connection holds if it dies.",
    )

    def endpoints(self, provider: str) -> Endpoints:
        """Endpoints of ``slack`` or ``google``."""
        if provider == "slack":
            return Endpoints(self.slack_authorize_url, self.slack_token_url, self.slack_revoke_url)
        return Endpoints(self.google_authorize_url, self.google_token_url, self.google_revoke_url)
