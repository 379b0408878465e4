"""Run the Internal AI service: ``python -m services.internal_ai``
(``XYNERGY_INTERNAL_AI_HOST``, ``XYNERGY_INTERNAL_AI_PORT``)."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "services.internal_ai.app:create_app",
        factory=True,
        host=os.environ.get("XYNERGY_INTERNAL_AI_HOST", "0.0.0.0"),
        port=int(os.environ.get("XYNERGY_INTERNAL_AI_PORT", "8084")),
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
