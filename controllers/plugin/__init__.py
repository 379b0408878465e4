"""`kubectl xynergy ...`: the kubectl plugin (console script `kubectl-xynergy`), a click group;
each kind's commands live in their own module and are added here by one line."""

from __future__ import annotations

import click

from controllers.plugin.forecast import forecast
from controllers.plugin.rollout import rollout

__all__ = ["main"]


@click.group()
def main() -> None:
    """Xynergy commands for kubectl."""


main.add_command(rollout)
main.add_command(forecast)
