"""Run the ASO engine: ``python -m services.aso``.

It listens on ``XYNERGY_ASO_HOST`` and the first of ``XYNERGY_ASO_PORT``, ``PORT``
(Cloud Run's) and 8086 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("aso", port=8086)
