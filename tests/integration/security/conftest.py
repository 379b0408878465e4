"""Security tests share the integration fixtures (this folder sits under tests/integration,
so the gateway's redis, upstream and factory serve it too; the Firestore emulator is the
session's, from tests/integration/emulators.py)."""

from gateway.conftest import (  # noqa: F401 - fixtures re-exported for this package
    gateway,
    gateway_factory,
    redis_server,
    upstream,
)
from reliability.soak import pytest_collection_modifyitems

__all__ = ["pytest_collection_modifyitems"]
