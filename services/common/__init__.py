"""Shared pieces of the services: authentication, tenancy, settings, telemetry."""
