"""A small client of the Prometheus HTTP API (``/api/v1/query`` and ``/query_range``).

Services may not import the operator's provider, and the analytics service needs only two
calls: a query's current value and its recent history. A vector result is summed (a query
is expected to aggregate already); no data is None / an empty series.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["PrometheusClient", "PrometheusError"]


class PrometheusError(Exception):
    """Prometheus refused the query or could not be reached."""


class PrometheusClient:
    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self.http = http

    async def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            r = await self.http.get(self.url + path, params=params)
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{self.url}: {type(exc).__name__}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{params.get('query')}: {body.get('error', r.status_code)}")
        return body["data"]

    async def instant(self, query: str) -> float | None:
        data = await self._get("/api/v1/query", {"query": query})
        values = [float(s["value"][1]) for s in data.get("result", [])]
        return sum(values) if values else None

    async def history(
        self, query: str, *, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        params = {"query": query, "start": start, "end": end, "step": step}
        data = await self._get("/api/v1/query_range", params)
        summed: dict[float, float] = {}
        for series in data.get("result", []):
            for t, v in series.get("values", []):
                summed[float(t)] = summed.get(float(t), 0.0) + float(v)
        return sorted(summed.items())
