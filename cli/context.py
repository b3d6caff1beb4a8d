"""What every command starts from: the settings (built once), logging on stderr, an event loop.

A command calls :meth:`Invocation.start` first. One-shot commands log warnings only, and hold
the libraries' lines back: a library that fails raises, and the command reports that as its
one line (``--verbose`` shows them). Services (``worker``, ``api``, ``lag --serve``, ``audit
verify --every``) log at ``RADSTREAM_LOGGING__LEVEL``; they hold library lines back only while
starting, and call :meth:`Invocation.service_started` once they serve.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import click
import structlog
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from cli.errors import CommandError, ExitCode
from observability.logging import configure_logging
from observability.metrics import serve_metrics
from schemas.errors import ErrorCode
from schemas.settings import LoggingSettings, Settings, describe_settings_error, load_settings

T = TypeVar("T")
log = structlog.get_logger("radstream.cli")

# Loggers of these packages are radstream's own; every other logger is a library's.
OUR_PACKAGES: Final = frozenset(
    {"app", "bench", "cli", "gateway", "observability", "schemas", "sinks", "streams"}
)
# The pipeline's internals log as "radstream.<area>" (radstream.agents, radstream.kafka, ...).
PIPELINE_LOGGERS: Final = "radstream"
CONTEXT_SETTINGS: Final[dict[str, Any]] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


class LibraryLines(logging.Filter):
    """Drops the libraries' log records while :attr:`held` is set (ours always pass).

    The pipeline's internals (``radstream.<area>`` loggers) count as ours in a service
    (:attr:`service`): a worker that fails while starting must still log why
    (``consumer_failed``, ``delivery_failed``). A one-shot command holds them back with the
    libraries': its output is its result and, on failure, one line, and the stages it runs
    in-process (the demo) or the clients it closes would add theirs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held = True
        self.service = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass radstream's own records, and library records unless they are held back."""
        if not self.held:
            return True
        package = record.name.partition(".")[0]
        return package in OUR_PACKAGES or (self.service and package == PIPELINE_LOGGERS)


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
        self.library_lines.service = service
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
        """A service serves: from now on the libraries' lines are logged as well.

        What start-up built lives as long as the process: it is frozen out of the collector's
        full collections (:func:`freeze_startup_heap`).
        """
        self.library_lines.held = False
        freeze_startup_heap()


class Collector(Protocol):
    """The parts of :mod:`gc` :func:`freeze_startup_heap` uses (a fake in tests)."""

    def collect(self) -> int:
        """Collect every generation; returns how many unreachable objects were found."""

    def freeze(self) -> None:
        """Move every tracked object to the permanent generation."""


def freeze_startup_heap(collector: Collector = gc) -> None:
    """Collect start-up's garbage once, then freeze what is left out of later collections.

    A started service tracks about 260,000 objects from its imports and wiring (Faust,
    SQLAlchemy, ONNX Runtime, pydantic models), nearly all alive until it exits. Every full
    (generation 2) collection walks them all with the event loop stopped: 0.1-0.6 s each in a
    ``make bench`` run (2 cores, bench/README.md), a pause every batch, heartbeat and latency
    percentile in flight waits for. Frozen (:func:`gc.freeze`), they are never walked again, so
    a full collection costs what was created since. Cycles among frozen objects that die later
    are not reclaimed: start-up's objects do not die, and reference counting frees the rest.
    """
    collector.collect()
    collector.freeze()


# Past the stages' own bound (twice: finish, then unwind after cancelling) a process that still
# runs is stuck in something that ignores cancellation: it exits at once.
FORCED_EXIT_MARGIN_SECONDS: Final = 10.0


