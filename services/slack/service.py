"""Where the services' shared plumbing used to live; it is in ``services.common`` now:
the error shape in :mod:`services.common.errors`, roles in :mod:`services.common.roles`, the
token read and connection listing in :mod:`services.common.connections`, the health routes in
:mod:`services.common.health`. Kept only as re-exports for importers not moved yet (the AI
services); new code imports from ``services.common``.
"""

from __future__ import annotations

from services.common.connections import TokenSource, tokens_for, usable_connections
from services.common.errors import ApiError, error_body, install_error_handlers
from services.common.health import health_routes
from services.common.roles import Editor, Viewer

__all__ = [
    "ApiError",
    "Editor",
    "TokenSource",
    "Viewer",
    "error_body",
    "health_routes",
    "install_error_handlers",
    "tokens_for",
    "usable_connections",
]
