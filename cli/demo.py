"""``radstream demo``: the whole pipeline on the bundled sample images, end to end.

The demo runs on the configured broker and database but on a fresh topic prefix and fresh
consumer groups per run (:func:`demo_settings`): it never starts a second audit agent on a
running deployment's chain (issue 17 F: the two would fence each other), and each run's audit
chain is its own. It reports on the images it published itself, by event id.
:func:`run_pipeline_on_files` is also what the end-to-end tests run: the same worker code users
run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shlex
import uuid
from collections.abc import Callable, Collection, Hashable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click
from prometheus_client import CollectorRegistry

import app
from cli import db
from cli.audit import raise_for_broken, show_verification, verification_data, verify_audit_trail
from cli.context import Command, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit, emit_json, emit_table, progress
from cli.params import json_option, seconds_option
from cli.publish import publish_arrivals
from gateway.uploads import UPLOADS_DIR
from schemas.audit import AuditRecord
from schemas.errors import ErrorCode, RadstreamError, TransientError
from schemas.events import ImageArrived, join_model_id
from schemas.settings import RECEIVED_DICOM_DIR, SAMPLES_DIR, Settings
from sinks.database import Database
from sinks.records import LifecycleEntry
from sinks.repositories import LifecycleRepository, ResultsRepository
from streams.audit.checkpoints import TrustedKeys, encode_public_key
from streams.audit.files import load_public_key
from streams.audit.io import read_audit_topic
from streams.inference.routing import RoutingRules, route
from streams.kafka import KafkaClientConfig
from streams.router import arrival_for_file
from streams.topics import TopicNames

TERMINAL_STATES: Final = frozenset({"stored", "rejected", "failed"})
SAMPLE_SUFFIXES: Final = frozenset({".dcm", ".png", ".jpg", ".bin"})
START_TIMEOUT_SECONDS: Final = 120.0
POLL_SECONDS: Final = 0.5
# Who the demo's arrivals are requested by: the API lists a user's own results, so a token for
# this subject reads them.
DEMO_REQUESTER: Final = "demo-clinician"


@dataclass(frozen=True)
class FileOutcome:
    """What became of one published file, read back from PostgreSQL.

    ``decisions`` are the stored results, ``refusals`` the models that gave none (with the
    code); ``expected`` is how many models the routing rules send the image to.
    """

    path: Path
    event_id: str
    states: tuple[str, ...]
    error_code: str | None
    decisions: tuple[str, ...]
    refusals: tuple[str, ...] = ()
    expected: int = 1

    @property
    def finished(self) -> bool:
        """Its arrival is recorded, and it was rejected before inference or every routed model
        has a result or a refusal (the arrival is consumed apart from the outcomes, so it may be
        recorded after them)."""
        if "arrived" not in self.states:
            return False
        if "rejected" in self.states:
            return True
        answered = len(self.decisions) + len(self.refusals)
        return bool(TERMINAL_STATES & set(self.states)) and answered >= self.expected


def demo_modality_hint(path: Path) -> str | None:
    """The modality a router's worklist would know for an exported PNG/JPEG sample.

    The bundled raster samples are named after their source modality (``ct_256.png``); DICOM
    files carry their own Modality, which wins.
    """
    prefix = path.name.split("_", 1)[0].upper()
    return prefix if prefix in {"CT", "MR", "US"} else None


# Folders runs write into while the samples directory is the default storage root (the DICOM
# receiver's instances, the API's uploads): what they hold is not a bundled sample.
WRITTEN_BY_RUNS: Final = frozenset({RECEIVED_DICOM_DIR, UPLOADS_DIR})


def sample_files(root: Path = SAMPLES_DIR) -> list[Path]:
    """The bundled sample images, good and bad (see samples/README.md)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in SAMPLE_SUFFIXES and p.relative_to(root).parts[0] not in WRITTEN_BY_RUNS
    )


def routed_models(event: ImageArrived, rules: RoutingRules) -> int:
    """How many models will answer ``event`` (at least one: a refusal answers too).

    Rules with a body part are matched without one here; the deadline bounds the wait if that
    makes the count wrong.
    """
    try:
        return len(route(event.model_ids, event.modality, None, rules))
    except RadstreamError:
        return 1


def refusal_of(step: LifecycleEntry) -> str:
    """A model's refusal as the demo shows it: ``<model id>: <code>``, or the code alone."""
    if not step.model_name:
        return str(step.error_code)
    return f"{join_model_id(step.model_name, step.model_version)}: {step.error_code}"


