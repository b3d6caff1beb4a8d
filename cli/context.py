"""What every command starts from: the settings (built once), logging on stderr, an event loop.

A command calls :meth:`Invocation.start` first. One-shot commands log warnings only, and hold
the libraries' lines back: a library that fails raises, and the command reports that as its
one line (``--verbose`` shows them). Services (``worker``, ``api``, ``lag --serve``, ``audit
verify --every``) log at ``RADSTREAM_LOGGING__LEVEL``; they hold library lines back only while
starting, and call :meth:`Invocation.service_started` once they serve.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import click
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from cli.errors import CommandError
from observability.logging import configure_logging
from observability.metrics import serve_metrics
from schemas.errors import ErrorCode
from schemas.settings import LoggingSettings, Settings, describe_settings_error, load_settings

T = TypeVar("T")

# Loggers of these packages are radstream's own; every other logger is a library's.
OUR_PACKAGES: Final = frozenset(
    {"app", "bench", "cli", "gateway", "observability", "schemas", "sinks", "streams"}
)
CONTEXT_SETTINGS: Final[dict[str, Any]] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


class LibraryLines(logging.Filter):
    """Drops the libraries' log records while :attr:`held` is set (ours always pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = True

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass radstream's own records, and library records unless they are held back."""
        return not self.held or record.name.partition(".")[0] in OUR_PACKAGES


@dataclass
class Invocation:
    """One run of ``radstream``: the root options, the settings and the command's name.

    Args:
        verbose: log at INFO and show the libraries' lines.
        debug: log at DEBUG, and log a failure's traceback (masked) for a bug report.
        given: settings to use instead of reading the environment (tests, embedding).
    """

    verbose: bool = False
    debug: bool = False
    given: Settings | None = None
    command_path: str = "radstream"
    library_lines: LibraryLines = field(default_factory=LibraryLines)
    _settings: Settings | None = None
    _logging_ready: bool = False

    @property
    def settings(self) -> Settings:
        """The settings, built once from the environment.

        Raises:
            CommandError: ``SETTINGS_INVALID``, naming each bad variable but not its value.
        """
        if self._settings is None:
            try:
                self._settings = self.given if self.given is not None else load_settings()
            except ValidationError as exc:
                # "from None": pydantic's message quotes the input, which may be a secret.
                raise CommandError(
                    ErrorCode.SETTINGS_INVALID, describe_settings_error(exc)
                ) from None
        return self._settings

    @property
    def loaded_settings(self) -> Settings | None:
        """The settings if they were built (a failure's advice names the services from them)."""
        return self._settings

    def start(self, *, service: bool = False) -> Settings:
        """Build the settings and send logs to stderr; returns the settings.

        Args:
            service: a long-running command: log at the configured level.
        """
        settings = self.settings
        self.configure_logging(settings.logging, service=service)
        return settings

    def configure_logging(self, settings: LoggingSettings, *, service: bool = False) -> None:
        """Logs on stderr, through radstream's masking pipeline (once per invocation)."""
        level = settings.level if service else "WARNING"
        if self.verbose:
            level = "INFO" if level not in {"DEBUG", "INFO"} else level
        if self.debug:
            level = "DEBUG"
        self.library_lines.held = not self.verbose
        configure_logging(
            settings.model_copy(update={"level": level}),
            stream=click.get_text_stream("stderr"),
            filters=[self.library_lines],
        )
        logging.captureWarnings(True)  # warnings are log lines too (masked, on stderr)
        self._logging_ready = True

    def ensure_logging(self) -> None:
        """Configure default logging when the command failed before its own (bad settings)."""
        if not self._logging_ready:
            self.configure_logging(LoggingSettings())

    def service_started(self) -> None:
        """A service serves: from now on the libraries' lines are logged as well."""
        self.library_lines.held = False


def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``service(stop)``; SIGINT or SIGTERM sets ``stop`` so it can shut down cleanly."""

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await service(stop)

    return asyncio.run(main())


@contextmanager
def metrics_endpoint(settings: Settings, registry: CollectorRegistry) -> Iterator[int]:
    """Serve ``registry`` on /metrics at the configured address; yields the port.

    Raises:
        CommandError: ``SETTINGS_INVALID`` when the address cannot be listened on.
    """
    host, port = settings.observability.metrics_host, settings.observability.metrics_port
    try:
        server, _thread = serve_metrics(registry, host, port)
    except OSError as exc:
        raise CommandError(
            ErrorCode.SETTINGS_INVALID,
            f"cannot serve /metrics on {host}:{port} ({exc.strerror or 'refused'})",
            advice="Free the port, or set RADSTREAM_OBSERVABILITY__METRICS_HOST and "
            "RADSTREAM_OBSERVABILITY__METRICS_PORT",
        ) from exc
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()


pass_invocation = click.make_pass_decorator(Invocation, ensure=True)


class Command(click.Command):
    """A ``radstream`` command: remembers its full name for the failure line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        """Record ``radstream <group> <command>`` before running the command."""
        ctx.ensure_object(Invocation).command_path = ctx.command_path
        return super().invoke(ctx)


class Group(click.Group):
    """A ``radstream`` command group: its commands and subgroups are of these classes.

    A group named without one of its commands is a usage error (one line), not its help.
    """

    command_class = Command
    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)
