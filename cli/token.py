"""``radstream token``: a local bearer token for the HTTP API."""

from __future__ import annotations

import click

from cli.context import Command, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit
from cli.params import Validated
from gateway.auth import Role
from gateway.tokens import MAX_TTL_SECONDS, issue_token
from schemas.errors import ErrorCode
from schemas.events import Pseudonym


@click.command("token", cls=Command)
@click.option(
    "--subject",
    required=True,
    type=Validated(Pseudonym, "subject"),
    help="Pseudonymous id of the token's user (its 'sub' claim; never a name).",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice([role.value for role in Role]),
    help="A role the token grants; repeat for several.",
)
@click.option(
    "--ttl",
    type=click.IntRange(1, MAX_TTL_SECONDS),
    default=3600,
    show_default=True,
    help=f"Seconds until the token expires (1 to {MAX_TTL_SECONDS}).",
)
@pass_invocation
def command(invocation: Invocation, subject: str, roles: tuple[str, ...], ttl: int) -> None:
    """Print an HS256 bearer token for the HTTP API.

    For development and the demo: it is signed with RADSTREAM_API__JWT_SECRET. In production,
    tokens come from your identity provider (RS256/ES256, see docs/api.md).
    """
    settings = invocation.start()
    try:
        token = issue_token(settings, subject, roles, ttl)
    except ValueError as exc:  # HS256 not allowed by the settings: the message says so
        raise CommandError(ErrorCode.SETTINGS_INVALID, str(exc)) from exc
    emit(token)