async def outcome_of(
    database: Database, path: Path, event: ImageArrived, rules: RoutingRules
) -> FileOutcome:
    """The lifecycle and results stored for ``event`` so far."""
    steps = await LifecycleRepository(database.sessions).lifecycle(event.event_id)
    stored = await ResultsRepository(database.sessions).list_for_event(event.event_id)
    codes = [s.error_code for s in steps if s.error_code]
    return FileOutcome(
        path=path,
        event_id=str(event.event_id),
        states=tuple(str(s.state) for s in steps),
        error_code=codes[0] if codes else None,
        decisions=tuple(
            f"{join_model_id(r.model_name, r.model_version)}: {r.decision} "
            f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(r.scores.items()))})"
            for r in stored
        ),
        refusals=tuple(refusal_of(s) for s in steps if s.error_code and s.stage == "inference"),
        expected=routed_models(event, rules),
    )


async def wait_for_start(started: asyncio.Event, worker: asyncio.Task[None]) -> None:
    """Return once the worker consumes; raise its error if it failed to start (bounded)."""
    waiter = asyncio.create_task(started.wait())
    try:
        await asyncio.wait(
            [waiter, worker], timeout=START_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
    if worker.done():
        worker.result()  # raises the worker's error
    if not started.is_set():
        raise TransientError(ErrorCode.TIMEOUT, "the worker did not start in time")


def demo_settings(settings: Settings, run_id: str | None = None) -> Settings:
    """The settings of one demo run: a fresh topic prefix and consumer groups of its own.

    ``<prefix>demo-<run id>.`` and ``<group prefix>-demo-<run id>``: beside a running
    deployment on the same broker and database, nothing is shared but the tables (its audit
    chain is named by its own topic).
    """
    run = run_id or uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}demo-{run}.",
            "consumer_group_prefix": f"{settings.consumer_group_prefix}-demo-{run}",
        }
    )


def own_audit_key(settings: Settings) -> TrustedKeys:
    """The key of the demo's own audit agent (the demo is its own deployment and audit host)."""
    return TrustedKeys.of(load_public_key(settings.audit.signing_key_file))


def pinning_own_key(settings: Settings) -> Settings:
    """The settings, with the demo's own audit key pinned when none is.

    The demo is its own deployment and audit host: it verifies what its own agent signed. A
    deployment's verifier pins the key instead (``RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS``).
    """
    if settings.audit.trusted_public_keys:
        return settings
    own = encode_public_key(load_public_key(settings.audit.signing_key_file))
    audit = settings.audit.model_copy(update={"trusted_public_keys": (own,)})
    return settings.model_copy(update={"audit": audit})


def audited_event_id(record: AuditRecord) -> Hashable:
    """What :func:`wait_for_audit` looks for by default: the id of the event a record is about."""
    return str(record.object.event_id)


async def wait_for_audit(
    settings: Settings,
    wanted: Collection[Hashable],
    deadline: float,
    key: Callable[[AuditRecord], Hashable] = audited_event_id,
) -> None:
    """Wait (until ``deadline``) until the audit topic holds a record with each ``wanted`` key.

    The worker must not stop before its audit agent has recorded what the run did: a demo's
    topic prefix gets no second agent to catch up later.
    """
    topic = TopicNames(settings.topic_prefix).audit
    trusted = own_audit_key(settings)
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        content = await read_audit_topic(KafkaClientConfig.from_settings(settings), topic, trusted)
        seen = {
            key(record)
            for part in content.values()
            for record in part.records
            if isinstance(record, AuditRecord)
        }
        if set(wanted) <= seen:
            return
        await asyncio.sleep(POLL_SECONDS)


async def run_pipeline_on_files(
    settings: Settings,
    files: Sequence[Path],
    *,
    timeout_seconds: float = 180.0,
    requested_by: str = DEMO_REQUESTER,
    registry: CollectorRegistry | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[FileOutcome]:
    """Start every stage in-process, publish ``files`` as a router would, wait for outcomes.

    Waits at most ``timeout_seconds`` for every file to reach a terminal state and be audited;
    ``on_progress`` is told how many have. Files still unfinished then are reported as such.
    """
    rules = RoutingRules.load(settings.inference.routing_rules_file)
    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(
            settings,
            app.default_stages(settings),
            stop,
            started=started,
            registry=registry,
            serve_http=False,
        )
    )
    try:
        async with AsyncExitStack() as stack:
            database = await app.open_database(stack, settings, pool_size=2)
            await wait_for_start(started, worker)
            events = [
                (
                    path,
                    arrival_for_file(
                        path,
                        source="radstream-demo",
                        requested_by=requested_by,
                        modality=demo_modality_hint(path),
                    ),
                )
                for path in files
            ]
            await publish_arrivals(settings, [event for _, event in events])
            deadline = asyncio.get_running_loop().time() + timeout_seconds
            while True:
                outcomes = [
                    await outcome_of(database, path, event, rules) for path, event in events
                ]
                done = sum(outcome.finished for outcome in outcomes)
                if on_progress is not None:
                    on_progress(done)
                if done == len(outcomes) or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(POLL_SECONDS)
            await wait_for_audit(settings, [str(e.event_id) for _, e in events], deadline)
            return outcomes
    finally:
        stop.set()
        await worker


