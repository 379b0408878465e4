"""How a service is started: where it listens, read from the environment, then uvicorn.

A service listens on ``XYNERGY_<NAME>_HOST`` (default ``0.0.0.0``) and the first of
``XYNERGY_<NAME>_PORT``, ``PORT`` and its own default port. ``PORT`` is the container
contract of Cloud Run (and Knative): the platform sets it to the container port
(``spec.port`` of a XynergyService) and routes only to it, so an image deployed there with
no variable of its own listens where the platform expects. A value that is not a port stops
the start with one line naming the variable, before any server starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import NoReturn

from pydantic import ValidationError

from services.common.settings import SettingsError, settings_error

__all__ = ["checked_address", "int_variable", "listen_address", "serve", "settings_exit"]

CONTAINER_PORT = "PORT"
"""The variable Cloud Run and Knative set to the port they route to."""


def int_variable(
    names: tuple[str, ...],
    default: int,
    *,
    low: int,
    high: int,
    what: str,
    environ: Mapping[str, str] | None = None,
) -> int:
    """The first of ``names`` set in the environment, as an integer in [low, high]; ``default``
    when none is set. SettingsError names the variable, what it must be and the value given
    (so not for a variable that may hold a secret)."""
    env = os.environ if environ is None else environ
    for name in names:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise SettingsError(f"{name}: expected {what} ({low}-{high}), got {raw!r}")
        return value
    return default


def listen_address(
    name: str, default_port: int, *, environ: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """(host, port) of service ``name`` (e.g. ``crm``): see the module's docstring."""
    env = os.environ if environ is None else environ
    prefix = f"XYNERGY_{name.upper()}_"
    host = env.get(f"{prefix}HOST") or "0.0.0.0"
    port = int_variable(
        (f"{prefix}PORT", CONTAINER_PORT),
        default_port,
        low=1,
        high=65535,
        what="a TCP port",
        environ=env,
    )
    return host, port


def settings_exit(name: str, exc: SettingsError) -> NoReturn:
    """Stop the start of service ``name``: one line on stderr (the error names the variable,
    never its value when it may be a secret), exit status 2."""
    print(f"{name}: settings error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


def checked_address(name: str, default_port: int) -> tuple[str, int]:
    """``listen_address``, or ``settings_exit`` naming the bad variable."""
    try:
        return listen_address(name, default_port)
    except SettingsError as exc:
        settings_exit(name, exc)


def serve(name: str, *, port: int) -> None:
    """``python -m services.<name>``: ``services.<name>.app:create_app()`` served by uvicorn
    at ``listen_address(name, port)``. The app is made before the server starts, so a setting
    that does not validate (SettingsError) stops the start with one line naming it, exit 2."""
    import importlib

    import uvicorn

    host, listen = checked_address(name, port)
    try:
        app = importlib.import_module(f"services.{name}.app").create_app()
    except SettingsError as exc:
        settings_exit(name, exc)
    except ValidationError as exc:  # a settings class read with cls(), not load_settings
        problem = settings_error(exc)
        if problem is None:
            raise
        settings_exit(name, problem)
    uvicorn.run(
        app,
        host=host,
        port=listen,
        access_log=False,
        server_header=False,
        log_level="warning",
    )
