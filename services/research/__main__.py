"""Run the Research coordinator: ``python -m services.research``.

It listens on ``XYNERGY_RESEARCH_HOST`` and the first of ``XYNERGY_RESEARCH_PORT``, ``PORT``
(Cloud Run's) and 8087 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("research", port=8087)
