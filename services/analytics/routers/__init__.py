"""The analytics service's HTTP API: the Phase 3 paths (a contract) and the platform summaries."""
