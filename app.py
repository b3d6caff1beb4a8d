"""radstream's composition root: settings, the Faust app, its agents, and the ``radstream`` command.

Nothing here runs at import time. ``main()`` parses the command line, builds the settings once,
and hands them to the command, which creates the engines, producers and the Faust app it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from observability import lag_cli
from schemas.contracts import (
    ASYNCAPI_FILE,
    JSONSCHEMA_DIR,
    ChannelContract,
    asyncapi_document,
    jsonschema_files,
    render,
)
from schemas.events import (
    CORRELATION_ID_HEADER,
    ImageArrived,
    InferenceCompleted,
    Priority,
    Stage,
    utc_now,
)
from schemas.settings import Settings, load_settings
from streams import dlq_cli
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames, value_models

if TYPE_CHECKING:
    from fastapi import FastAPI

    from observability.health import HealthState, WorkerHealth
    from observability.metrics import Metrics
    from streams.agents import AgentSpec
    from streams.audit_agent import AuditAgent
    from streams.inference.registry import ModelRegistry
    from streams.stages.common import ImageReader

ALL_STAGES = ("validation", "inference", "results", "audit")
CHANNEL_KEYS: dict[TopicKey, str] = {
    TopicKey.IMAGES_ARRIVED: "StudyInstanceUID when present, else the event id",
    TopicKey.IMAGES_VALIDATED: "the arrival's key",
    TopicKey.IMAGES_REJECTED: "the arrival's key",
    TopicKey.INFERENCE_RESULTS: "the arrival's key",
    TopicKey.AUDIT_LOG: "the audit chain partition",
    TopicKey.DEADLETTER: "the original message's key",
    TopicKey.DEADLETTER_MARKS: "the dead letter's id",
    TopicKey.API_ACTIONS: "the acting subject",
}


# ------------------------------------------------------------------------------------ contracts
def contract_files(settings: Settings) -> dict[Path, str]:
    """Every generated contract file and its content (JSON Schemas + AsyncAPI)."""
    models = value_models()
    files = {
        JSONSCHEMA_DIR / name: text
        for name, text in jsonschema_files(
            sorted(set(models.values()), key=lambda m: m.__name__)
        ).items()
    }
    names = TopicNames("radstream.")
    channels = [
        ChannelContract(
            channel_id=key.name.lower(),
            address=names[key],
            model=models[key],
            description=TOPIC_SPECS[key].description,
            key=CHANNEL_KEYS[key],
        )
        for key in TOPIC_SPECS
    ]
    document = asyncapi_document(
        channels, version="1.0.0", servers={"local": settings.kafka_bootstrap.split(",")[0]}
    )
    files[ASYNCAPI_FILE] = render(document)
    return files


def cmd_schemas(settings: Settings, args: argparse.Namespace) -> int:
    """Write (export) or compare (check) the committed contract files."""
    files = contract_files(load_settings(kafka_bootstrap="127.0.0.1:9092"))
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.action == "check":
        for path in stale:
            print(f"stale: {path.relative_to(Path(__file__).parent)}")
        return 1 if stale else 0
    JSONSCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    print(f"wrote {len(files)} contract files ({len(stale)} changed)")
    return 0


# ------------------------------------------------------------------------------------ worker
def consumer_group(settings: Settings, stages: Sequence[str]) -> str:
    """One consumer group per stage set, so each stage can be scaled as its own group."""
    return f"{settings.consumer_group_prefix}-{'+'.join(sorted(stages))}"


async def run_worker(
    settings: Settings,
    stages: Sequence[str],
    stop: asyncio.Event,
    *,
    started: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    serve_http: bool = True,
) -> None:
    """Run the selected stages' agents until ``stop`` is set, then shut down cleanly.

    Consumption goes through Faust (group membership, batching, offset commits); production
    through one delivery-confirming aiokafka producer; PostgreSQL through the sinks.
    """
    import faust  # noqa: PLC0415 - the worker's heavy imports stay out of the other commands

    from observability.health import HealthState  # noqa: PLC0415
    from observability.metrics import Metrics  # noqa: PLC0415
    from observability.stage_observer import MetricsObserver  # noqa: PLC0415
    from streams.agents import register_agent  # noqa: PLC0415
    from streams.kafka_io import KafkaPublisher  # noqa: PLC0415
    from streams.topic_admin import ensure_topics  # noqa: PLC0415

    unknown = set(stages) - set(ALL_STAGES)
    if unknown:
        raise ValueError(f"unknown stages: {sorted(unknown)}")
    topics = TopicNames(settings.topic_prefix)
    await ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    observer = MetricsObserver(metrics)
    publisher = KafkaPublisher(settings.kafka_bootstrap, topics, client_id="radstream-worker")
    await publisher.start()
    resources: list[Callable[[], Awaitable[None]]] = [publisher.stop]
    app = faust.App(
        consumer_group(settings, stages),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        loop=asyncio.get_running_loop(),
        consumer_auto_offset_reset="earliest",
        # Large polls make rebalances slow (robinhood#402); inference batches are small anyway.
        broker_max_poll_records=500,
        # Above the slowest batch (inference of a full batch of 2048 px images on 2 cores).
        stream_processing_timeout=120.0,
        topic_disable_leader=True,
        # Faust's 60 s default keeps a crashed worker's partitions unassigned for a minute;
        # heartbeats run in the background, so a slow batch does not need a long timeout.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    health = HealthState(stages, requires_database="results" in stages)
    specs = build_agent_specs(settings, stages, topics, metrics, resources)
    for spec in specs:
        register_agent(
            app,
            spec,
            publisher.deliver,
            observer,
            on_batch_done=lambda stage, _outgoing: health.record_progress(stage),
        )
    background: list[asyncio.Task[None]] = []
    if "audit" in stages:
        background.append(asyncio.create_task(run_audit_agent(settings, stop, metrics)))
    # /livez, /readyz and /metrics on one port per worker (docs/observability.md).
    worker_health = build_worker_health(
        settings,
        stages,
        specs,
        health,
        registry=registry,
        serve_http=serve_http,
        resources=resources,
    )
    await worker_health.start()
    resources.append(worker_health.close)
    try:
        if specs:
            await app.start()
            health.mark_started()
        if started is not None:
            started.set()
        await _wait_for_stop_or_failure(stop, background)
    finally:
        # A failed start must not leave the audit task waiting for a stop that never comes.
        stop.set()
        if specs:
            await app.stop()
        # Failures were raised above already; here every stage only has to finish.
        await asyncio.gather(*background, return_exceptions=True)
        for close in reversed(resources):
            await close()


async def _wait_for_stop_or_failure(
    stop: asyncio.Event, background: Sequence[asyncio.Task[None]]
) -> None:
    """Return when ``stop`` is set; raise when a background stage (the audit agent) failed.

    A worker whose audit stage died must not go on validating and inferring unaudited: it
    exits non-zero so the process supervisor restarts it, and the audit agent resumes from
    its committed offsets.
    """
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *background], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    for task in done:
        if task is not stopper and task.exception() is not None:
            raise RuntimeError("a worker stage failed") from task.exception()


def build_worker_health(
    settings: Settings,
    stages: Sequence[str],
    specs: Sequence[AgentSpec],
    health: HealthState,
    *,
    registry: CollectorRegistry,
    serve_http: bool,
    resources: list[Callable[[], Awaitable[None]]],
) -> WorkerHealth:
    """The worker's lag, broker and database probes; /livez, /readyz and /metrics on one port."""
    from observability.health import WorkerHealth  # noqa: PLC0415
    from observability.lag import LagReader  # noqa: PLC0415

    group = consumer_group(settings, stages)
    inputs: dict[str, tuple[str, Sequence[str] | None]] = {
        spec.name: (group, spec.topics) for spec in specs
    }
    if "audit" in stages:
        inputs["audit"] = (f"{settings.consumer_group_prefix}-audit", None)
    database_probe = None
    if "results" in stages:
        from sinks.database import Database  # noqa: PLC0415

        # A pool of one of its own: a ping must not queue behind a sink's batch writes.
        database = Database(settings.database_url.get_secret_value(), pool_size=1)
        resources.append(database.dispose)
        database_probe = database.ping
    reader = LagReader(
        settings.kafka_bootstrap,
        settings.topic_prefix,
        group_prefix=settings.consumer_group_prefix,
        read_timestamps=False,  # readiness needs lag and commits, not message ages
    )
    address = None
    if serve_http:
        address = (settings.observability.metrics_host, settings.observability.metrics_port)
    return WorkerHealth(
        health, reader, inputs, database_probe=database_probe, registry=registry, address=address
    )


