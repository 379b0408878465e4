"""Security tests share the integration fixtures (this folder sits under tests/integration,
so the gateway's redis, upstream and factory, and the CRM's emulator, serve it too)."""

from crm.conftest import firestore_emulator  # noqa: F401 - the CRM's emulator fixture
from gateway.conftest import (  # noqa: F401 - fixtures re-exported for this package
    gateway,
    gateway_factory,
    redis_server,
    upstream,
)
from reliability.soak import pytest_collection_modifyitems

__all__ = ["pytest_collection_modifyitems"]
