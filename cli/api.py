"""``radstream api``: serve the HTTP API (docs/api.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import click
import uvicorn

import app
from cli.context import Command, Invocation, pass_invocation
from cli.errors import CommandError
from schemas.errors import ErrorCode
from schemas.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens (its lines are held back until then)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        """Start listening, then say so."""
        await super().startup(sockets)
        if self.started:
            self._on_started()


async def serve(settings: Settings, on_started: Callable[[], None]) -> None:
    """Open the API's resources, serve until SIGINT/SIGTERM (uvicorn handles them), close."""
    async with AsyncExitStack() as stack:
        api = await app.build_api(stack, settings)
        config = uvicorn.Config(
            api,
            host=settings.api.host,
            port=settings.api.port,
            # None: uvicorn's loggers go through our masked root handler, not their own.
            log_config=None,
            server_header=False,
            proxy_headers=False,
        )
        server = _Server(config, on_started)
        try:
            await server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot listen; report it as one line instead.
            server.started = False
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
    asyncio.run(serve(settings, invocation.service_started))
