"""The Research coordinator's HTTP API under ``/api/v1/research``."""

PREFIX = "/api/v1/research"