def build_agent_specs(
    settings: Settings,
    stages: Sequence[str],
    topics: TopicNames,
    metrics: Metrics,
    resources: list[Callable[[], Awaitable[None]]],
) -> list[AgentSpec]:
    """The Faust agents of the selected stages; closers of what they opened go to resources."""
    specs: list[AgentSpec] = []
    if "validation" in stages:
        specs.append(build_validation_spec(settings, topics))
    if "inference" in stages:
        specs.append(build_inference_spec(settings, topics, metrics))
    if "results" in stages:
        spec, dispose = build_results_spec(settings, topics, metrics)
        specs.append(spec)
        resources.append(dispose)
    return specs


def build_image_reader(settings: Settings) -> ImageReader:
    """Reads images from the storage roots, retrying a file not there yet (both stages)."""
    from streams.retry import RetryPolicy  # noqa: PLC0415
    from streams.stages.common import ImageReader  # noqa: PLC0415

    return ImageReader(
        settings.storage_roots,
        settings.validation.max_file_bytes,
        RetryPolicy.from_settings(settings.retry),
    )


def build_validation_spec(settings: Settings, topics: TopicNames) -> AgentSpec:
    """The validation agent: storage reads with retries, validation off the event loop."""
    from streams.agents import AgentSpec  # noqa: PLC0415
    from streams.stages.validation import ValidationStage  # noqa: PLC0415
    from streams.validation import load_clinical_rules  # noqa: PLC0415

    reader = build_image_reader(settings)
    rules = load_clinical_rules(settings.validation.clinical_rules_file)
    stage = ValidationStage(reader, settings.validation, rules)
    return AgentSpec("validation", (topics.arrived,), stage, 16, 0.05)


