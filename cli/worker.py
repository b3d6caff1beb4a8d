"""``radstream worker``: run pipeline stages until stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import click

import app
from cli.context import Command, Invocation, pass_invocation, run_until_signalled
from cli.errors import CommandError
from cli.params import WORKER_STAGE_FOR, CommaList
from schemas.errors import ErrorCode
from schemas.settings import Settings

stages_option = click.option(
    "--stages",
    type=CommaList(
        app.ALL_STAGES, {stage.value: worker for stage, worker in WORKER_STAGE_FOR.items()}
    ),
    default=None,
    help=f"The stages to run, comma-separated, from {','.join(app.ALL_STAGES)} (default: all; "
    "dicom-export only when RADSTREAM_DICOM__EXPORT_DESTINATIONS names a destination). The "
    "spellings of dead letters and metrics (dicom_export, results_sink) are accepted too. Each "
    "stage set is its own consumer group, so each stage scales on its own; dicom-export always "
    "has its own group.",
)


@click.command("worker", cls=Command)
@stages_option
@pass_invocation
def command(invocation: Invocation, stages: tuple[str, ...] | None) -> None:
    """Run pipeline stages until SIGINT or SIGTERM.

    The worker creates missing topics, serves /livez, /readyz and /metrics on
    RADSTREAM_OBSERVABILITY__METRICS_PORT, and logs JSON lines on stderr. It exits 5 when Kafka
    or (for the results and audit stages) PostgreSQL does not answer while it starts; an outage
    after that is waited out. A stage that fails later, or stalls (lag, the broker and database
    up, no progress for RADSTREAM_WATCHDOG__STALL_SECONDS), ends the worker with a non-zero
    status, so that its supervisor restarts it. SIGTERM while starting ends the start at once
    (status 0). After SIGTERM the stages get RADSTREAM_WATCHDOG__SHUTDOWN_SECONDS to finish,
    then are cancelled; a stage that fails meanwhile ends the worker with its error's status; a
    worker still running after twice that plus 10 s exits at once with status 70
    (docs/operations.md).
    """
    settings = invocation.start(service=True)
    stages = stages or app.default_stages(settings)
    if "dicom-export" in stages and not settings.dicom.export_destinations:
        raise CommandError(
            ErrorCode.SETTINGS_INVALID,
            "the dicom-export stage has no destination to send reports to",
            advice="Set RADSTREAM_DICOM__EXPORT_DESTINATIONS, e.g. "
            '\'[{"ae_title": "PACS", "host": "pacs.local", "port": 104}]\'',
        )

    run_until_signalled(
        lambda stop: serve_worker(invocation, settings, stages, stop),
        shutdown_seconds=settings.watchdog.shutdown_seconds,
    )


async def serve_worker(
    invocation: Invocation,
    settings: Settings,
    stages: Sequence[str],
    stop: asyncio.Event,
    consumer_loop: app.ConsumerLoop = app.faust_consumer_loop,
) -> None:
    """``app.run_worker`` until ``stop``; the service counts as started once the worker consumes.

    The benchmark's aiokafka baseline runs its workers through this too, with its own loop.
    """
    started = asyncio.Event()
    announced = asyncio.create_task(started.wait())

    def announce(task: asyncio.Task[bool]) -> None:
        if not task.cancelled():
            invocation.service_started()

    announced.add_done_callback(announce)
    try:
        await app.run_worker(settings, stages, stop, started=started, consumer_loop=consumer_loop)
    finally:
        announced.cancel()
