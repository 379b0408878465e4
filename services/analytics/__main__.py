"""Run the analytics service: ``python -m services.analytics``.

It listens on ``XYNERGY_ANALYTICS_HOST`` and the first of ``XYNERGY_ANALYTICS_PORT``, ``PORT``
(Cloud Run's) and 8090 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("analytics", port=8090)