def load_model_registry(settings: Settings) -> ModelRegistry:
    """The model registry with every weights file verified against its manifest."""
    from streams.inference.registry import ModelRegistry  # noqa: PLC0415

    return ModelRegistry.load(
        settings.inference.model_registry_dir,
        providers=settings.inference.onnx_providers,
        intra_op_threads=settings.inference.intra_op_threads,
    )


def build_inference_spec(settings: Settings, topics: TopicNames, metrics: Metrics) -> AgentSpec:
    """The inference agent: micro-batches of ``inference.batch_size`` within the wait time."""
    from schemas.errors import ErrorCode  # noqa: PLC0415
    from streams.agents import AgentSpec  # noqa: PLC0415
    from streams.inference.routing import RoutingRules  # noqa: PLC0415
    from streams.stages.inference import InferenceStage  # noqa: PLC0415

    registry = load_model_registry(settings)
    for status in registry.list():
        if status.error_code is ErrorCode.MODEL_CHECKSUM_MISMATCH:
            metrics.model_checksum_refused(status.name, status.version)
        elif status.error_code is not None:
            metrics.model_load_failed(status.name, status.version)
    for model in registry.models():  # the drift baselines the alert rules compare with
        if model.manifest.reference is not None:
            metrics.set_model_reference(
                model.manifest.name,
                model.manifest.version,
                scores=model.manifest.reference.score_points(),
                statistics=model.manifest.reference.statistic_points(),
            )
    rules = RoutingRules.load(settings.inference.routing_rules_file)
    reader = build_image_reader(settings)
    stage = InferenceStage(
        reader,
        registry,
        rules,
        settings.validation,
        on_model_batch=metrics.inference_batch,
        on_model_outcome=metrics.model_observed,
    )
    return AgentSpec(
        "inference",
        (topics.validated,),
        stage,
        settings.inference.batch_size,
        settings.inference.batch_wait_seconds,
    )


