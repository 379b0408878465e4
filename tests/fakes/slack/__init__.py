"""A faithful fake of the Slack Web API subset the Slack service uses (conversations.list,
conversations.history, chat.postMessage, users.list, users.lookupByEmail, search.messages).

    with FakeSlack() as fake:
        fake.grant("xoxb-test")                      # a bot token with the service's scopes
        general = fake.state.add_channel("general")
        AsyncWebClient(token="xoxb-test", base_url=fake.base_url)

See state.py for the error shapes and pagination.
"""

from .server import ALL_SCOPES, FakeSlack
from .state import Grant, SlackState

__all__ = ["ALL_SCOPES", "FakeSlack", "Grant", "SlackState"]