class ShutdownBackstop:
    """Ends the process once shutting down took longer than its bound, whatever hangs.

    Armed when the stop is asked for (a signal, or the service ending on its own); a daemon
    thread, so a blocked event loop or a task that swallows cancellation cannot hold it. A
    second SIGINT or SIGTERM exits at once. Exits with ``status`` (:attr:`ExitCode.INTERNAL`)
    after one log line: a supervisor restarts the process, an operator sees why it was forced.

    Args:
        seconds: how long shutting down may take once armed.
        exit_process: ends the process with a status (``os._exit``; a fake in tests).
        status: the forced exit's status.
        overran: the log line's reason when the bound runs out.
    """

    def __init__(
        self,
        seconds: float,
        *,
        exit_process: Callable[[int], object] = os._exit,
        status: int = ExitCode.INTERNAL,
        overran: str = "shutdown overran",
    ) -> None:
        self.seconds = seconds
        self._exit = exit_process
        self._status = int(status)
        self._overran = overran
        self._timer: threading.Timer | None = None

    @property
    def armed(self) -> bool:
        """Whether the countdown runs."""
        return self._timer is not None

    def arm(self) -> None:
        """Start the countdown; a second call (a second signal) exits at once."""
        if self._timer is not None:
            self._force("second stop signal")
            return
        self._timer = threading.Timer(self.seconds, self._force, args=(self._overran,))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        """Cancel the countdown (the process is about to end on its own)."""
        if self._timer is not None:
            self._timer.cancel()

    def _force(self, why: str) -> None:
        log.error("process_exit_forced", reason=why, seconds=self.seconds)
        logging.shutdown()
        self._exit(self._status)


# Once a command has returned, the interpreter still joins every non-daemon thread before the
# process ends; a library thread that never ends (Faust's consumer thread after a stop that was
# cancelled, say) would hold the exit for ever, after the backstop was disarmed.
EXIT_BOUND_SECONDS: Final = 30.0


def bound_exit(
    status: int,
    seconds: float | None = None,
    *,
    exit_process: Callable[[int], object] = os._exit,
) -> ShutdownBackstop:
    """Bound what remains of the process's exit: after ``seconds`` it ends by force.

    A :class:`ShutdownBackstop`, armed when the command's status is known and the interpreter is
    about to exit; a normal exit ends its daemon timer with the process. Forced, the process
    ends with the command's own status, or :attr:`ExitCode.INTERNAL` after a command that
    succeeded (something hung), after one log line. Only the console script calls it:
    in-process callers (tests) outlive it. ``seconds`` defaults to :data:`EXIT_BOUND_SECONDS`.
    """
    backstop = ShutdownBackstop(
        EXIT_BOUND_SECONDS if seconds is None else seconds,
        exit_process=exit_process,
        status=status or ExitCode.INTERNAL,
        overran="threads still running at exit",
    )
    backstop.arm()
    return backstop


def run_until_signalled(
    service: Callable[[asyncio.Event], Awaitable[T]],
    *,
    shutdown_seconds: float | None = None,
    backstop: ShutdownBackstop | None = None,
) -> T:
    """Run ``service(stop)``; SIGINT or SIGTERM sets ``stop`` so it can shut down cleanly.

    With ``shutdown_seconds`` the shutdown is bounded: once a signal arrived or the service
    ended, the process exits by force when it is still running ``2 * shutdown_seconds + 10``
    seconds later (:class:`ShutdownBackstop`; the worker's own bound is ``shutdown_seconds``
    per step, see ``app.finish_within``).
    """
    if backstop is None and shutdown_seconds is not None:
        backstop = ShutdownBackstop(2 * shutdown_seconds + FORCED_EXIT_MARGIN_SECONDS)

    def stopping(stop: asyncio.Event) -> None:
        stop.set()
        if backstop is not None:
            backstop.arm()

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping, stop)
        try:
            return await service(stop)
        finally:
            if backstop is not None and not backstop.armed:
                backstop.arm()  # the service ended on its own: its clean-up is bounded too

    try:
        return asyncio.run(main())
    finally:
        if backstop is not None:
            backstop.disarm()


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