def outcome_row(outcome: FileOutcome, name: str | None = None) -> tuple[str, str, str]:
    """Sample, outcome and detail (the decisions, the rejection code, or the states so far)."""
    name = name if name is not None else str(outcome.path.relative_to(SAMPLES_DIR))
    if not outcome.finished:
        return name, "UNFINISHED", ",".join(outcome.states) or "-"
    if outcome.decisions:
        return name, "stored", "; ".join((*outcome.decisions, *outcome.refusals))
    return name, "rejected", "; ".join(outcome.refusals) or outcome.error_code or "-"


def api_base_url(settings: Settings) -> str:
    """Where ``radstream api`` serves with these settings (loopback for a wildcard address)."""
    host, port = settings.api.host, settings.api.port
    try:
        address = ipaddress.ip_address(host or "127.0.0.1")
    except ValueError:  # a host name
        return f"http://{host}:{port}"
    if address.is_unspecified:  # listens everywhere: the loopback reaches it
        return f"http://127.0.0.1:{port}"
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"


def reading_hints(settings: Settings, event_id: str | None) -> list[str]:
    """The commands that read a demo run's results afterwards (its summary's last lines).

    PostgreSQL keeps the results and lifecycles (the API reads them: ``GET /results`` lists the
    requester's, ``GET /events/{id}`` one image's lifecycle); the audit trail is the run's own
    topic prefix's, kept in the ``audit_log`` table too. ``event_id`` is one of the run's images
    (``--json`` lists them all).
    """
    api = api_base_url(settings)
    example = event_id or "EVENT_ID"
    prefix = shlex.quote(settings.topic_prefix)
    return [
        "read the results later (PostgreSQL keeps them; --json lists every event id):",
        f"  radstream api &    # the HTTP API, at {api} (docs/api.md)",
        f"  TOKEN=$(radstream token --subject {DEMO_REQUESTER} --role clinician)",
        f'  curl -sS -H "Authorization: Bearer $TOKEN" {api}/results',
        f'  curl -sS -H "Authorization: Bearer $TOKEN" {api}/events/{example}',
        f"  RADSTREAM_TOPIC_PREFIX={prefix} radstream audit show --event-id {example} "
        "--source table",
    ]


@click.command("demo", cls=Command)
@seconds_option(
    "--timeout", minimum=1, default=180.0, help_text="How long to wait for every image's outcome."
)
@json_option
@pass_invocation
def command(invocation: Invocation, timeout: float, as_json: bool) -> None:
    """Run the whole pipeline on the bundled sample images.

    Shows what became of each image. Upgrades the database, starts every stage in this process,
    publishes the bundled samples (good and crafted bad ones) as a router would, reads each
    outcome back from PostgreSQL and ends by verifying the audit trail on the topic and in the
    table. The summary ends with the commands that read the results afterwards (the HTTP API's
    /results and /events/ID, 'radstream audit show').
    """
    settings = demo_settings(invocation.start())
    revision = db.upgrade(settings)
    files = sample_files()
    if not as_json:
        emit(f"database at revision {revision}")
        emit(f"publishing {len(files)} sample images to {settings.topic_prefix}images.arrived")
    with progress("images finished", total=len(files)) as advance:
        outcomes = asyncio.run(
            run_pipeline_on_files(settings, files, timeout_seconds=timeout, on_progress=advance)
        )
    with progress("verifying the audit trail"):
        reports = asyncio.run(verify_audit_trail(pinning_own_key(settings), "both"))
    rows = [outcome_row(outcome) for outcome in outcomes]
    unfinished = sum(not outcome.finished for outcome in outcomes)
    if as_json:
        emit_json(
            {
                "outcomes": [
                    {"sample": sample, "outcome": what, "detail": detail, "event_id": o.event_id}
                    for (sample, what, detail), o in zip(rows, outcomes, strict=True)
                ],
                "audit": verification_data(reports),
                "topic_prefix": settings.topic_prefix,
            }
        )
        raise_for_broken(reports)
    else:
        emit_table(["sample", "outcome", "detail"], rows)
        stored = sum(row[1] == "stored" for row in rows)
        rejected = len(rows) - stored - unfinished
        emit(
            f"{len(rows)} images: {stored} stored with results, {rejected} rejected with a "
            f"code, {unfinished} unfinished"
        )
        show_verification(reports, as_json=False)
        example = next(
            (o.event_id for o, row in zip(outcomes, rows, strict=True) if row[1] == "stored"), None
        )
        for line in reading_hints(settings, example):
            emit(line)
    if unfinished:
        raise CommandError(
            ErrorCode.TIMEOUT,
            f"{unfinished} of {len(rows)} images unfinished after {timeout:g} s",
            advice="See the stages' lines with 'radstream --verbose demo', "
            "or give --timeout more time",
        )
