"""The ASO engine's HTTP API under ``/api/v1/aso``."""

PREFIX = "/api/v1/aso"
