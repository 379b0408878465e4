"""Run the Slack service: ``python -m services.slack`` (``XYNERGY_SLACK_HOST``, ``_PORT``)."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "services.slack.app:create_app",
        factory=True,
        host=os.environ.get("XYNERGY_SLACK_HOST", "0.0.0.0"),
        port=int(os.environ.get("XYNERGY_SLACK_PORT", "8082")),
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
