"""The Marketing engine's HTTP API under ``/api/v1/marketing``."""

PREFIX = "/api/v1/marketing"
