"""One process serving the dev fakes, each on its own port, with the Slack and Gmail APIs
accepting exactly the access tokens the OAuth fake keeps alive."""

from __future__ import annotations

import argparse
import signal
import threading
from email.message import EmailMessage
from typing import Any

from fakes.google import FakeGmail
from fakes.oauth import FakeOAuth
from fakes.openai import FakeOpenAI
from fakes.slack import FakeSlack, Grant

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "DevStack", "seed"]

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"
"""The OAuth client both fake providers know (the fake's own, not a real app's)."""


class DevStack:
    """The four fakes; ports 0 pick free ones. Use as a context manager, or start()/stop()."""

    def __init__(
        self, *, oauth_port: int = 0, slack_port: int = 0, gmail_port: int = 0, openai_port: int = 0
    ) -> None:
        self.oauth = FakeOAuth(clients={CLIENT_ID: CLIENT_SECRET}, port=oauth_port)
        self.slack = FakeSlack(port=slack_port)
        self.gmail = FakeGmail(port=gmail_port)
        self.openai = FakeOpenAI(name="fake-openai", port=openai_port)
        self.slack.state.token_check = self._slack_grant
        self.gmail.token_check = self._gmail_address

    def _slack_grant(self, token: str) -> Grant | None:
        """The live Slack access token's team and scopes (Slack's scope lists use commas)."""
        with self.oauth.lock:
            grant = self.oauth.slack.access.get(token)
            if grant is None:
                return None
            scopes = self.oauth.slack.grant_scopes.get(grant, "").replace(",", " ").split()
            team = self.oauth.slack.account["team"]
        return Grant(team=team, scopes=frozenset(scopes))

    def _gmail_address(self, token: str) -> str | None:
        """The account a live Google access token opens."""
        with self.oauth.lock:
            if token not in self.oauth.google.access:
                return None
            return self.oauth.google.account["email"]

    def urls(self) -> dict[str, str]:
        """Where each fake answers."""
        return {
            "oauth": self.oauth.endpoint,
            "slack": self.slack.base_url,
            "gmail": f"{self.gmail.endpoint}/",
            "openai": self.openai.base_url,
        }

    def start(self) -> DevStack:
        for fake in (self.oauth, self.slack, self.gmail, self.openai):
            fake.start()
        return self

    def stop(self) -> None:
        for fake in (self.openai, self.gmail, self.slack, self.oauth):
            fake.stop()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def seed(stack: DevStack) -> None:
    """Something to list: two channels with a message and two users in the Slack workspace, a
    welcome message in the inbox of the Google account the OAuth fake signs in."""
    state = stack.slack.state
    with stack.slack.lock:
        general = state.add_channel("general")
        state.add_channel("random")
        ada = state.add_user("ada", "ada@example.com")
        state.add_user("grace", "grace@example.com")
        state.add_message(general, "Welcome to the fake workspace", user=ada)
    welcome = EmailMessage()
    welcome["From"] = "Ada Lovelace <ada@example.com>"
    welcome["To"] = stack.oauth.google.account["email"]
    welcome["Subject"] = "Welcome to the fake inbox"
    welcome.set_content("This message lives in tests/fakes/google.")
    box = stack.gmail.mailbox(stack.oauth.google.account["email"])
    with stack.gmail.lock:
        box.deliver(welcome.as_bytes())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the fakes `xynergy dev up` runs")
    for name in ("oauth", "slack", "gmail", "openai"):
        parser.add_argument(f"--{name}-port", type=int, default=0, metavar="PORT")
    args: Any = parser.parse_args(argv)
    stack = DevStack(
        oauth_port=args.oauth_port,
        slack_port=args.slack_port,
        gmail_port=args.gmail_port,
        openai_port=args.openai_port,
    )
    seed(stack)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    with stack:
        for name, url in stack.urls().items():
            print(f"fake {name} on {url}", flush=True)
        stopped.wait()
