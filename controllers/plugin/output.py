"""`-o/--output text|json|yaml` for every plugin command, and the one way data is printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import yaml

__all__ = ["FORMATS", "emit", "output_option"]

FORMATS = ("text", "json", "yaml")
F = TypeVar("F", bound=Callable[..., Any])


def output_option(func: F) -> F:
    """The `-o/--output` option (text for people; json and yaml for scripts)."""
    option = click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="text for people; json or yaml for scripts.",
    )
    return option(func)


def emit(data: Any, output: str, text: Callable[[], str]) -> None:
    """Print `data` as JSON or YAML, or `text()` for people."""
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    elif output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())
    else:
        click.echo(text())
