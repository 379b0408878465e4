"""The AI router's HTTP API under ``/api/v1/ai`` (what the gateway forwards unchanged)."""

PREFIX = "/api/v1/ai"
