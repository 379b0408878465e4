"""The AI Routing Engine: OpenAI-compatible chat completions routed over a configured provider
chain with fallback, per-provider cooldown breakers, an exact (and optional semantic) cache
in Redis, and a cost ledger per tenant. Engines call it through :mod:`services.ai.client`."""
