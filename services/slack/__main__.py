"""Run the Slack service: ``python -m services.slack``.

It listens on ``XYNERGY_SLACK_HOST`` and the first of ``XYNERGY_SLACK_PORT``, ``PORT``
(Cloud Run's) and 8082 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("slack", port=8082)
