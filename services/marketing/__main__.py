"""Run the Marketing engine: ``python -m services.marketing``.

It listens on ``XYNERGY_MARKETING_HOST`` and the first of ``XYNERGY_MARKETING_PORT``, ``PORT``
(Cloud Run's) and 8085 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("marketing", port=8085)
