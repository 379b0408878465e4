"""Run the CRM: ``python -m services.crm`` (``XYNERGY_CRM_HOST``, ``XYNERGY_CRM_PORT``)."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "services.crm.app:create_app",
        factory=True,
        host=os.environ.get("XYNERGY_CRM_HOST", "0.0.0.0"),
        port=int(os.environ.get("XYNERGY_CRM_PORT", "8081")),
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
