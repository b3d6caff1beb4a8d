"""The ``radstream`` command: the root group, its commands, and the one top-level error handler.

:func:`main` runs a command line and returns its exit status; whatever goes wrong ends as one
line on stderr (:mod:`cli.errors`), never a traceback. Each command group is a module of its
own, ``cli/<command>.py``, with its imports at the top.

The root loads the module of the command being run only (:class:`CommandRegistry`): the
worker's modules (Faust, ONNX Runtime, SQLAlchemy, FastAPI) take seconds to import, which
``radstream token`` or ``radstream --help`` should not pay. This is the one deferred import,
and it lives here only.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Final

import click
import structlog

from cli.context import Group, Invocation, bound_exit
from cli.errors import EXIT_CODE_MEANINGS, ExitCode, Failure, exit_code_for, failure_for
from schemas.errors import ErrorCode
from schemas.settings import Settings

# Command -> its one-line summary for "radstream --help" (the first line of its help: a test
# keeps them equal). The command lives in cli/<command>.py as ``command``. (Pairs, not a dict
# literal: bandit takes a "token" key for a hard-coded password.)
_SUMMARIES: Final = (
    ("demo", "Run the whole pipeline on the bundled sample images."),
    ("worker", "Run pipeline stages until SIGINT or SIGTERM."),
    ("dicom", "Receive DICOM with C-STORE, or show the round trip through Orthanc."),
    ("publish", "Publish one arrival event per FILE, as a router would."),
    ("topics", "Create and check radstream's Kafka topics."),
    ("db", "Migrate the PostgreSQL schema (Alembic)."),
    ("bootstrap", "Prepare a deployment: database schema, then topics."),
    ("api", "Serve the HTTP API until SIGINT or SIGTERM."),
    ("token", "Print an HS256 bearer token for the HTTP API."),
    ("models", "Add, roll out, compare and list model versions."),
    ("audit", "Verify the audit trail, or show one image's trail."),
    ("dlq", "List, show, replay or purge dead letters."),
    ("lag", "Show each consumer group's lag and status."),
    ("config", "Print the settings in effect, secrets masked."),
    ("schemas", "Regenerate or check the committed contract files."),
    ("compliance", "Write the compliance report: traceability, SOUP, model cards, audit."),
    ("studies", "Show the status of a study (completeness, study results, urgent findings)."),
)
COMMANDS: Final[Mapping[str, str]] = dict(_SUMMARIES)


def _version() -> str:
    try:
        return version("radstream")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


EPILOG: Final = "\b\nExit codes:\n" + "\n".join(
    f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)


class CommandRegistry(Group):
    """The root group: knows its commands by name and imports one only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, in the order of :data:`COMMANDS`."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name`` (its module imported now), or None for an unknown name."""
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = importlib.import_module(f"cli.{cmd_name}").command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their summaries, without importing them."""
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group("radstream", cls=CommandRegistry, epilog=EPILOG, no_args_is_help=True)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also log progress and the libraries' lines on stderr."
)
@click.option(
    "--debug",
    is_flag=True,
    help="Log at DEBUG level; a failure also logs its traceback (masked) for a bug report.",
)
@click.version_option(_version(), "--version", prog_name="radstream")
@click.pass_context
def root(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """radstream: validate, infer, store and audit medical images on Apache Kafka.

    Results go to stdout (tables, or JSON with --json); logs and errors go to stderr. Every
    failure is one line naming an error code and what to do. Settings come from RADSTREAM_*
    environment variables (README, "Settings"). Run "radstream COMMAND --help" for a command.
    """
    invocation = ctx.ensure_object(Invocation)
    invocation.verbose = verbose
    invocation.debug = debug


def runnable_commands() -> dict[str, click.Command]:
    """Every runnable command by its full name (``dlq list``); imports every command module."""
    ctx = click.Context(root)
    found: dict[str, click.Command] = {}
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        if isinstance(command, click.Group):
            found |= {f"{name} {sub}": command.commands[sub] for sub in command.list_commands(ctx)}
        elif command is not None:
            found[name] = command
    return found


def usage_failure(error: click.UsageError) -> tuple[str, Failure]:
    """The command and the one-line failure of a bad command line."""
    ctx = error.ctx
    command = ctx.command_path if ctx is not None else "radstream"
    reason = error.format_message()
    if ctx is not None and isinstance(ctx.command, click.Group) and reason == "Missing command.":
        reason = f"Missing command: choose one of {', '.join(ctx.command.list_commands(ctx))}."
    code = ErrorCode.REQUEST_INVALID
    return command, Failure(code, reason, f"See '{command} --help'", exit_code_for(code))


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    """Run one ``radstream`` command line and return its exit status.

    Args:
        argv: the arguments after the program name (``sys.argv[1:]`` when omitted).
        settings: settings to use instead of the RADSTREAM_* environment (tests).
    """
    return run_command(root, argv, settings=settings)


def run_command(
    command: click.Command,
    argv: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
) -> int:
    """Run ``command`` on ``argv`` behind the one error handler; return the exit status."""
    invocation = Invocation(given=settings, command_path=command.name or "radstream")
    try:
        status = command.main(
            args=list(argv) if argv is not None else None,
            prog_name=command.name,
            standalone_mode=False,
            obj=invocation,
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())  # bare "radstream": its help, on stdout
        return ExitCode.OK
    except click.UsageError as exc:
        where, failure = usage_failure(exc)
    except (click.Abort, KeyboardInterrupt):
        click.echo(f"{invocation.command_path}: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place every failure is turned into a line
        where, failure = invocation.command_path, failure_for(exc, invocation.loaded_settings)
        if invocation.debug:
            invocation.ensure_logging()
            structlog.get_logger(__name__).error("command_failed", exc_info=exc)
    else:
        return int(status or ExitCode.OK)
    click.echo(failure.line(where), err=True)
    return failure.exit_code


def run() -> None:
    """The ``radstream`` console script: :func:`main`, then exit with its status."""
    status = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader such as "head" closed the pipe: what it wanted was written. Point stdout at
        # /dev/null so that the interpreter's final flush does not complain on stderr.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    bound_exit(status)
    sys.exit(status)
