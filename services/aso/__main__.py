"""Run the ASO engine: ``python -m services.aso`` (``XYNERGY_ASO_HOST``, ``XYNERGY_ASO_PORT``,
default 8086)."""

from services.common.engine import run

if __name__ == "__main__":
    run("aso", port=8086)
