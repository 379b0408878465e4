"""Run the gateway: ``python -m services.gateway`` (host, port, workers from the environment).

``XYNERGY_GATEWAY_HOST`` (default 0.0.0.0), ``XYNERGY_GATEWAY_PORT`` (8080) and
``XYNERGY_GATEWAY_WORKERS`` (1). Several workers share Redis, so limits and cache hold across
them; the socket.io stream then needs sticky sessions or websocket-only clients.
"""

from __future__ import annotations

import os

import uvicorn

from services.gateway.server import CorkedHttpToolsProtocol


def main() -> None:
    uvicorn.run(
        "services.gateway.app:create_app",
        factory=True,
        host=os.environ.get("XYNERGY_GATEWAY_HOST", "0.0.0.0"),
        port=int(os.environ.get("XYNERGY_GATEWAY_PORT", "8080")),
        workers=int(os.environ.get("XYNERGY_GATEWAY_WORKERS", "1")),
        access_log=False,
        http=CorkedHttpToolsProtocol,
        server_header=False,
        proxy_headers=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
