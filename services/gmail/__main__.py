"""Run the Gmail service: ``python -m services.gmail`` (``XYNERGY_GMAIL_HOST``, ``_PORT``)."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "services.gmail.app:create_app",
        factory=True,
        host=os.environ.get("XYNERGY_GMAIL_HOST", "0.0.0.0"),
        port=int(os.environ.get("XYNERGY_GMAIL_PORT", "8083")),
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
