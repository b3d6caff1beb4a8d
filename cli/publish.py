"""``radstream publish``: arrival events for local files, as a PACS/DICOM router sends them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import click

from cli.context import Command, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit_json, emit_table
from cli.params import Validated, json_option
from gateway.image_refs import resolve_image_uri
from observability.phi import mask_text
from schemas.api import Modality
from schemas.correlation import new_correlation_id, with_correlation_header
from schemas.errors import RadstreamError
from schemas.events import ImageArrived, ModelId, Priority, Pseudonym
from schemas.settings import Settings
from streams.kafka import KafkaPublisher
from streams.router import arrival_for_file
from streams.topics import arrival_topic


async def publish_arrivals(settings: Settings, events: Sequence[ImageArrived]) -> None:
    """Publish ``events`` to ``images.arrived``, keyed and headed as a router sends them."""
    async with KafkaPublisher.from_settings(settings) as pub:
        for event in events:
            headers = with_correlation_header((), new_correlation_id())
            await pub.publish(arrival_topic(event.priority), event.message_key(), event, headers)


def resolve_in_storage_roots(files: Sequence[Path], roots: Sequence[Path]) -> list[Path]:
    """Each file's real path, provided every one lies inside a storage root.

    The check is the API's (:func:`gateway.image_refs.resolve_image_uri`): a file the stages
    could never read is refused here with the same code, before anything is published.

    Raises:
        CommandError: ``STORAGE_PATH_OUTSIDE_ROOTS`` naming the first such FILE by its position
            (its path may hold patient data).
    """
    resolved: list[Path] = []
    for number, path in enumerate(files, start=1):
        try:
            resolved.append(resolve_image_uri(path.absolute().as_uri(), roots))
        except RadstreamError as exc:
            raise CommandError(
                exc.code,
                f"FILE {number}: {exc.reason}",
                advice="Put the file under a storage root, or add its folder to "
                "RADSTREAM_STORAGE_ROOTS ('radstream config' shows the roots)",
            ) from exc
    return resolved


@click.command("publish", cls=Command)
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=Validated(ModelId, "model id"),
    help="A model to run (name or name@version); repeat for several. "
    "Default: the routing rules choose.",
)
@click.option(
    "--source",
    default="radstream-cli",
    show_default=True,
    type=Validated(Pseudonym, "source name"),
    help="The router name or DICOM AE title recorded as the source.",
)
@click.option(
    "--requested-by",
    type=Validated(Pseudonym, "pseudonymous user id"),
    help="Pseudonymous id of whoever asked for the analysis (never a name).",
)
@click.option(
    "--modality",
    type=Validated(Modality, "modality"),
    help="Modality for PNG/JPEG exports (CT, MR, ...); a DICOM file's own Modality wins.",
)
@click.option(
    "--priority",
    type=click.Choice([p.value for p in Priority]),
    default=Priority.ROUTINE.value,
    show_default=True,
    help="Clinical urgency.",
)
@json_option
@pass_invocation
def command(
    invocation: Invocation,
    *,
    files: tuple[Path, ...],
    models: tuple[str, ...],
    source: str,
    requested_by: str | None,
    modality: str | None,
    priority: str,
    as_json: bool,
) -> None:
    """Publish one arrival event per FILE, as a router would.

    The events go to the images.arrived topic. Each carries the file's size, SHA-256 and DICOM
    UIDs (never patient attributes) and a file:// URI. Every FILE must lie inside
    RADSTREAM_STORAGE_ROOTS, where the stages read: otherwise nothing is published and the
    command fails with STORAGE_PATH_OUTSIDE_ROOTS, as the API does. File names are shown masked.
    """
    settings = invocation.start()
    events = [
        arrival_for_file(
            path,
            source=source,
            model_ids=models,
            requested_by=requested_by,
            priority=Priority(priority),
            modality=modality,
        )
        for path in resolve_in_storage_roots(files, settings.storage_roots)
    ]
    asyncio.run(publish_arrivals(settings, events))
    rows = [(str(e.event_id), mask_text(p.name)) for p, e in zip(files, events, strict=True)]
    if as_json:
        emit_json([{"event_id": event_id, "file": name} for event_id, name in rows])
    else:
        emit_table(["event id", "file"], rows)
