"""Run the Research coordinator: ``python -m services.research`` (``XYNERGY_RESEARCH_HOST``,
``XYNERGY_RESEARCH_PORT``, default 8087)."""

from services.common.engine import run

if __name__ == "__main__":
    run("research", port=8087)
