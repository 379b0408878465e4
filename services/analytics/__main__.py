"""Run the analytics service: ``python -m services.analytics`` (``XYNERGY_ANALYTICS_HOST``,
``XYNERGY_ANALYTICS_PORT``, default 8086)."""

from services.common.engine import run

if __name__ == "__main__":
    run("analytics", port=8086)
