"""The Xynergy API: Pydantic models that are the source of truth for the CRDs.

A pure zone: no I/O, no kopf, no Kubernetes client. Controllers and services import from here.
"""
