"""`python -m controllers`: run the Xynergy operator with kopf.

Handlers register themselves on import; `controllers.handlers` imports every kind's handlers.
"""

from __future__ import annotations

import asyncio
import logging

import kopf

from controllers.runtime import configure, load_handlers
from controllers.settings import OperatorSettings


def main() -> None:
    """Run the operator until interrupted."""
    settings = OperatorSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    load_handlers()
    configure(settings)
    asyncio.run(
        kopf.operator(
            clusterwide=settings.namespace is None,
            namespaces=[settings.namespace] if settings.namespace else [],
            standalone=settings.peering is None,
            peering_name=settings.peering,
            liveness_endpoint=settings.liveness_endpoint,
        )
    )


if __name__ == "__main__":
    main()
