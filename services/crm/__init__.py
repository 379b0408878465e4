"""The CRM engine: tenant-isolated contacts, interactions, notes and tasks on Firestore.

``create_app()`` (in :mod:`services.crm.app`) builds the FastAPI app served behind the gateway
at ``/api/v2/crm``; :mod:`services.crm.store` is the only module that knows the Firestore
layout. See docs/services/crm.md.
"""
