"""Faithful fakes of Slack's and Google's OAuth endpoints (authorize, token, revoke).

    with FakeOAuth(expires_in=3600) as fake:
        fake.endpoints("slack")   # {"authorize": ..., "token": ..., "revoke": ...}
        fake.slack.calls["refresh"], fake.google.revoked
        fake.revoke_all("google")   # the next refresh gets invalid_grant

See state.py for the error shapes each provider answers with.
"""

from .server import FakeOAuth
from .state import ProviderState, s256

__all__ = ["FakeOAuth", "ProviderState", "s256"]
