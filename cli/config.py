"""``radstream config``: the settings in effect, secrets masked."""

from __future__ import annotations

import click

from cli.context import Command, Invocation, pass_invocation
from cli.output import emit_json


@click.command("config", cls=Command)
@pass_invocation
def command(invocation: Invocation) -> None:
    """Print the settings in effect, secrets masked.

    JSON on stdout. The settings come from RADSTREAM_* environment variables (README,
    "Settings"). An invalid variable is named, with the reason, and the command exits 3; its
    value is never printed.
    """
    settings = invocation.start()
    emit_json(settings.masked())