async def run_audit_agent(settings: Settings, stop: asyncio.Event, metrics: Metrics) -> None:
    """The transactional audit agent (aiokafka, exactly-once consume→produce) until ``stop``."""
    from streams.audit.checkpoints import CheckpointPolicy  # noqa: PLC0415
    from streams.audit_agent import AuditAgent  # noqa: PLC0415

    agent = AuditAgent(
        bootstrap=settings.kafka_bootstrap,
        prefix=settings.topic_prefix,
        group_id=f"{settings.consumer_group_prefix}-audit",
        signing_key_path=settings.audit.signing_key_file,
        checkpoint_file=settings.audit.checkpoint_file,
        policy=CheckpointPolicy.from_settings(settings.audit),
        batch_wait_seconds=settings.audit.batch_wait_seconds,
    )
    from sinks.audit_sink import AuditSink  # noqa: PLC0415
    from sinks.database import Database  # noqa: PLC0415

    database = Database(settings.database_url.get_secret_value(), pool_size=2)
    sink = AuditSink(
        bootstrap=settings.kafka_bootstrap,
        prefix=settings.topic_prefix,
        group_id=f"{settings.consumer_group_prefix}-audit-sink",
        database=database,
    )
    try:
        # The chain writer and its copy into the append-only table run side by side; either
        # failing ends the audit stage, which stops the whole worker (see run_worker).
        await asyncio.gather(
            agent.run(stop), sink.run(stop), _export_audit_counts(agent, metrics, stop)
        )
    finally:
        await database.dispose()


async def _export_audit_counts(agent: AuditAgent, metrics: Metrics, stop: asyncio.Event) -> None:
    """Count the audit records the agent commits (its counter, sampled every second)."""
    reported = 0
    while True:
        written = agent.records_written
        if written > reported:
            metrics.audit_appended(written - reported)
            reported = written
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def build_results_spec(
    settings: Settings, topics: TopicNames, metrics: Metrics
) -> tuple[AgentSpec, Callable[[], Awaitable[None]]]:
    """The results sink agent: PostgreSQL writes with backpressure, measured."""
    from sinks.database import Database  # noqa: PLC0415
    from sinks.results_sink import ResultsSink, SinkHooks, WriteReport  # noqa: PLC0415
    from streams.agents import AgentSpec  # noqa: PLC0415
    from streams.stages.results import ResultsStage  # noqa: PLC0415

    database = Database(settings.database_url.get_secret_value(), pool_size=settings.sink.pool_size)

    def written(report: WriteReport) -> None:
        metrics.sink_written(
            "results", report.results_inserted, report.seconds, conflicts=report.results_duplicates
        )

    hooks = SinkHooks(
        database_up=metrics.set_database_up,
        backpressure=lambda seconds: metrics.sink_backpressure("results", seconds),
        batch_written=written,
    )
    sink = ResultsSink(database.sessions, settings.sink, hooks)

    def stored(result: InferenceCompleted) -> None:
        metrics.end_to_end(Stage.RESULTS_SINK, (utc_now() - result.occurred_at).total_seconds())

    stage = ResultsStage(sink, topics, on_stored=stored)
    spec = AgentSpec(
        "results",
        (topics.results, topics.validated, topics.rejected),
        stage,
        settings.sink.batch_size,
        settings.sink.batch_wait_seconds,
    )
    return spec, database.dispose


# ------------------------------------------------------------------------------------ demo
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
TERMINAL_STATES = frozenset({"stored", "rejected", "failed"})


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
        """Rejected before inference, or every routed model has a result or a refusal."""
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


def sample_files() -> list[Path]:
    """The bundled sample images, good and bad (see samples/README.md)."""
    return sorted(p for p in SAMPLES_DIR.rglob("*") if p.suffix in {".dcm", ".png", ".jpg", ".bin"})


