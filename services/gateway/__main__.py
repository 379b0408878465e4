"""Run the gateway: ``python -m services.gateway`` (host, port, workers from the environment).

Served by granian (a Rust HTTP server for ASGI apps): in bench/gateway.py --compare it used
less CPU per request than uvicorn. It does not rewrite the client address from
``X-Forwarded-For``: the gateway decides whose to believe (XYNERGY_GATEWAY_TRUSTED_PROXIES).

``XYNERGY_GATEWAY_HOST`` (default 0.0.0.0), ``XYNERGY_GATEWAY_PORT`` (else ``PORT``, Cloud Run's,
else 8080) and ``XYNERGY_GATEWAY_WORKERS`` (1). Several workers share Redis, so limits and
cache hold across them; the socket.io stream then needs sticky sessions or websocket-only
clients.
"""

from __future__ import annotations

import gc
import logging

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from services.common.auth import jwt_configured, jwt_key_ring
from services.common.identity import InternalIdentitySigner
from services.common.serve import int_variable, listen_address, settings_exit
from services.common.settings import (
    AuthSettings,
    InternalIdentitySettings,
    SettingsError,
    load_settings,
)
from services.gateway.app import Gateway, create_app
from services.gateway.oauth import OAuthCallbackSettings
from services.gateway.settings import GatewaySettings


def check_settings() -> None:
    """Read every settings class once, so a bad or missing one stops the start with a line
    naming the variable (not a traceback from inside a worker)."""
    for cls in (GatewaySettings, AuthSettings, InternalIdentitySettings, OAuthCallbackSettings):
        load_settings(cls)
    try:
        InternalIdentitySigner(InternalIdentitySettings())
    except ValueError as exc:  # its message names XYNERGY_INTERNAL_SIGNING_KEY
        raise SettingsError(str(exc)) from None
    auth = AuthSettings()
    if jwt_configured(auth):
        try:
            jwt_key_ring(auth)
        except ValueError as exc:  # names JWT_SECRET or JWT_SECRET_FILE, never a value
            raise SettingsError(str(exc)) from None
    elif not auth.firebase_enabled:
        raise SettingsError(
            "JWT_SECRET / XYNERGY_AUTH_JWT_SECRET: required when "
            "XYNERGY_AUTH_FIREBASE_ENABLED is false (no way to verify a token otherwise; "
            "JWT_SECRET_FILE, a key file, is the alternative)"
        )


def tune_worker() -> None:
    """Process-wide settings of a worker process that only serves the gateway.

    The access log writes one record per request; ``logging`` by default gathers for each
    record what no formatter of ours reads: the caller's file and line (a walk up the stack),
    thread, process and multiprocessing names. The switches are the ones the logging HOWTO's
    "Optimization" section names; py-spy put these lookups at about 2 % of a proxied request.

    The cyclic GC's youngest generation is collected every 700 net allocations by default:
    with a few dozen requests in flight that is every ~40 requests, and those collections cost
    about 4 % of a proxied request's CPU (``gc.callbacks``, thread CPU time) while finding
    almost nothing (request objects are freed by reference counting). At 10,000 the
    collector still runs when cyclic garbage builds up, and not on every burst of requests.
    """
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    logging._srcfile = None  # the HOWTO's switch for "where calls were made from"
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


GC_YOUNG_THRESHOLD = 10_000


def worker_app() -> Gateway:
    """The factory granian calls in each worker: the tuned process, then ``create_app()``."""
    tune_worker()
    return create_app()


def main() -> None:
    try:
        check_settings()
        host, port = listen_address("gateway", 8080)
        workers = int_variable(
            ("XYNERGY_GATEWAY_WORKERS",), 1, low=1, high=64, what="a number of worker processes"
        )
    except SettingsError as exc:
        settings_exit("gateway", exc)
    Granian(
        "services.gateway.__main__:worker_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        websockets=True,  # the socket.io stream
        log_access=False,  # the gateway writes its own access log
        log_level=LogLevels.warning,
    ).serve()


if __name__ == "__main__":
    main()
