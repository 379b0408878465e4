"""Run the AI router: ``python -m services.ai`` (``XYNERGY_AI_HOST``; ``XYNERGY_AI_PORT``, else
``PORT``, else 8083: ``services.common.serve``).

Served by uvicorn with its fast parts (uvloop, httptools), no access log and no proxy-header
middleware (the gateway in front decides whom to believe). The objects made at start-up
(settings, clients, the imported libraries' classes) are frozen out of the garbage
collector's sight, so its full collections stay short (a request's p99 otherwise pays them).
"""

from __future__ import annotations

import gc

import uvicorn

from services.ai.app import create_app
from services.common.serve import checked_address


def main() -> None:
    host, port = checked_address("ai", 8083)
    app = create_app()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