async def run_pipeline_on_files(
    settings: Settings,
    files: Sequence[Path],
    *,
    timeout_seconds: float = 180.0,
    requested_by: str = "demo-clinician",
    registry: CollectorRegistry | None = None,
) -> list[FileOutcome]:
    """Start all stages in-process, publish ``files`` as a router would, wait for the outcomes.

    Used by ``radstream demo`` and the end-to-end tests: the same worker code users run.
    """
    from schemas.errors import RadstreamError  # noqa: PLC0415
    from sinks.database import Database  # noqa: PLC0415
    from sinks.repositories import LifecycleRepository, ResultsRepository  # noqa: PLC0415
    from streams.inference.routing import RoutingRules, route  # noqa: PLC0415
    from streams.kafka_io import KafkaPublisher  # noqa: PLC0415
    from streams.router import arrival_for_file  # noqa: PLC0415

    rules = RoutingRules.load(settings.inference.routing_rules_file)

    def routed(event: ImageArrived) -> int:
        # How many models will answer (rules with a body part are matched without one here;
        # the deadline bounds the wait if that makes the count wrong).
        try:
            return len(route(event.model_ids, event.modality, None, rules))
        except RadstreamError:
            return 1

    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        run_worker(settings, ALL_STAGES, stop, started=started, registry=registry, serve_http=False)
    )
    database = Database(settings.database_url.get_secret_value(), pool_size=2)
    try:
        await asyncio.wait_for(started.wait(), 120)
        events = []
        async with KafkaPublisher(
            settings.kafka_bootstrap, TopicNames(settings.topic_prefix)
        ) as pub:
            for path in files:
                event = arrival_for_file(
                    path,
                    source="radstream-demo",
                    requested_by=requested_by,
                    modality=demo_modality_hint(path),
                )
                headers = ((CORRELATION_ID_HEADER, event.event_id.hex.encode()),)
                await pub.publish(TopicKey.IMAGES_ARRIVED, event.message_key(), event, headers)
                events.append((path, event))
        lifecycle = LifecycleRepository(database.sessions)
        results = ResultsRepository(database.sessions)
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        outcomes: list[FileOutcome] = []
        while True:
            outcomes = []
            for path, event in events:
                steps = await lifecycle.lifecycle(event.event_id)
                stored = await results.list_for_event(event.event_id)
                codes = [s.error_code for s in steps if s.error_code]
                outcomes.append(
                    FileOutcome(
                        path=path,
                        event_id=str(event.event_id),
                        states=tuple(str(s.state) for s in steps),
                        error_code=codes[0] if codes else None,
                        decisions=tuple(
                            f"{r.model_name}@{r.model_version}: {r.decision} "
                            f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(r.scores.items()))})"
                            for r in stored
                        ),
                        refusals=tuple(
                            f"{s.model_name}@{s.model_version}: {s.error_code}"
                            if s.model_name
                            else str(s.error_code)
                            for s in steps
                            if s.error_code and s.stage == "inference"
                        ),
                        expected=routed(event),
                    )
                )
            if all(o.finished for o in outcomes) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        await _wait_for_audit(settings, [str(e.event_id) for _, e in events], deadline)
        return outcomes
    finally:
        stop.set()
        await worker
        await database.dispose()


