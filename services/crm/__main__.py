"""Run the CRM: ``python -m services.crm``.

It listens on ``XYNERGY_CRM_HOST`` and the first of ``XYNERGY_CRM_PORT``, ``PORT``
(Cloud Run's) and 8081 (``services.common.serve``).
"""

from services.common.serve import serve

if __name__ == "__main__":
    serve("crm", port=8081)
