"""``radstream dicom``: the DICOM receiver (C-STORE SCP) as a service."""

from __future__ import annotations

import asyncio

import click

import app
from cli.context import Command, Group, Invocation, pass_invocation, run_until_signalled


@click.group("dicom", cls=Group)
def command() -> None:
    """Receive DICOM from PACS and modalities (C-STORE)."""


@command.command("listen", cls=Command)
@pass_invocation
def listen(invocation: Invocation) -> None:
    """Receive DICOM with C-STORE until SIGINT or SIGTERM.

    Listens on RADSTREAM_DICOM__HOST:RADSTREAM_DICOM__PORT as RADSTREAM_DICOM__AE_TITLE, stores
    each instance under the storage root and answers success only once its arrival event is
    confirmed on Kafka (docs/dicom.md). Creates the arrivals topic when missing, serves /livez,
    /readyz and /metrics on RADSTREAM_OBSERVABILITY__METRICS_PORT and logs JSON lines on stderr.
    Exits 5 when Kafka does not answer while it starts.
    """
    settings = invocation.start(service=True)

    async def serve(stop: asyncio.Event) -> None:
        await app.run_listener(
            settings, stop, on_listening=lambda _address: invocation.service_started()
        )

    run_until_signalled(serve)
