"""The Rollout controller: canary, blue-green, rolling and immediate delivery of a new revision
of a XynergyService, judged by `intelligence.canary` and rolled back on its own."""
