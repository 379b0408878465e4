"""The Xynergy operator: kopf controllers, providers (I/O adapters) and the local dev cluster.

`python -m controllers` runs the operator; `xynergy` (controllers.cli) is the command line.
"""
