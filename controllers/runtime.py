"""Operator-wide kopf configuration and handler loading, shared by `python -m controllers`
and the tests' KopfRunner."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import kopf
import prometheus_client

from controllers.settings import OperatorSettings

__all__ = ["HANDLER_MODULES", "configure", "current_settings", "load_handlers"]

# One entry per kind; each module registers its @kopf.on handlers on import.
HANDLER_MODULES: tuple[str, ...] = ("controllers.xynergyservice.handlers",)

_settings: OperatorSettings | None = None


def load_handlers() -> None:
    """Import every kind's handlers so kopf registers them."""
    for name in HANDLER_MODULES:
        importlib.import_module(name)


def current_settings() -> OperatorSettings:
    """The settings the operator was configured with (else read from the environment now)."""
    return _settings if _settings is not None else OperatorSettings()


def configure(settings: OperatorSettings) -> None:
    """Remember the settings for the startup handler and start the metrics server."""
    global _settings
    _settings = settings
    if settings.metrics_port is not None:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.metrics_address)


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.ERROR  # our own events are posted explicitly
    settings.persistence.finalizer = "xynergy.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="xynergy.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="xynergy.io", key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.queueing.worker_limit = current_settings().worker_limit
    settings.queueing.idle_timeout = 0.5
