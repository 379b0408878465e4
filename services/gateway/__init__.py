"""The Intelligence Gateway: the one API the frontends talk to.

``create_app()`` in :mod:`services.gateway.app` builds the ASGI application.
"""
