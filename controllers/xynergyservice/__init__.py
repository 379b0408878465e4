"""The XynergyService controller: handlers (kopf), reconciler, resources (pure), status (pure)."""
