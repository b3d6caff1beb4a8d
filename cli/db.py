"""``radstream db upgrade|downgrade``: the PostgreSQL schema, by Alembic migrations."""

from __future__ import annotations

import asyncio

import click

from cli.context import Group, Invocation, pass_invocation
from cli.output import emit
from schemas.settings import Settings
from sinks import migrate
from sinks.database import tls_context


class Revision(click.ParamType):
    """A migration revision this release knows (``head``, ``base``, an id or ``+1``/``-1``)."""

    name = "revision"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        """The revision; a usage error naming the known ones if it is not one of them."""
        text = str(value)
        if not migrate.is_known_revision(text):
            known = ", ".join(migrate.revisions())
            self.fail(f"{text!r} is not a migration of this release (known: {known})", param, ctx)
        return text


@click.group("db", cls=Group)
def command() -> None:
    """Migrate the PostgreSQL schema (Alembic)."""


def upgrade(settings: Settings, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision``; returns the revision it is at afterwards."""
    url, tls = settings.owner_database_url, tls_context(settings.database)

    async def run() -> str | None:
        await migrate.upgrade_async(url, revision, tls=tls)
        return await migrate.current_revision_async(url, tls=tls)

    return asyncio.run(run())


@command.command("upgrade")
@click.argument("revision", type=Revision(), default="head")
@pass_invocation
def upgrade_command(invocation: Invocation, revision: str) -> None:
    """Upgrade the database to REVISION (default: head, the newest).

    Idempotent: an up-to-date database is left as it is. Prints the revision the database is
    at afterwards.
    """
    settings = invocation.start()
    emit(f"database at revision {upgrade(settings, revision)}")


@command.command("downgrade")
@click.argument("revision", type=Revision())
@pass_invocation
def downgrade_command(invocation: Invocation, revision: str) -> None:
    """Downgrade the database to REVISION ("base" drops every radstream table and its data).

    REVISION is required: a downgrade removes data, so it is never a default.
    """
    settings = invocation.start()
    url, tls = settings.owner_database_url, tls_context(settings.database)

    async def run() -> str | None:
        await migrate.downgrade_async(url, revision, tls=tls)
        return await migrate.current_revision_async(url, tls=tls)

    emit(f"database at revision {asyncio.run(run())}")
