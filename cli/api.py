"""``radstream api``: serve the HTTP API (docs/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import click
import structlog
import uvicorn
from fastapi import FastAPI

import app
from cli.context import Command, Invocation, pass_invocation, run_until_signalled
from cli.errors import CommandError
from schemas.errors import ErrorCode
from schemas.settings import Settings

log = structlog.get_logger("radstream.api")


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by the command's stop event and telling when it listens.

    The command handles SIGINT/SIGTERM like every service (``run_until_signalled``): uvicorn's
    own handlers would re-raise the signal after the graceful shutdown, ending the process
    "killed by SIGTERM" instead of with status 0.
    """

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signals to the command (see the class)."""
        yield

    async def startup(self, sockets: Any = None) -> None:
        """Start listening, then say so (the libraries' log lines are held back until then)."""
        await super().startup(sockets)
        if self.started:
            self._on_started()
            # uvicorn's own "running on" line is held back with the other library lines.
            log.info("api_listening", host=self.config.host, port=self.config.port)


def server_config(api: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for the API: our logging, no access line, no Server header."""
    return uvicorn.Config(
        api,
        host=settings.api.host,
        port=settings.api.port,
        # None: uvicorn's loggers go through our masked root handler, not their own.
        log_config=None,
        # uvicorn's access line carries the full query string (a token sent as
        # ?access_token=, PHI typed into a filter); the gateway logs its own line instead,
        # with the route template and no query (gateway/middleware.py).
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


async def serve(settings: Settings, stop: asyncio.Event, on_started: Callable[[], None]) -> None:
    """Open the API's resources, serve until ``stop`` is set, then close them.

    Raises:
        TransientError: Kafka or PostgreSQL does not answer while starting.
        CommandError: ``SETTINGS_INVALID`` when the address cannot be listened on.
    """
    async with AsyncExitStack() as stack:
        api = await app.build_api(stack, settings)
        server = _Server(server_config(api, settings), on_started)

        async def stop_on_signal() -> None:
            await stop.wait()
            server.should_exit = True

        stopper = asyncio.create_task(stop_on_signal())
        try:
            await server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot listen; report it as one line instead.
            server.started = False
        finally:
            stopper.cancel()
        if not server.started:
            raise CommandError(
                ErrorCode.SETTINGS_INVALID,
                f"cannot listen on {settings.api.host}:{settings.api.port}",
                advice="Free the port, or set RADSTREAM_API__HOST and RADSTREAM_API__PORT",
            )


@click.command("api", cls=Command)
@pass_invocation
def command(invocation: Invocation) -> None:
    """Serve the HTTP API until SIGINT or SIGTERM.

    Listens on RADSTREAM_API__HOST:RADSTREAM_API__PORT (docs/api.md). Exits 5 when Kafka or
    PostgreSQL does not answer while it starts; after that, /readyz reports them.
    """
    settings = invocation.start(service=True)
    run_until_signalled(lambda stop: serve(settings, stop, invocation.service_started))
