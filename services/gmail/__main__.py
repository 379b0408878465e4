"""Run the Gmail service: ``python -m services.gmail``.

It listens on ``XYNERGY_GMAIL_HOST`` and the first of ``XYNERGY_GMAIL_PORT``, ``PORT``
(Cloud Run's) and 8089 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("gmail", port=8089)
