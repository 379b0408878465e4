"""The Platform Dashboard: a server-rendered page of the analytics service, live from the
gateway's event stream (``router``), and the publisher of the platform's status changes on the
event bus (``StatusPublisher``)."""

from services.analytics.dashboard.router import router, static_files
from services.analytics.dashboard.watch import TOPIC, StatusPublisher

__all__ = ["TOPIC", "StatusPublisher", "router", "static_files"]
