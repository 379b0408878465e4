"""`python -m controllers`: run the Xynergy operator with kopf.

Handlers register themselves on import; `controllers.handlers` imports every kind's handlers.
With peering (XYNERGY_PEERING) each replica runs at its own priority, so kopf lets exactly one
act; the core follows kopf's pause through an `ActivityGate` (controllers/core/peering.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import kopf

from controllers.core.peering import ActivityGate, KopfPeeringFollower
from controllers.runtime import configure, load_handlers
from controllers.settings import OperatorSettings


def operator_options(settings: OperatorSettings) -> dict[str, Any]:
    """kopf.operator's keyword arguments for these settings (the memo aside)."""
    return {
        "clusterwide": settings.namespace is None,
        "namespaces": [settings.namespace] if settings.namespace else [],
        "standalone": settings.peering is None,
        "peering_name": settings.peering,
        "priority": settings.peering_priority,
        "liveness_endpoint": settings.liveness_endpoint,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line takes no options of its own: settings are XYNERGY_* variables. Parsing
    still matters: `--help` must describe rather than start an operator, and a typo must fail."""
    parser = argparse.ArgumentParser(
        prog="python -m controllers",
        description="Run the Xynergy operator (kopf) for XynergyService, ScalingPolicy, Rollout "
        "and OAuthConnection. Settings come from XYNERGY_* environment variables "
        "(controllers/settings.py); KUBECONFIG or the in-cluster service account gives the "
        "cluster.",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the operator until interrupted."""
    parse_args(argv)
    settings = OperatorSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    load_handlers()
    configure(settings)
    # With peering, kopf starts paused until its first peering decision; so does the core.
    gate = ActivityGate(active=settings.peering is None)
    KopfPeeringFollower.install(gate)
    memo = kopf.Memo(gate=gate)
    asyncio.run(kopf.operator(memo=memo, **operator_options(settings)))


if __name__ == "__main__":
    main()
