"""Run the AI router: ``python -m services.ai`` (``XYNERGY_AI_HOST``, ``XYNERGY_AI_PORT``)."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "services.ai.app:create_app",
        factory=True,
        host=os.environ.get("XYNERGY_AI_HOST", "0.0.0.0"),
        port=int(os.environ.get("XYNERGY_AI_PORT", "8083")),
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
