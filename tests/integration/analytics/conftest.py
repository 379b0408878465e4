"""Real parts for the analytics service's tests: redis-server and the gateway (from the
gateway's fixtures), the AI router with a fake OpenAI provider, a real kube-apiserver with the
CRDs, a real Prometheus."""

from __future__ import annotations

from gateway.conftest import (  # noqa: F401 - fixtures re-exported for this package
    GatewayFactory,
    RedisServer,
    gateway_factory,
    make_jwt,
    redis_server,
    serve,
    upstream,
    wait_for,
)

__all__ = ["GatewayFactory", "RedisServer", "make_jwt", "serve", "wait_for"]
