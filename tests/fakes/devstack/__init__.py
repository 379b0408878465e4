"""The fakes `xynergy dev up` runs as one local process, so a user can connect a (fake) Slack
workspace and Gmail account and call the AI routes without reaching the real providers:

- the Slack and Google OAuth endpoints (tests/fakes/oauth),
- the Slack Web API (tests/fakes/slack) and the Gmail API (tests/fakes/google), which accept the
  access tokens the OAuth fake issued, for as long as it keeps them alive (refresh, revoke and
  `invalid_grant` behave as at the providers),
- an OpenAI-compatible chat completions API (tests/fakes/openai).

They share one process because the APIs ask the OAuth fake which tokens are live.

    PYTHONPATH=tests python -m fakes.devstack --oauth-port 8086 --slack-port 8087 \\
        --gmail-port 8088 --openai-port 8090
"""

from .stack import DevStack, seed

__all__ = ["DevStack", "seed"]
