"""I/O adapters behind small Protocols: Kubernetes, Cloud Run, metrics sources, OAuth providers."""
