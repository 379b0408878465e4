"""Structured logs and request ids shared by the services.

Logs are one JSON object per line. Callers pass fields through ``extra={"fields": {...}}``;
nothing here ever logs headers or tokens, and :func:`redact_query` drops query values whose
names look like credentials before a URL is logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

import orjson

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "configure_logging",
    "new_request_id",
    "redact_query",
    "valid_request_id",
]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SECRET_PARAM_RE = re.compile(
    r"(?i)(^|&)((?:access_|id_|refresh_)?token|key|api_key|apikey|secret|password|code|sig|signature)=[^&]*"
)


def new_request_id() -> str:
    """128 random bits as hex (a uuid4 without the version bits and the object)."""
    return os.urandom(16).hex()


def valid_request_id(value: str | None) -> bool:
    return value is not None and _REQUEST_ID_RE.match(value) is not None


def redact_query(query: str) -> str:
    """The query string with the values of credential-like parameters replaced."""
    return _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}=REDACTED", query)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # orjson: the gateway's access log formats a line per request (json.dumps was ~4 % of
        # a proxied request's CPU in py-spy); compact like separators=(",", ":"), UTF-8 as is
        try:
            return orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson refuses (an int over 64 bits): the standard library
            return json.dumps(out, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """Send every ``xynergy`` logger to stderr as JSON lines (idempotent)."""
    root = logging.getLogger("xynergy")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
