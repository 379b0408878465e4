"""The route table from a YAML or JSON file, reloaded when the file changes.

Used outside a cluster. The file lists services with an upstream URL and routes in the same
shape as the XynergyService CRD's ``spec.routes``::

    services:
      - name: crm
        url: http://127.0.0.1:8081
        routes:
          - prefix: /api/v2/crm
            timeoutSeconds: 30
            rateLimitPerMinute: 100

The file is polled (stat, then content hash); a file that fails to parse leaves the current
table in place and is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from services.gateway.routing import Route, RouteTable, routes_from_spec

__all__ = ["FileRouteSource", "parse_routes_document"]

log = logging.getLogger("xynergy.gateway.routes")


def parse_routes_document(text: str) -> RouteTable:
    """Parse the file's text (YAML, which also reads JSON) into a table; ValueError if bad."""
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML/JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services", []), list):
        raise ValueError("expected a mapping with a 'services' list")
    routes: list[Route] = []
    for svc in doc.get("services", []):
        if not isinstance(svc, dict) or "url" not in svc:
            raise ValueError("each service needs a 'url'")
        routes.extend(
            routes_from_spec(
                service=str(svc.get("name", "")), upstream=str(svc["url"]), routes=svc.get("routes")
            )
        )
    return RouteTable.build(routes)


class FileRouteSource:
    def __init__(self, path: Path, *, poll_seconds: float = 1.0) -> None:
        self.path = path
        self.poll_seconds = poll_seconds

    async def watch(self) -> AsyncIterator[RouteTable]:
        last_stat: tuple[int, int, int] | None = None
        last_digest: str | None = None
        while True:
            try:
                st = self.path.stat()
                stat = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stat = None
                if last_stat is not None or last_digest is None:
                    log.warning("routes file missing", extra={"fields": {"path": str(self.path)}})
                    last_digest = "missing"
            if stat is not None and stat != last_stat:
                last_stat = stat
                text = await asyncio.to_thread(self.path.read_text)
                digest = hashlib.sha256(text.encode()).hexdigest()
                if digest != last_digest:
                    last_digest = digest
                    try:
                        table = parse_routes_document(text)
                    except ValueError as exc:
                        log.error(
                            "routes file rejected, keeping the current table",
                            extra={"fields": {"path": str(self.path), "error": str(exc)}},
                        )
                    else:
                        log.info(
                            "routes loaded",
                            extra={"fields": {"path": str(self.path), "routes": len(table)}},
                        )
                        yield table
            await asyncio.sleep(self.poll_seconds)
