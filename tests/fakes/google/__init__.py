"""A faithful fake of the Gmail API subset the Gmail service uses: users.messages
list/get/send/modify, users.threads list/get, users.labels list/create, users.history.list and
users.getProfile, with Google's error shapes and pageToken pagination.

    with FakeGmail() as fake:
        box = fake.grant("ya29.test", "ada@example.com")
        box.deliver(message.as_bytes())       # a new message (a history record)
        box.sent                              # what messages.send took, parsed back

See state.py for the errors and history.
"""

from .server import GMAIL_SCOPES, FakeGmail
from .state import Mailbox, StoredMessage

__all__ = ["GMAIL_SCOPES", "FakeGmail", "Mailbox", "StoredMessage"]
