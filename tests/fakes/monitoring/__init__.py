"""A fake Cloud Monitoring MetricService (gRPC, the client library's own messages)."""

from .server import FakeMetricService, RefusedError, Series

__all__ = ["FakeMetricService", "RefusedError", "Series"]
