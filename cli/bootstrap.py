"""``radstream bootstrap``: prepare a deployment (database schema and topics)."""

from __future__ import annotations

import click

from cli import db, topics
from cli.context import Command, Invocation, pass_invocation
from cli.output import emit


@click.command("bootstrap", cls=Command)
@pass_invocation
def command(invocation: Invocation) -> None:
    """Prepare a deployment: database schema, then topics.

    The same as "radstream db upgrade" followed by "radstream topics ensure" (docker compose
    runs it before the workers). Idempotent.
    """
    settings = invocation.start()
    emit(f"database at revision {db.upgrade(settings)}")
    topics.show_reports(topics.ensure(settings), as_json=False)
