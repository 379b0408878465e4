"""Reliability tests share the integration fixtures (this folder sits under tests/integration
so the session's one cluster, operator helpers and gateway parts serve it too)."""

from reliability.soak import pytest_collection_modifyitems

__all__ = ["pytest_collection_modifyitems"]
