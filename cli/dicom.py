"""``radstream dicom``: the DICOM receiver (C-STORE SCP) as a service."""

from __future__ import annotations

import asyncio

import click

import app
from cli import db
from cli.context import Command, Group, Invocation, pass_invocation, run_until_signalled
from cli.dicom_demo import (
    connect_orthanc,
    demo_instances,
    export_settings,
    round_trip_row,
    run_dicom_round_trip,
)
from cli.errors import CommandError
from cli.output import emit, emit_table, progress
from cli.params import HttpUrl, seconds_option
from schemas.errors import ErrorCode


@click.group("dicom", cls=Group)
def command() -> None:
    """Receive DICOM with C-STORE, or show the round trip through Orthanc."""


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


@command.command("demo", cls=Command)
@click.option(
    "--orthanc",
    "orthanc_url",
    required=True,
    type=HttpUrl(),
    help="Orthanc's REST base URL, http(s) (make demo-dicom passes the one ops/orthanc.sh "
    "started).",
)
@seconds_option(
    "--timeout",
    minimum=1,
    default=240.0,
    help_text="How long to wait for every instance's outcome and report.",
)
@pass_invocation
def demo(invocation: Invocation, orthanc_url: str, timeout: float) -> None:
    """Show the DICOM round trip: Orthanc -> radstream -> results -> SR back in Orthanc.

    Asks Orthanc who it is (nothing is changed when it does not answer), upgrades the
    database, starts every stage (dicom-export sending to that Orthanc) and the C-STORE
    receiver in this process, uploads the bundled DICOM samples to Orthanc as new studies, asks
    Orthanc to send them to radstream, and shows each outcome and whether each result's
    Structured Report arrived in Orthanc in the image's study.
    """
    settings = invocation.start()
    # Orthanc first: a peer that is not there must not leave a migrated database behind.
    orthanc = asyncio.run(connect_orthanc(orthanc_url))
    revision = db.upgrade(settings)
    settings = export_settings(settings, orthanc)
    instances = demo_instances()
    emit(f"database at revision {revision}; Orthanc {orthanc.ae_title} at {orthanc.url}")
    emit(f"uploading {len(instances)} DICOM samples to Orthanc, then sending them to radstream")
    with progress("round trip"):
        outcomes = asyncio.run(
            run_dicom_round_trip(settings, orthanc, instances, timeout_seconds=timeout)
        )
    emit_table(["sample", "outcome", "detail", "reports"], [round_trip_row(o) for o in outcomes])
    reports = sum(len(o.reports) for o in outcomes)
    arrived = sum(sum(o.reports) for o in outcomes)
    emit(f"{reports} results, {arrived} reports in Orthanc ({orthanc.url}/app/explorer.html)")
    unfinished = sum(not o.finished for o in outcomes)
    if unfinished:
        raise CommandError(
            ErrorCode.TIMEOUT,
            f"{unfinished} of {len(outcomes)} instances unfinished after {timeout:g} s",
            advice="See the stages' lines with 'radstream --verbose dicom demo ...' and the "
            "dead letters (an export Orthanc refused, say) with 'radstream dlq list', "
            "or give --timeout more time",
        )