async def _wait_for_audit(settings: Settings, event_ids: Sequence[str], deadline: float) -> None:
    """Wait (bounded) until the audit topic holds a record about each of ``event_ids``."""
    from schemas.audit import AuditRecord  # noqa: PLC0415
    from streams.audit_topic import read_audit_topic  # noqa: PLC0415

    wanted = set(event_ids)
    topic = TopicNames(settings.topic_prefix).audit
    while asyncio.get_running_loop().time() < deadline:
        content = await read_audit_topic(settings.kafka_bootstrap, topic)
        seen = {
            str(record.object.event_id)
            for part in content.values()
            for record in part.records
            if isinstance(record, AuditRecord)
        }
        if wanted <= seen:
            return
        await asyncio.sleep(0.5)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the whole pipeline on the bundled samples and print what happened to each."""
    from observability.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.logging.model_copy(update={"level": "WARNING"}))
    limit_blas_threads()
    cmd_db(settings, argparse.Namespace(action="upgrade", revision=None))
    # The demo runs the deployment as configured (its topics, groups, audit chain and
    # checkpoints), so a second run continues the same audit chain; it reports on the images it
    # published itself, by event id.
    prefix = settings.topic_prefix

    files = sample_files()
    print(f"publishing {len(files)} sample images to {prefix}images.arrived ...")
    outcomes = asyncio.run(run_pipeline_on_files(settings, files))
    width = max(len(str(o.path.relative_to(SAMPLES_DIR))) for o in outcomes)
    for outcome in outcomes:
        name = str(outcome.path.relative_to(SAMPLES_DIR))
        if not outcome.finished:
            what = "UNFINISHED " + ",".join(outcome.states)
        elif outcome.decisions:
            what = "stored   " + "; ".join((*outcome.decisions, *outcome.refusals))
        else:
            what = "rejected " + ("; ".join(outcome.refusals) or str(outcome.error_code))
        print(f"  {name:<{width}}  {what}")
    stored = sum(bool(o.decisions) for o in outcomes)
    rejected = sum(o.finished and not o.decisions for o in outcomes)
    unfinished = sum(not o.finished for o in outcomes)
    print(
        f"{len(outcomes)} images: {stored} stored with results, {rejected} rejected with a "
        f"code, {unfinished} unfinished"
    )
    print("audit trail:")
    audit_ok = (
        cmd_audit(settings, argparse.Namespace(action="verify", source="both", every=None)) == 0
    )
    return 1 if unfinished or not audit_ok else 0


# ------------------------------------------------------------------------------------ commands
def cmd_config(settings: Settings, _args: argparse.Namespace) -> int:
    """Print the effective settings with secrets masked."""
    print(json.dumps(settings.masked(), indent=2, sort_keys=True))
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Create or check every topic idempotently."""
    from streams.topic_admin import ensure_topics  # noqa: PLC0415 - aiokafka only when needed

    reports = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap, settings.topic_prefix, partitions_override=args.partitions
        )
    )
    for report in reports:
        print(report.line())
    return 1 if any(r.problems for r in reports) else 0


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    """Publish arrival events for local files, as a router would."""
    from streams.kafka_io import KafkaPublisher  # noqa: PLC0415
    from streams.router import arrival_for_file  # noqa: PLC0415

    async def publish() -> None:
        async with KafkaPublisher(
            settings.kafka_bootstrap, TopicNames(settings.topic_prefix)
        ) as pub:
            for path in args.files:
                event = arrival_for_file(
                    Path(path),
                    source=args.source,
                    model_ids=args.model or (),
                    requested_by=args.requested_by,
                    priority=Priority(args.priority),
                    modality=args.modality,
                )
                headers = ((CORRELATION_ID_HEADER, event.event_id.hex.encode()),)
                await pub.publish(TopicKey.IMAGES_ARRIVED, event.message_key(), event, headers)
                print(f"published {event.event_id} {Path(path).name}")

    asyncio.run(publish())
    return 0


def limit_blas_threads() -> None:
    """One OpenBLAS thread per worker unless the operator chose otherwise.

    The resize matmuls are too small for a second BLAS thread to pay for its hand-over, and the
    stages already decode and infer in threads of their own: with OpenBLAS's default pool the
    inference stage spent twice the CPU per image (bench/README.md). Must run before numpy
    loads, which the worker's lazy imports do later.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the selected stages until SIGINT/SIGTERM."""
    import signal  # noqa: PLC0415

    from observability.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.logging)
    limit_blas_threads()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stages, stop)

    asyncio.run(run())
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    """Apply or roll back the Alembic migrations."""
    from sinks import migrate  # noqa: PLC0415

    url = settings.database_url.get_secret_value()
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head")
    else:
        migrate.downgrade(url, args.revision or "base")
    print(f"database at revision {asyncio.run(migrate.current_revision_async(url))}")
    return 0


def cmd_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    """Prepare a deployment: migrate the database and ensure the topics."""
    cmd_db(settings, argparse.Namespace(action="upgrade", revision=None))
    return cmd_topics(settings, argparse.Namespace(partitions=None))


