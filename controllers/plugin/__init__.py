"""`kubectl xynergy ...`: the kubectl plugin (console script `kubectl-xynergy`), a click group;
each kind's commands live in their own module and are added here by one line.

Shell completion is click's: `kubectl-xynergy completion bash|zsh|fish` prints the script
(`source <(kubectl-xynergy completion bash)`); kinds and object names complete from the cluster.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from controllers.plugin.audit import audit
from controllers.plugin.connect import connect
from controllers.plugin.forecast import forecast
from controllers.plugin.rollout import rollout
from controllers.plugin.status import get, status

__all__ = ["main"]

PROG = "kubectl-xynergy"
COMPLETE_VAR = "_KUBECTL_XYNERGY_COMPLETE"


@click.group()
def main() -> None:
    """Xynergy commands for kubectl."""


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL."""
    cls = get_completion_class(shell)
    assert cls is not None  # every choice has a class
    click.echo(cls(main, {}, PROG, COMPLETE_VAR).source())


main.add_command(rollout)
main.add_command(forecast)
main.add_command(get)
main.add_command(status)
main.add_command(connect)
main.add_command(audit)
