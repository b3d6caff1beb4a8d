"""``radstream models``: add, roll out, compare and list model versions (docs/models.md).

Thin commands over :mod:`streams.inference.model_admin` on the registry the workers load
(``RADSTREAM_INFERENCE__MODEL_REGISTRY_DIR``). Every change (``add``, ``promote``, ``shadow``,
``canary``, ``stage``, ``retire``) publishes its audit actions to ``api.actions`` before it is
applied, so these commands need the broker; ``compare`` reads PostgreSQL; ``list``, ``show``
and ``scaffold`` need neither. Workers read the registry when they start: restart the inference
workers after a change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import click

import app
from cli.context import Group, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit, emit_json, emit_table
from cli.params import AwareTime, Validated, actor_option, json_option
from schemas.audit import ApiAction
from schemas.errors import ErrorCode
from schemas.events import join_model_id, utc_now
from schemas.rollout import RolloutMode
from schemas.settings import Settings
from sinks.repositories import ComparisonRepository
from streams.audit.io.actions import action_message
from streams.inference import model_admin
from streams.inference.comparison import render_comparison
from streams.inference.model_admin import Publish
from streams.inference.rollout import ACTIVE, RETIRED, SHADOW, STAGED, VersionRollout

T = TypeVar("T")
DEFAULT_WINDOW: Final = timedelta(hours=24)
CLIENT_ID: Final = "radstream-models"
SEND_TIMEOUT_SECONDS: Final = 10.0
MODEL_ID = Validated(str, "model id")


@click.group("models", cls=Group)
def command() -> None:
    """Add, roll out, compare and list model versions.

    Changes are audited on api.actions before they take effect (the broker must be up);
    restart the inference workers after one. See docs/models.md.
    """


def registry_dir(settings: Settings) -> Path:
    """The model registry the workers load."""
    return settings.inference.model_registry_dir


def with_publisher(settings: Settings, operation: Callable[[Publish], Awaitable[T]]) -> T:
    """Run ``operation(publish)`` with a delivery-confirming publisher of audit actions.

    Raises:
        TransientError: ``BROKER_UNAVAILABLE`` or ``TIMEOUT`` (nothing was changed).
    """

    async def run() -> T:
        async with AsyncExitStack() as stack:
            publisher = await app.open_publisher(
                stack, settings, client_id=CLIENT_ID, send_timeout_seconds=SEND_TIMEOUT_SECONDS
            )

            async def publish(actions: Sequence[ApiAction]) -> None:
                await publisher.deliver([action_message(action) for action in actions])

            return await operation(publish)

    return asyncio.run(run())


# ------------------------------------------------------------------------------- list, show


@command.command("list")
@json_option
@pass_invocation
def list_command(invocation: Invocation, as_json: bool) -> None:
    """List every model version: its rollout mode and whether it can be served.

    Every weights file is checked against the SHA-256 its manifest declares; a version whose
    weights do not match is listed as refused (MODEL_CHECKSUM_MISMATCH) and never served.
    """
    settings = invocation.start()
    rows = app.load_model_registry(settings).list()
    if not rows:
        raise CommandError(
            ErrorCode.CHECK_FAILED,
            "the model registry holds no model",
            advice="Check RADSTREAM_INFERENCE__MODEL_REGISTRY_DIR (docs/inference.md)",
        )
    if as_json:
        emit_json([row.model_dump(mode="json") for row in rows])
        return
    emit_table(
        ["name", "version", "rollout", "runtime", "status", "digest"],
        [
            (
                row.name,
                row.version,
                VersionRollout(mode=row.rollout, canary_percent=row.canary_percent).describe(),
                row.runtime or "-",
                row.status.value + (f" ({row.error_code})" if row.error_code else ""),
                (row.weights_sha256 or "-")[:16],
            )
            for row in rows
        ],
    )


@command.command("show")
@click.argument("model", type=MODEL_ID)
@json_option
@pass_invocation
def show_command(invocation: Invocation, model: str, as_json: bool) -> None:
    """Show one version (MODEL is name@version, or a name for its active version).

    Its verified status, rollout mode, input and output, input guard, drift reference, the
    modes of the model's other versions and the model card's heading.
    """
    settings = invocation.start()
    details = model_admin.show_model(registry_dir(settings), model)
    if as_json:
        emit_json(
            {
                **details.status.model_dump(mode="json"),
                "versions": {v: r.describe() for v, r in sorted(details.versions.items())},
                "model_card": details.manifest.model_card,
            }
        )
        return
    for line in model_admin.render_details(details):
        emit(line)


# ------------------------------------------------------------------------------- scaffold, add


@command.command("scaffold")
@click.argument("onnx", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The model's name (lower case, e.g. chest-ct-nodule).")
@click.option("--version", "version", required=True, help="The new version (e.g. 2.1.0).")
@click.option("--label", "labels", multiple=True, help="An output label, in order (repeat).")
@click.option("--modality", "modalities", multiple=True, help="A DICOM modality (repeat).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the manifest here instead of stdout (an existing file is not replaced).",
)
@pass_invocation
def scaffold_command(
    invocation: Invocation,
    *,
    onnx: Path,
    name: str,
    version: str,
    labels: tuple[str, ...],
    modalities: tuple[str, ...],
    output: Path | None,
) -> None:
    """Write a manifest for ONNX from its graph, with TODO where a person must decide.

    The input and output tensors, layout, size, labels and digest come from the graph; the
    intended use, status, normalisation, score meaning and thresholds are left as TODO
    values, which 'models add' refuses until they are filled in.
    """
    invocation.start()
    model_admin.split_model_id(join_model_id(name, version))
    weights = onnx.read_bytes()
    text = model_admin.scaffold_manifest(
        weights, name=name, version=version, labels=labels, modalities=modalities
    )
    if output is None:
        emit(text.rstrip("\n"))
        return
    try:
        with output.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise CommandError(
            ErrorCode.REQUEST_INVALID,
            f"{output.name} exists and is not replaced",
            advice="Choose another --output, or remove the file",
        ) from None
    emit(f"wrote {output}; replace every TODO value before 'radstream models add'")


@command.command("add")
@click.argument("onnx", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The manifest (YAML) of the new version.",
)
@click.option(
    "--card",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The model card (Markdown).",
)
@actor_option
@pass_invocation
def add_command(invocation: Invocation, onnx: Path, manifest: Path, card: Path, actor: str) -> None:
    """Check ONNX against its manifest and install it as a new, staged version (audited).

    Refused, with nothing written: a manifest with TODO values, a digest that is not the
    file's, tensors that do not match the manifest, a graph that fails a trial run, or a
    version that is installed already.
    """
    settings = invocation.start()
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(
            ErrorCode.REQUEST_INVALID, f"the manifest cannot be read: {type(exc).__name__}"
        ) from exc
    added = with_publisher(
        settings,
        lambda publish: model_admin.add_model(
            registry_dir(settings), onnx, card, text, actor=actor, publish=publish
        ),
    )
    emit(f"added {added.manifest.model_id} as {added.mode.describe()} in {added.directory}")


# ------------------------------------------------------------------------------- rollout


def change(settings: Settings, model: str, target: VersionRollout, actor: str) -> None:
    """Put ``model`` into ``target`` mode and print each audited change."""
    changes = with_publisher(
        settings,
        lambda publish: model_admin.change_rollout(
            registry_dir(settings), model, target, actor=actor, publish=publish
        ),
    )
    if not changes:
        emit(f"{model} is already {target.describe()}; nothing changed")
        return
    for done in changes:
        emit(f"{done.model_id}: {done.previous.describe()} -> {done.current.describe()}")
    emit("restart the inference workers to apply it (radstream worker --stages inference)")


def _rollout_command(verb: str, target: VersionRollout, summary: str) -> None:
    @command.command(verb, help=summary)
    @click.argument("model", type=MODEL_ID)
    @actor_option
    @pass_invocation
    def rollout_command(invocation: Invocation, model: str, actor: str) -> None:
        change(invocation.start(), model, target, actor)


_rollout_command(
    "promote",
    ACTIVE,
    "Make MODEL (name@version) the active version (audited).\n\n"
    "The previously active version becomes staged: promote it again to roll back.",
)
_rollout_command(
    "shadow",
    SHADOW,
    "Run MODEL (name@version) in shadow beside the active version (audited).\n\n"
    "Its results are stored for 'models compare' and never published.",
)
_rollout_command(
    "stage",
    STAGED,
    "Take MODEL (name@version) out of traffic (audited); it runs only when pinned.",
)
_rollout_command(
    "retire",
    RETIRED,
    "Retire MODEL (name@version): it never runs again (audited).\n\n"
    "An event pinning it is refused with MODEL_VERSION_RETIRED.",
)


@command.command("canary")
@click.argument("model", type=MODEL_ID)
@click.option(
    "--percent",
    required=True,
    type=click.IntRange(1, 99),
    help="The share of studies (1-99) the canary serves, chosen by StudyInstanceUID.",
)
@actor_option
@pass_invocation
def canary_command(invocation: Invocation, model: str, percent: int, actor: str) -> None:
    """Let MODEL (name@version) serve a share of studies instead of the active version.

    The active version runs in shadow on those studies, so 'models compare' stays paired.
    Audited; raising the percentage only adds studies.
    """
    target = VersionRollout(mode=RolloutMode.CANARY, canary_percent=percent)
    change(invocation.start(), model, target, actor)


# ------------------------------------------------------------------------------- compare


@command.command("compare")
@click.argument("name")
@click.option("--candidate", help="The version to judge (default: the canary, else the shadow).")
@click.option("--baseline", help="The version to judge it against (default: the active one).")
@click.option("--since", type=AwareTime(), help="Start of the window (default: 24 h ago).")
@click.option("--until", type=AwareTime(), help="End of the window (default: now).")
@json_option
@pass_invocation
def compare_command(
    invocation: Invocation,
    *,
    name: str,
    candidate: str | None,
    baseline: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    """Compare a canary or shadow version of NAME with the active one on stored results.

    Agreement and score deltas on the images both versions scored, the decision cross-table,
    and each version's failures by code and latency, over a time window.
    """
    settings = invocation.start()
    base, cand = model_admin.comparison_versions(
        registry_dir(settings), name, candidate=candidate, baseline=baseline
    )
    end = until or utc_now()
    start = since or end - DEFAULT_WINDOW

    async def run() -> Any:
        async with AsyncExitStack() as stack:
            database = await app.open_database(stack, settings, pool_size=1)
            return await ComparisonRepository(database.sessions).compare(
                name, base, cand, since=start, until=end
            )

    report = asyncio.run(run())
    if as_json:
        emit_json(report.model_dump(mode="json"))
        return
    for line in render_comparison(report):
        emit(line)
    if report.paired_images == 0:
        raise CommandError(
            ErrorCode.RESOURCE_NOT_FOUND,
            "no image has results of both versions in the window",
            advice="Put the candidate in shadow or canary, let traffic flow, or widen --since",
        )