def cmd_models(settings: Settings, _args: argparse.Namespace) -> int:
    """List the model registry: name, version, runtime, digest and serving status."""
    rows = load_model_registry(settings).list()
    print(f"{'NAME':<20} {'VERSION':<9} {'RUNTIME':<12} {'DEFAULT':<7} {'STATUS':<9} DIGEST")
    for row in rows:
        digest = (row.weights_sha256 or "-")[:16]
        status = row.status.value + (f" ({row.error_code})" if row.error_code else "")
        print(
            f"{row.name:<20} {row.version:<9} {row.runtime or '-':<12} "
            f"{'yes' if row.default else '':<7} {status:<9} {digest}"
        )
    return 0 if rows else 1


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    """Verify the audit trail (topic and table) or print one image's trail."""
    import uuid  # noqa: PLC0415

    from sinks.audit_sink import trail_for_event_in_table  # noqa: PLC0415
    from streams.audit_topic import trail_for_event  # noqa: PLC0415

    topic = TopicNames(settings.topic_prefix).audit
    audit = settings.audit
    url = settings.database_url.get_secret_value()
    if args.action == "show":
        event_id = uuid.UUID(args.event_id)
        trail = (
            asyncio.run(trail_for_event(settings.kafka_bootstrap, topic, event_id))
            if args.source != "table"
            else asyncio.run(trail_for_event_in_table(url, event_id))
        )
        for record in trail:
            print(record.model_dump_json())
        return 0 if trail else 1
    if not audit.signing_key_file.exists():
        print(f"radstream: no audit key at {audit.signing_key_file}", file=sys.stderr)
        return 2
    if args.every is None:
        reports = asyncio.run(verify_audit_trail(settings, args.source))
        for where, report in reports:
            print(f"{where}: {report.summary()}")
        return 0 if all(report.ok for _, report in reports) else 1
    return asyncio.run(_serve_audit_verification(settings, args.source, args.every))


async def verify_audit_trail(settings: Settings, source: str) -> list[tuple[str, Any]]:
    """Verify the chains on the audit topic and/or in the audit table; one report each."""
    from sinks.audit_sink import verify_table  # noqa: PLC0415
    from streams.audit_topic import verify_topic  # noqa: PLC0415

    topic = TopicNames(settings.topic_prefix).audit
    audit = settings.audit
    reports: list[tuple[str, Any]] = []
    if source in ("topic", "both"):
        report = await verify_topic(
            settings.kafka_bootstrap, topic, audit.checkpoint_file, audit.signing_key_file
        )
        reports.append((f"topic {topic}", report))
    if source in ("table", "both"):
        url = settings.database_url.get_secret_value()
        report = await verify_table(url, audit.checkpoint_file, audit.signing_key_file)
        reports.append(("table audit_log", report))
    return reports


