"""The providers' real OAuth endpoints, apart from their clients: the operator's settings take
them as defaults when it starts (controllers/oauthconnection/settings.py, checked then), and
this module imports no authlib, which only a connection's first converge loads."""

from __future__ import annotations

from controllers.providers.oauth import Endpoints

__all__ = ["GOOGLE", "SLACK"]

SLACK = Endpoints(
    authorize="https://slack.com/oauth/v2/authorize",
    token="https://slack.com/api/oauth.v2.access",
    revoke="https://slack.com/api/auth.revoke",
)
GOOGLE = Endpoints(
    authorize="https://accounts.google.com/o/oauth2/v2/auth",
    token="https://oauth2.googleapis.com/token",
    revoke="https://oauth2.googleapis.com/revoke",
)
