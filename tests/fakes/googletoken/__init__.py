"""A faithful fake of Google's OAuth 2.0 token endpoint for service-account ID tokens: the
JWT-bearer grant google-auth's ``service_account.IDTokenCredentials`` sends (what
``google.oauth2.id_token.fetch_id_token`` uses with a key file), answered with an ``id_token``.

    with FakeGoogleToken() as fake:
        fake.key_file(path)          # a service-account key file whose token_uri is the fake
        fake.issued                  # the audiences it issued tokens for, in order
        fake.verify(token)           # the claims of a token it issued (signature checked)

See server.py for the checks and errors."""

from .server import FakeGoogleToken

__all__ = ["FakeGoogleToken"]
