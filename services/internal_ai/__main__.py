"""Run the Internal AI service: ``python -m services.internal_ai``.

It listens on ``XYNERGY_INTERNAL_AI_HOST`` and the first of ``XYNERGY_INTERNAL_AI_PORT``, ``PORT``
(Cloud Run's) and 8084 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("internal_ai", port=8084)
