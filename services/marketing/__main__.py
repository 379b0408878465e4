"""Run the Marketing engine: ``python -m services.marketing`` (``XYNERGY_MARKETING_HOST``,
``XYNERGY_MARKETING_PORT``, default 8085)."""

from services.common.engine import run

if __name__ == "__main__":
    run("marketing", port=8085)
