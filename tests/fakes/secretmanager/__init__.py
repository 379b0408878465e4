"""A faithful fake of the Secret Manager API v1 (REST/JSON), driven through the real client.

    with FakeSecretManager() as fake:
        client = secretmanager_v1.SecretManagerServiceClient(
            transport="rest", credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=fake.endpoint))
        fake.put("my-project", "db-password", b"...")   # create + add a version in one call
        fake.deny("Permission 'secretmanager.versions.get' denied")  # 403 until deny(None)

See docs/cloudrun.md for what is faithful and what is not.
"""

from .server import FakeSecretManager, project_number

__all__ = ["FakeSecretManager", "project_number"]