async def _serve_audit_verification(
    settings: Settings,
    source: str,
    every: float,
    *,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> int:
    """Verify every ``every`` seconds and export the outcome until SIGINT/SIGTERM.

    This is what feeds the ``radstream_audit_*`` verification metrics the alert rules watch.
    """
    import signal  # noqa: PLC0415

    from observability.metrics import Metrics, serve_metrics  # noqa: PLC0415

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    server, _thread = serve_metrics(
        registry, settings.observability.metrics_host, settings.observability.metrics_port
    )
    try:
        while not stop.is_set():
            reports = await verify_audit_trail(settings, source)
            metrics.audit_verified(ok=all(report.ok for _, report in reports))
            for where, report in reports:
                print(f"{where}: {report.summary()}", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        server.shutdown()
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    """Issue a local HS256 token for the API (development and the demo)."""
    from gateway.tokens import issue_token  # noqa: PLC0415

    print(issue_token(settings, args.subject, args.role, args.ttl))
    return 0


def build_api(settings: Settings, *, registry: CollectorRegistry | None = None) -> FastAPI:
    """The HTTP gateway wired to the real broker, database and model registry."""
    from gateway.adapters import (  # noqa: PLC0415
        RegistryModelCatalog,
        RepositoryLifecycleReader,
        RepositoryResultsReader,
    )
    from gateway.app import create_app  # noqa: PLC0415
    from gateway.audit_publisher import TopicApiAuditPublisher  # noqa: PLC0415
    from sinks.database import Database  # noqa: PLC0415
    from sinks.repositories import LifecycleRepository, ResultsRepository  # noqa: PLC0415
    from streams.kafka_io import KafkaPublisher  # noqa: PLC0415

    publisher = KafkaPublisher(
        settings.kafka_bootstrap,
        TopicNames(settings.topic_prefix),
        client_id="radstream-api",
        send_timeout_seconds=10.0,
    )
    database = Database(settings.database_url.get_secret_value(), pool_size=settings.sink.pool_size)

    class DatabaseResource:
        """Disposes the engine's pool when the API stops."""

        async def start(self) -> None:
            """Connections are opened lazily by the pool."""

        async def stop(self) -> None:
            await database.dispose()

    return create_app(
        settings,
        publisher=publisher,
        results=RepositoryResultsReader(ResultsRepository(database.sessions)),
        lifecycle=RepositoryLifecycleReader(LifecycleRepository(database.sessions)),
        models=RegistryModelCatalog(load_model_registry(settings)),
        audit=TopicApiAuditPublisher(publisher),
        metrics=registry if registry is not None else CollectorRegistry(),
        readiness={"kafka": publisher.ready, "database": database.ping},
        resources=(publisher, DatabaseResource()),
    )


def cmd_api(settings: Settings, _args: argparse.Namespace) -> int:
    """Serve the HTTP API with uvicorn until SIGINT/SIGTERM."""
    import uvicorn  # noqa: PLC0415

    from observability.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.logging)
    uvicorn.run(
        build_api(settings),
        host=settings.api.host,
        port=settings.api.port,
        # None: uvicorn's loggers go through our masked root handler, not their own.
        log_config=None,
        server_header=False,
        proxy_headers=False,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``radstream`` command line."""
    parser = argparse.ArgumentParser(prog="radstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("config", help="print the effective settings (secrets masked)").set_defaults(
        func=cmd_config
    )

    topics = sub.add_parser("topics", help="create or check the topics")
    topics.add_argument("action", choices=["ensure"])
    topics.add_argument("--partitions", type=int, default=None, help="override partition counts")
    topics.set_defaults(func=cmd_topics)

    publish = sub.add_parser("publish", help="publish arrival events for local image files")
    publish.add_argument("files", nargs="+")
    publish.add_argument("--source", default="radstream-cli")
    publish.add_argument("--model", action="append", help="model id (repeatable)")
    publish.add_argument("--requested-by", default=None)
    publish.add_argument("--modality", default=None, help="modality hint for PNG/JPEG files")
    publish.add_argument("--priority", default="routine", choices=[p.value for p in Priority])
    publish.set_defaults(func=cmd_publish)

    worker = sub.add_parser("worker", help="run pipeline stages (all by default)")
    worker.add_argument(
        "--stages",
        default=",".join(ALL_STAGES),
        help=f"comma-separated subset of {','.join(ALL_STAGES)}",
    )
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade"])
    db.add_argument("revision", nargs="?", default=None)
    db.set_defaults(func=cmd_db)

    sub.add_parser("demo", help="run the pipeline end to end on the bundled samples").set_defaults(
        func=cmd_demo
    )
    sub.add_parser("api", help="serve the HTTP API").set_defaults(func=cmd_api)
    sub.add_parser("models", help="list the model registry").set_defaults(func=cmd_models)

    audit = sub.add_parser("audit", help="verify the audit trail or show one image's trail")
    audit.add_argument("action", choices=["verify", "show"])
    audit.add_argument("--event-id", help="with show: the arrival event id")
    audit.add_argument("--source", choices=["topic", "table", "both"], default="both")
    audit.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with verify: repeat every SECONDS and export radstream_audit_* metrics",
    )
    audit.set_defaults(func=cmd_audit)

    token = sub.add_parser("token", help="issue a local API token")
    token.add_argument("--subject", required=True)
    token.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["clinician", "service", "auditor", "admin"],
    )
    token.add_argument("--ttl", type=int, default=3600)
    token.set_defaults(func=cmd_token)

    sub.add_parser("bootstrap", help="db upgrade + topics ensure").set_defaults(func=cmd_bootstrap)

    dlq_cli.register(sub)
    lag_cli.register(sub)

    schemas = sub.add_parser("schemas", help="export or check the JSON Schema/AsyncAPI files")
    schemas.add_argument("action", choices=["export", "check"])
    schemas.set_defaults(func=cmd_schemas)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radstream`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"radstream: invalid settings: {exc}", file=sys.stderr)
        return 2
    code: int = args.func(settings, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
