"""The Analytics Data Layer: usage, cost and event history per tenant, cost intelligence,
the running anomaly engine, the workflow orchestrator and the Phase 3 dashboards
(``python -m services.analytics``; docs/services/analytics.md)."""
