"""radstream's composition root: every resource built from the one Settings object, and wired.

The model is cosmicpython's ``bootstrap.py``: this module builds things and hands them down; it
has no command line (``cli/``), no demo (``cli/demo.py``) and no contract export
(``streams/topic_contracts.py``). Nothing runs at import time.

The worker is built by :func:`build_worker` into ONE object, :class:`Worker`: the stage handlers
(:class:`~streams.agents.AgentSpec`), the delivery, the observer and the health state. A
:class:`ConsumerLoop` drives it: :func:`faust_consumer_loop` in production, the benchmark's plain
aiokafka loop in ``bench/aiokafka_baseline.py``; :func:`run_worker` runs either. An arrival
therefore walks ``faust_consumer_loop`` -> ``streams/agents.py`` -> ``streams/pipeline.py``
(``process_batch``) -> ``streams/stages/<stage>.py`` and, for a stored row, ``sinks/``.

Resources (producers, engines, health servers) live on one :class:`~contextlib.AsyncExitStack`
per process role and are closed in reverse order however the role ends. A service checks the
services it needs while starting and fails fast with a :class:`~schemas.errors.TransientError`
when one is down; an outage after that is waited out (backpressure, ``/readyz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import faust
import structlog
from fastapi import FastAPI
from faust.exceptions import AlreadyConfiguredWarning
from prometheus_client import CollectorRegistry

from gateway.adapters import (
    RegistryModelCatalog,
    RepositoryLifecycleReader,
    RepositoryResultsReader,
)
from gateway.app import create_app
from observability.health import HealthState, WorkerHealth
from observability.lag import GroupSnapshot, LagReader
from observability.metrics import Metrics
from observability.outages import OutageLog
from observability.stage_observer import MetricsObserver
from schemas.errors import ErrorCode, TransientError
from schemas.events import InferenceCompleted, Stage, utc_now
from schemas.settings import Settings
from schemas.studies import StudyResult, StudyView
from sinks.database import Database, tls_context
from sinks.repositories import ComparisonRepository, LifecycleRepository, ResultsRepository
from sinks.results_sink import ResultsSink, WriteReport
from sinks.studies import StudyStore
from streams.agents import AgentSpec, Deferral, register_agent, watch_consumers
from streams.audit.io import TopicApiAuditPublisher, run_audit_stage
from streams.batching_sink import SinkHooks
from streams.dicom_io.receiver import run_dicom_listener
from streams.dicom_io.sender import DicomSender
from streams.dicom_io.store import InstanceStore, ensure_storage_writable
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from streams.kafka import KafkaClientConfig, KafkaPublisher, Outgoing, ensure_topics
from streams.kafka.config import DEFAULT_REQUEST_TIMEOUT_MS
from streams.lanes import MarkLane, routine_skips, stat_skips
from streams.pipeline import StageHandler, StageObserver
from streams.retry import RetryPolicy
from streams.stages.common import ImageReader
from streams.stages.dicom_export import DicomExportStage
from streams.stages.fused import ValidateThenInfer, already_inferred
from streams.stages.handoff import PixelHandoff
from streams.stages.inference import InferenceStage
from streams.stages.results import LIFECYCLE_ONLY_TOPICS, ResultsStage
from streams.stages.studies import StudiesStage
from streams.stages.validation import ValidationStage
from streams.studies.decision_support import load_decision_rules
from streams.topics import STAGE_TOPICS, TopicKey, TopicNames
from streams.validation import load_clinical_rules

T = TypeVar("T")

ALL_STAGES: Final = ("validation", "inference", "results", "audit", "studies", "dicom-export")
# Stages that write to PostgreSQL: a worker running one checks the database while starting.
DATABASE_STAGES: Final = frozenset({"results", "audit", "studies"})
# Stages that consume in a consumer group of their own, whatever they run with: the export waits
# for a PACS (retries with backoff), which must not hold back the results stage's commits. Every
# stat agent (streams/lanes.py) has a consumer of its own, whose fetches and dispatch never wait
# behind a routine backlog's records (measured: docs/studies.md, "Priorities"); the studies one
# must also see every message of the topics it shares with the routine lane.
OWN_GROUP_STAGES: Final = frozenset(
    {"dicom-export", *(f"{stage}-stat" for stage, io in STAGE_TOPICS.items() if io.stat_reads)}
)
# The listener's publications outlive aiokafka's batch expiry (its request timeout): a TIMEOUT
# from the publisher then comes after aiokafka itself gave up on a batch it could not send.
LISTENER_SEND_TIMEOUT_SECONDS: Final = DEFAULT_REQUEST_TIMEOUT_MS / 1000 + 20.0

Deliver = Callable[[Sequence[Outgoing]], Awaitable[None]]
# The stat lanes take what is there at once (streams.agents.take_ready: 0 = no lingering).
STAT_BATCH_WAIT_SECONDS: Final = 0.0

log = structlog.get_logger(__name__)


def consumer_group(settings: Settings, stages: Sequence[str]) -> str:
    """One consumer group per stage set, so each stage can be scaled as its own group."""
    return f"{settings.consumer_group_prefix}-{'+'.join(sorted(stages))}"


def default_stages(settings: Settings) -> tuple[str, ...]:
    """Every stage; ``dicom-export`` only when a destination is configured."""
    exporting = bool(settings.dicom.export_destinations)
    return tuple(stage for stage in ALL_STAGES if stage != "dicom-export" or exporting)


# ------------------------------------------------------------------------------- resources
async def open_publisher(
    stack: AsyncExitStack,
    settings: Settings,
    *,
    client_id: str,
    send_timeout_seconds: float | None = None,
) -> KafkaPublisher:
    """The started delivery-confirming producer, stopped when ``stack`` closes.

    Raises:
        TransientError: ``BROKER_UNAVAILABLE`` when the broker does not answer.
    """
    publisher = KafkaPublisher.from_settings(
        settings, client_id=client_id, send_timeout_seconds=send_timeout_seconds
    )
    return await stack.enter_async_context(publisher)


async def open_database(
    stack: AsyncExitStack,
    settings: Settings,
    *,
    pool_size: int,
    check: bool = True,
    pre_ping: bool = True,
) -> Database:
    """An engine for ``settings.database_url``, disposed when ``stack`` closes.

    Args:
        check: ping PostgreSQL now, so a service fails while starting instead of later.
        pre_ping: test pooled connections at checkout (:class:`~sinks.database.Database`);
            False for a sink that retries its writes.

    Raises:
        TransientError: ``DATABASE_UNAVAILABLE`` when ``check`` and PostgreSQL does not answer.
    """
    database = Database(
        settings.database_url.get_secret_value(),
        pool_size=pool_size,
        tls=tls_context(settings.database),
        pre_ping=pre_ping,
    )
    stack.push_async_callback(database.dispose)
    if check and not await database.ping():
        raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "PostgreSQL does not answer")
    return database


def load_model_registry(settings: Settings) -> ModelRegistry:
    """The model registry with every weights file verified against its manifest."""
    return ModelRegistry.load(
        settings.inference.model_registry_dir,
        providers=settings.inference.onnx_providers,
        intra_op_threads=settings.inference.intra_op_threads,
    )


def build_image_reader(
    settings: Settings, *, on_retry: Callable[[ErrorCode], None] | None = None
) -> ImageReader:
    """Reads images from the storage roots, retrying a file not there yet (both stages);
    ``on_retry`` counts each retry (``radstream_retries_total``)."""
    return ImageReader(
        settings.storage_roots,
        settings.validation.max_file_bytes,
        RetryPolicy.from_settings(settings.retry),
        settle_seconds=settings.validation.file_settle_seconds,
        on_retry=on_retry,
    )


# ---------------------------------------------------------------------------------- stages
def build_pixel_handoff(settings: Settings, stages: Sequence[str]) -> PixelHandoff | None:
    """One hand-off store per worker process that runs both validation and inference (decode
    once, docs/performance.md); none otherwise, or when ``inference.pixel_handoff_bytes`` is 0.
    """
    budget = settings.inference.pixel_handoff_bytes
    if budget == 0 or not {"validation", "inference"} <= set(stages):
        return None
    return PixelHandoff(budget)


def build_validation_specs(
    settings: Settings,
    topics: TopicNames,
    *,
    handoff: PixelHandoff | None = None,
    inference: InferenceStage | None = None,
    observer: StageObserver | None = None,
) -> list[AgentSpec]:
    """The validation agents: storage reads with retries, validation off the event loop.

    Two lanes over one stage: stat arrivals have a topic and an agent of their own, so a stat
    image is validated while a routine backlog waits (docs/studies.md, "Priorities"). With
    ``handoff``, accepted images' pixels are put there for this process's inference stage; with
    ``inference`` too, the agents infer each accepted image in the batch that validated it
    (:mod:`streams.stages.fused`), and ``observer`` is told what is in flight in inference.
    """
    rules = load_clinical_rules(settings.validation.clinical_rules_file)
    on_retry = None if observer is None else functools.partial(observer.retried, Stage.VALIDATION)
    validation = ValidationStage(
        build_image_reader(settings, on_retry=on_retry), settings.validation, rules, handoff=handoff
    )
    stage: StageHandler = (
        validation
        if inference is None
        else ValidateThenInfer(
            validation, inference, in_flight=None if observer is None else observer.in_flight
        )
    )
    lanes = STAGE_TOPICS["validation"]
    return [
        AgentSpec("validation", topics.of(lanes.reads), stage, 16, 0.0),
        AgentSpec(
            "validation-stat",
            topics.of(lanes.stat_reads),
            MarkLane(stage),
            16,
            STAT_BATCH_WAIT_SECONDS,
        ),
    ]


def build_inference_stage(
    settings: Settings, metrics: Metrics, *, handoff: PixelHandoff | None = None
) -> InferenceStage:
    """The inference stage: the model registry and routing rules, measured.

    With ``handoff`` (validation runs in this process too), pixels are taken from it instead of
    decoded again.
    """
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
    return InferenceStage(
        build_image_reader(settings, on_retry=functools.partial(metrics.retried, Stage.INFERENCE)),
        registry,
        RoutingRules.load(settings.inference.routing_rules_file),
        settings.validation,
        on_model_batch=metrics.inference_batch,
        on_model_outcome=metrics.model_observed,
        on_model_comparison=metrics.model_compared,
        handoff=handoff,
        on_pixel_handoff=metrics.pixel_handoff_used,
    )


def build_inference_specs(
    settings: Settings, topics: TopicNames, stage: InferenceStage
) -> list[AgentSpec]:
    """The inference agents: micro-batches of ``inference.batch_size`` within the wait time.

    Routine and stat lanes share the stage (one registry, one set of ONNX sessions); the stat
    lane takes what is there at once instead of waiting to fill a batch. Both skip the events
    of images inferred where they were validated (:func:`streams.stages.fused.already_inferred`).
    """
    lanes = STAGE_TOPICS["inference"]
    return [
        AgentSpec(
            "inference",
            topics.of(lanes.reads),
            stage,
            settings.inference.batch_size,
            settings.inference.batch_wait_seconds,
            skip=already_inferred,
        ),
        AgentSpec(
            "inference-stat",
            topics.of(lanes.stat_reads),
            MarkLane(stage),
            settings.inference.batch_size,
            STAT_BATCH_WAIT_SECONDS,
            skip=already_inferred,
        ),
    ]


def build_results_spec(
    settings: Settings, topics: TopicNames, metrics: Metrics, database: Database
) -> AgentSpec:
    """The results sink agent: PostgreSQL writes with backpressure, measured."""

    def written(report: WriteReport) -> None:
        metrics.sink_written(
            "results", report.results_inserted, report.seconds, conflicts=report.results_duplicates
        )

    hooks = SinkHooks(
        database_up=OutageLog("results-sink", "database", on_change=metrics.set_database_up),
        backpressure=lambda seconds: metrics.sink_backpressure("results", seconds),
        batch_written=written,
    )
    sink = ResultsSink(database.sessions, settings.sink, hooks)

    def stored(result: InferenceCompleted) -> None:
        metrics.end_to_end(Stage.RESULTS_SINK, (utc_now() - result.occurred_at).total_seconds())

    return AgentSpec(
        "results",
        topics.of(STAGE_TOPICS["results"].all_reads),
        ResultsStage(
            sink, topics, on_stored=stored, on_arrival_skipped=metrics.results_arrival_skipped
        ),
        settings.sink.batch_size,
        settings.sink.batch_wait_seconds,
        Deferral(
            frozenset(topics.of(LIFECYCLE_ONLY_TOPICS)), settings.sink.lifecycle_defer_seconds
        ),
    )


def build_dicom_export_spec(settings: Settings, topics: TopicNames) -> AgentSpec:
    """The dicom-export agent: one result at a time (each may wait for a PACS with backoff).

    Raises:
        ValueError: no export destination is configured.
    """
    dicom = settings.dicom
    stage = DicomExportStage(
        InstanceStore(settings.dicom_storage_dir),
        DicomSender(dicom.ae_title, dimse_timeout_seconds=dicom.dimse_timeout_seconds),
        dicom.export_destinations,
        RetryPolicy.from_settings(dicom.export_retry),
        images=build_image_reader(settings),
    )
    return AgentSpec("dicom-export", topics.of(STAGE_TOPICS["dicom-export"].reads), stage, 1, 0.05)


def build_studies_stage(
    settings: Settings, topics: TopicNames, metrics: Metrics, database: Database, deliver: Deliver
) -> StudiesStage:
    """The studies stage: completeness, study results and urgent findings (docs/studies.md)."""

    def made(result: StudyResult) -> None:
        since = (result.aggregated_at - result.study_completed_at).total_seconds()
        metrics.study_result_made(result.model.name, since)

    return StudiesStage(
        StudyStore(database.sessions),
        topics,
        settings.studies,
        load_decision_rules(settings.inference.model_registry_dir),
        deliver,
        on_urgent=lambda finding: metrics.urgent_finding_raised(finding.model_name),
        on_study_result=made,
        on_unacknowledged=metrics.set_urgent_unacknowledged,
    )


def build_studies_specs(
    topics: TopicNames, settings: Settings, stage: StudiesStage
) -> list[AgentSpec]:
    """The studies agents over arrivals, router signals, results and rejections.

    Two lanes over one stage: the stat agent (a consumer group of its own) takes stat arrivals
    and the results and rejections the stat lanes produced, without a batch wait; the routine
    agent everything else. A stat result thus never waits behind routine results that are
    still to be applied (docs/studies.md, "Priorities").
    """
    lanes = STAGE_TOPICS["studies"]
    return [
        AgentSpec(
            "studies",
            topics.of(lanes.reads),
            stage,
            settings.studies.batch_size,
            settings.studies.batch_wait_seconds,
            skip=routine_skips,
        ),
        AgentSpec(
            "studies-stat",
            topics.of((*lanes.stat_reads, *lanes.stat_shared)),
            stage,
            settings.studies.batch_size,
            STAT_BATCH_WAIT_SECONDS,
            skip=stat_skips(topics.of(lanes.stat_reads)),
        ),
    ]


# ---------------------------------------------------------------------------------- worker
@dataclass(frozen=True)
class Worker:
    """A built worker: what a :class:`ConsumerLoop` needs, and nothing it has to build.

    Attributes:
        settings: the settings it was built from (a loop reads the broker address from them).
        stages: the stage set it runs; ``group_id`` is its consumer group.
        specs: one agent per consuming stage (the audit stage consumes by itself).
        deliver: confirms a batch's outcomes on the broker before the batch may be committed.
        observer: records each message's outcome in the metrics.
        health: liveness and readiness; a loop reports progress through :meth:`batch_done`.
        metrics: the worker's metrics (served on ``/metrics``).
        started: set by :meth:`mark_started` once the loop consumes.
        background: tasks that run beside the loop until stop (the studies stage's sweeps).
    """

    settings: Settings
    stages: tuple[str, ...]
    specs: tuple[AgentSpec, ...]
    deliver: Deliver
    observer: StageObserver
    health: HealthState
    metrics: Metrics
    started: asyncio.Event
    background: tuple[Callable[[asyncio.Event], Coroutine[Any, Any, None]], ...] = ()

    @property
    def group_id(self) -> str:
        """The consumer group of this stage set."""
        return consumer_group(self.settings, self.stages)

    def group_of(self, stage: str) -> str:
        """The consumer group ``stage`` consumes in (its own for :data:`OWN_GROUP_STAGES`)."""
        if stage in OWN_GROUP_STAGES:
            return consumer_group(self.settings, [stage])
        return self.group_id

    def batch_done(self, stage: str) -> None:
        """A loop finished (delivered and will commit) one batch of ``stage``."""
        self.health.record_progress(stage)

    def mark_started(self) -> None:
        """The loop consumes: the worker is ready, and whoever waits for the start may go on."""
        self.health.mark_started()
        self.started.set()
        log.info("worker_started", stages=",".join(self.stages), group=self.group_id)


class ConsumerLoop(Protocol):
    """Consumes a worker's input topics and drives each batch through its stage.

    Implementations: :func:`faust_consumer_loop` (production) and the benchmark's plain aiokafka
    loop (``bench.aiokafka_baseline.aiokafka_consumer_loop``). A loop runs every spec of
    ``worker`` in consumer group ``worker.group_of(spec.name)``: it takes batches of
    ``spec.batch_size`` within ``spec.batch_wait_seconds``, passes each to
    :func:`streams.pipeline.process_batch` with ``worker.deliver`` and ``worker.observer``,
    acknowledges it only after that returned,
    calls ``worker.batch_done(spec.name)``, calls ``worker.mark_started()`` once it consumes,
    and returns after ``stop`` is set. It raises when it cannot go on (the worker then exits).
    """

    async def __call__(self, worker: Worker, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set."""


AppFactory = Callable[[Worker, str, Sequence[AgentSpec], Callable[[Exception], None]], faust.App]
"""Builds the Faust app of one consumer group (:func:`_faust_app`; tests pass fakes)."""


async def faust_consumer_loop(
    worker: Worker, stop: asyncio.Event, *, build_app: AppFactory | None = None
) -> None:
    """The production loop: Faust owns group membership, batching and offset commits.

    One Faust app per consumer group (:meth:`Worker.group_of`): the stage set's, and one for each
    stage that consumes in a group of its own. When an agent cannot deliver a batch for good (a
    refused delivery: it holds the batch unacknowledged), every app stops and the error is
    raised, so the worker exits non-zero and a supervisor restarts it; that holds while the apps
    stop as well (a batch drained after ``stop`` whose delivery is refused). A start waits for
    the group's first assignment, which may never come (a group coordinator that is not
    available, a broker that accepts connections and never answers): ``stop`` ends it, with one
    ``worker_start_interrupted`` line, and the loop returns.
    """
    make_app = build_app if build_app is not None else _faust_app
    # Set to the error of the first batch an agent could not deliver for good.
    fatal: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def on_fatal(error: Exception) -> None:
        if not fatal.done():
            fatal.set_exception(error)

    groups: dict[str, list[AgentSpec]] = {}
    for spec in worker.specs:
        groups.setdefault(worker.group_of(spec.name), []).append(spec)
    apps = [make_app(worker, group, specs, on_fatal) for group, specs in groups.items()]
    started: list[faust.App] = []
    stopped: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
    # Faust never raises what its consumer's group coordination holds (a group the principal
    # may not use): without this watch such a worker would wait for ever (streams/agents.py).
    watching = asyncio.ensure_future(watch_consumers(apps, on_fatal))
    try:
        for faust_app in apps:
            # A start can wait for ever (a refused group, no coordinator): the watch's verdict
            # or the stop ends it.
            starting: asyncio.Future[object] = asyncio.ensure_future(faust_app.start())
            await asyncio.wait([starting, fatal, stopped], return_when=asyncio.FIRST_COMPLETED)
            started.append(faust_app)  # stopped in the finally, even half started
            if not starting.done():
                if not fatal.done():
                    log.warning("worker_start_interrupted", step="joining", group=faust_app.conf.id)
                starting.cancel()
                # Bounded: a start that ignores its cancellation must not hold the exit.
                await asyncio.wait([starting], timeout=worker.settings.watchdog.shutdown_seconds)
                if starting.done() and not starting.cancelled():
                    starting.exception()  # retrieved: the watch's verdict is the error raised
                break
            starting.result()
            if stopped.done():
                break  # stopped between two starts: the next app need not start
        else:
            worker.mark_started()
            await asyncio.wait([stopped, fatal], return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        stopped.cancel()
        await _stop_apps(reversed(started), fatal)
    if fatal.done():
        raise _fatal_error(fatal)  # the agent's error: the worker exits non-zero


async def _stop_apps(apps: Iterable[faust.App], fatal: asyncio.Future[object]) -> None:
    """Stop ``apps`` in turn; ``fatal`` stays open, as a batch drained now may fail for good.

    Raises:
        Exception: ``fatal``'s error when the stop is cancelled after it was set.
    """
    try:
        for faust_app in apps:
            if fatal.done():
                # The held batch is never acknowledged: Faust must not wait for it while
                # stopping (stream_wait_empty would wait forever); it commits what was acked.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AlreadyConfiguredWarning)
                    faust_app.conf.stream_wait_empty = False
            await faust_app.stop()
    except asyncio.CancelledError:
        # The stop overran and was cancelled (finish_within): Faust was waiting for a batch
        # that failed while draining. That failure, not the cancellation, ends the worker.
        if fatal.done():
            raise _fatal_error(fatal) from None
        raise


def _fatal_error(fatal: asyncio.Future[object]) -> BaseException:
    """The error ``fatal`` was set to (it is only ever set to one)."""
    error = fatal.exception()
    if error is None:  # pragma: no cover - on_fatal sets an exception, never a result
        return RuntimeError("a batch could not be delivered")
    return error


def _faust_app(
    worker: Worker,
    group: str,
    specs: Sequence[AgentSpec],
    on_fatal: Callable[[Exception], None],
) -> faust.App:
    """A Faust app consuming ``specs`` as consumer group ``group``."""
    settings = worker.settings
    # Faust keeps its bookkeeping in a data directory; under .state/ it leaves no litter.
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    kafka = KafkaClientConfig.from_settings(settings)
    faust_app = faust.App(
        group,
        broker=kafka.faust_broker_url,
        broker_credentials=kafka.faust_credentials(),
        datadir=str(settings.worker_data_dir / group),
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
    for spec in specs:
        register_agent(
            faust_app,
            spec,
            worker.deliver,
            worker.observer,
            on_batch_done=lambda stage, _outgoing: worker.batch_done(stage),
            on_fatal=on_fatal,
        )
    return faust_app


async def build_worker(
    stack: AsyncExitStack,
    settings: Settings,
    stages: Sequence[str],
    *,
    registry: CollectorRegistry | None = None,
    serve_http: bool = True,
    started: asyncio.Event | None = None,
) -> Worker:
    """Build the worker for ``stages``; every resource it opens closes with ``stack``.

    Ensures the topics (unless ``kafka.manage_topics`` is off), starts the producer, checks
    PostgreSQL for the stages that write to it, and starts the health probes (and, with
    ``serve_http``, ``/livez``, ``/readyz`` and ``/metrics`` on ``observability.metrics_port``).

    Raises:
        ValueError: a stage is not one of :data:`ALL_STAGES`.
        TransientError: the broker or the database does not answer.
    """
    unknown = sorted(set(stages) - set(ALL_STAGES))
    if unknown:
        raise ValueError(f"unknown stages: {unknown}")
    topics = TopicNames(settings.topic_prefix)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    if settings.kafka.manage_topics:
        await ensure_topics(
            KafkaClientConfig.from_settings(settings, client_id="radstream-worker"),
            settings.topic_prefix,
        )
    publisher = await open_publisher(stack, settings, client_id="radstream-worker")
    probe = None
    if DATABASE_STAGES & set(stages):
        # A pool of one of its own: a ping must not queue behind a sink's batch writes.
        probe = (await open_database(stack, settings, pool_size=1)).ping
    specs: list[AgentSpec] = []
    observer = MetricsObserver(metrics)
    handoff = build_pixel_handoff(settings, stages)
    inference = (
        build_inference_stage(settings, metrics, handoff=handoff) if "inference" in stages else None
    )
    if "validation" in stages:
        fused = inference if settings.inference.fuse_with_validation else None
        specs += build_validation_specs(
            settings, topics, handoff=handoff, inference=fused, observer=observer
        )
    if inference is not None:
        specs += build_inference_specs(settings, topics, inference)
    if "results" in stages:
        # The sink retries a failed write, so it skips the pre-ping's three round trips per
        # batch (sinks.database.Database, pre_ping).
        database = await open_database(
            stack, settings, pool_size=settings.sink.pool_size, check=False, pre_ping=False
        )
        specs.append(build_results_spec(settings, topics, metrics, database))
    if "dicom-export" in stages:
        specs.append(build_dicom_export_spec(settings, topics))
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
    if "studies" in stages:
        # One connection per lane and one for the sweeps: stat never waits for a routine batch.
        studies_db = await open_database(stack, settings, pool_size=3, check=False)
        studies = build_studies_stage(settings, topics, metrics, studies_db, publisher.deliver)
        specs += build_studies_specs(topics, settings, studies)
        interval = settings.studies.sweep_interval_seconds
        background.append(lambda stop: studies.run_sweeps(stop, interval))
    worker = Worker(
        settings=settings,
        stages=tuple(stages),
        specs=tuple(specs),
        deliver=publisher.deliver,
        observer=observer,
        # Reachability gauges start from the probes' truth, not from a default 0. Progress is
        # tracked per agent (the stat lanes are agents of their own) and for audit.
        health=HealthState(
            [spec.name for spec in specs] + (["audit"] if "audit" in stages else []),
            requires_database=bool({"results", "studies"} & set(stages)),
            on_broker_up=metrics.set_broker_up,
            on_database_up=metrics.set_database_up,
            stall_timeout=settings.watchdog.stall_seconds,
        ),
        metrics=metrics,
        started=started if started is not None else asyncio.Event(),
        background=tuple(background),
    )
    worker_health = build_worker_health(
        worker, database_probe=probe, registry=registry, serve_http=serve_http
    )
    await worker_health.start()
    stack.push_async_callback(worker_health.close)
    return worker


def build_worker_health(
    worker: Worker,
    *,
    database_probe: Callable[[], Awaitable[bool]] | None,
    registry: CollectorRegistry,
    serve_http: bool,
) -> WorkerHealth:
    """The worker's lag, broker and database probes; /livez, /readyz and /metrics on one port."""
    settings = worker.settings
    inputs: dict[str, tuple[str, Sequence[str] | None]] = {
        spec.name: (worker.group_of(spec.name), spec.topics) for spec in worker.specs
    }
    if "audit" in worker.stages:
        inputs["audit"] = (f"{settings.consumer_group_prefix}-audit", None)
    # Readiness needs lag and commits, not message ages.
    reader = LagReader.from_settings(settings, read_timestamps=False)
    address = None
    if serve_http:
        address = (settings.observability.metrics_host, settings.observability.metrics_port)
    return WorkerHealth(
        worker.health,
        reader,
        inputs,
        database_probe=database_probe if worker.health.requires_database else None,
        registry=registry,
        address=address,
    )


async def run_worker(
    settings: Settings,
    stages: Sequence[str],
    stop: asyncio.Event,
    *,
    consumer_loop: ConsumerLoop = faust_consumer_loop,
    started: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    serve_http: bool = True,
) -> None:
    """Run the selected stages until ``stop`` is set, then shut down cleanly.

    Consumption goes through ``consumer_loop`` (Faust unless told otherwise), production
    through one delivery-confirming producer, PostgreSQL through the sinks. The audit stage
    runs beside the loop; if either fails, the worker raises so that its supervisor restarts
    it (the audit agent resumes from its committed offsets).

    Args:
        started: set once every stage consumes (tests and the demo wait for it).

    Raises:
        ValueError: a stage is not one of :data:`ALL_STAGES`.
        TransientError: the broker or the database did not answer while starting.
        RuntimeError: a stage failed while running or while stopping (its error is the cause).
    """
    async with AsyncExitStack() as stack:
        worker = await unless_stopped(
            build_worker(
                stack, settings, stages, registry=registry, serve_http=serve_http, started=started
            ),
            stop,
            settings.watchdog.shutdown_seconds,
        )
        if worker is None:
            return  # stopped while starting: what was opened closes with the stack
        tasks: list[asyncio.Task[None]] = []
        if worker.specs:
            tasks.append(asyncio.create_task(consumer_loop(worker, stop)))
        if "audit" in stages:
            tasks.append(asyncio.create_task(run_audit_stage(settings, stop, worker.metrics)))
        tasks += [asyncio.create_task(task(stop)) for task in worker.background]
        if not worker.specs:
            worker.mark_started()
        tasks.append(asyncio.create_task(watch_for_stall(worker.health, stop)))
        try:
            await wait_for_stop_or_failure(stop, tasks)
        finally:
            # A failed stage must not leave the others waiting for a stop that never comes.
            stop.set()
            # A failure before the stop was raised above; here every stage has to finish.
            await finish_within(tasks, settings.watchdog.shutdown_seconds)
        raise_failure_while_stopping(tasks)


async def unless_stopped(
    starting: Coroutine[Any, Any, T], stop: asyncio.Event, seconds: float
) -> T | None:
    """Run ``starting`` to its end, or until ``stop`` is set; ``None`` when it was stopped.

    Building a worker waits for the broker and the database (each call bounded): a SIGTERM
    meanwhile cancels it at once, with one ``worker_start_interrupted`` line, instead of
    waiting for the bound and then reporting the outage. A start that ignores its
    cancellation is left after ``seconds`` (the process-level backstop bounds the rest).
    """
    start = asyncio.ensure_future(starting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([start, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if start.done():
        return start.result()
    log.warning("worker_start_interrupted", step="connecting")
    start.cancel()
    await asyncio.wait([start], timeout=seconds)
    if start.done() and not start.cancelled():
        start.exception()  # retrieved: asked to stop, the worker does not report its outage
    return None


class WorkerStalledError(RuntimeError):
    """A stage had work, its dependencies were up, and it made no progress for too long."""


async def watch_for_stall(
    health: HealthState, stop: asyncio.Event, *, interval_seconds: float = 1.0
) -> None:
    """Raise :class:`WorkerStalledError` once a stage stalled (``HealthState.stalled``).

    The worker then exits non-zero with one log line, so that systemd or Kubernetes restart
    it: a stuck producer or a consumer that stopped fetching is cured by a restart, not by
    waiting. Returns when ``stop`` is set.
    """
    while not stop.is_set():
        reason = health.stalled()
        if reason is not None:
            log.error("worker_stalled", reason=reason)
            raise WorkerStalledError(reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)


async def finish_within(tasks: Sequence[asyncio.Task[None]], seconds: float) -> None:
    """Let ``tasks`` finish for ``seconds``, then cancel what is left (bounded shutdown).

    The seam every stage honours: after ``stop`` is set a stage has ``seconds`` to return (the
    audit stage finishes or aborts its transaction in that time); a stage still running is
    cancelled, logged once, and given a last ``seconds`` to unwind. What survives that is
    left to the process-level backstop (``cli.context.run_until_signalled``), which exits.
    """
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=seconds)
    if not pending:
        return
    log.error("worker_shutdown_overran", seconds=seconds, stages_cancelled=len(pending))
    for task in pending:
        task.cancel()
    await asyncio.wait(pending, timeout=seconds)


def raise_failure_while_stopping(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Raise when a stage failed after the stop was set, so the exit status says so.

    A batch whose delivery was refused while draining, an audit transaction that could not
    commit: the stop was asked for, but it did not go cleanly, and a supervisor or an operator
    must not read status 0. A stage that returned, or that :func:`finish_within` cancelled
    because it overran (its own line said so), did not fail.
    """
    failures = [
        error
        for task in tasks
        if task.done() and not task.cancelled() and (error := task.exception()) is not None
    ]
    if failures:
        raise RuntimeError("a worker stage failed while stopping") from failures[0]


async def wait_for_stop_or_failure(
    stop: asyncio.Event, tasks: Sequence[asyncio.Task[None]]
) -> None:
    """Return when ``stop`` is set; raise when a stage's task ended before that.

    A worker whose audit stage died must not go on validating and inferring unaudited, and a
    consumer loop that returned on its own consumes nothing any more: the worker exits
    non-zero so that the process supervisor restarts it.
    """
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    for task in done:
        if task is stopper:
            continue
        if task.exception() is not None:
            raise RuntimeError("a worker stage failed") from task.exception()
        if not stop.is_set():
            raise RuntimeError("a worker stage ended before the worker was stopped")


# ------------------------------------------------------------------------- DICOM listener
class BrokerReachability:
    """The health probes' snapshot source for a process that only publishes (the listener).

    It consumes in no group, so there is no lag to read; each probe round still asks the broker
    for its groups (bounded by the admin timeout), so ``/readyz`` says whether it answers.
    """

    def __init__(self, reader: LagReader) -> None:
        self._reader = reader

    async def start(self) -> None:
        """Connect (fails with ``BROKER_UNAVAILABLE`` when the broker does not answer)."""
        await self._reader.start()

    async def stop(self) -> None:
        """Disconnect."""
        await self._reader.stop()

    async def snapshots(self, groups: Sequence[str] | None) -> list[GroupSnapshot]:
        """No snapshots; raises when the broker does not answer."""
        await self._reader.list_groups()
        return []


async def run_listener(
    settings: Settings,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    serve_http: bool = True,
    on_listening: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """``radstream dicom listen``: the C-STORE receiver with its publisher, probes and metrics.

    Ensures the arrivals topic, starts the delivery-confirming publisher (its own bound longer
    than aiokafka's batch expiry, :data:`LISTENER_SEND_TIMEOUT_SECONDS`), serves ``/livez``,
    ``/readyz`` and ``/metrics`` on ``observability.metrics_port`` (with ``serve_http``), and
    receives until ``stop`` is set; then it stops accepting and waits for publications in flight.

    Args:
        on_listening: called with the bound DICOM address once the port is open.

    Raises:
        RadstreamError: ``SETTINGS_INVALID`` when the storage folder cannot be written, checked
            first (a setting to fix, whether or not the broker answers), or when a port cannot
            be listened on.
        TransientError: the broker does not answer while starting.
    """
    await asyncio.to_thread(ensure_storage_writable, settings)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    async with AsyncExitStack() as stack:
        await ensure_topics(
            KafkaClientConfig.from_settings(settings, client_id="radstream-dicom"),
            settings.topic_prefix,
            keys=(TopicKey.IMAGES_ARRIVED,),
        )
        publisher = await open_publisher(
            stack,
            settings,
            client_id="radstream-dicom",
            send_timeout_seconds=LISTENER_SEND_TIMEOUT_SECONDS,
        )
        # Its broker probe feeds radstream_broker_up, as a worker's does: a listener whose broker
        # is gone refuses every C-STORE, and RadstreamBrokerUnavailable must see it.
        state = HealthState((), requires_database=False, on_broker_up=metrics.set_broker_up)
        address = None
        if serve_http:
            address = (settings.observability.metrics_host, settings.observability.metrics_port)
        health = WorkerHealth(
            state,
            BrokerReachability(LagReader.from_settings(settings, read_timestamps=False)),
            {},
            registry=registry,
            address=address,
        )
        await health.start()
        stack.push_async_callback(health.close)

        def listening(bound: tuple[str, int]) -> None:
            state.mark_started()
            if on_listening is not None:
                on_listening(bound)

        await run_dicom_listener(
            settings, publisher, stop, on_listening=listening, observer=metrics
        )


async def study_view(settings: Settings, study_instance_uid: str) -> StudyView | None:
    """One study's status as ``GET /studies/{uid}`` answers it (``radstream studies show``).

    Raises:
        TransientError: ``DATABASE_UNAVAILABLE`` when PostgreSQL does not answer.
    """
    async with AsyncExitStack() as stack:
        database = await open_database(stack, settings, pool_size=1)
        return await StudyStore(database.sessions).view(study_instance_uid)


# ------------------------------------------------------------------------------------- API
async def build_api(
    stack: AsyncExitStack, settings: Settings, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """The HTTP gateway wired to the real broker, database and model registry.

    The producer is started and PostgreSQL checked now: the API does not start without
    them. After that, ``/readyz`` reports whether both still answer.

    Raises:
        RadstreamError: ``SETTINGS_INVALID`` when the DICOM storage folder (STOW-RS stores
            there, as the DICOM listener does) cannot be written, checked first.
        TransientError: the broker or the database does not answer.
    """
    await asyncio.to_thread(ensure_storage_writable, settings)
    publisher = await open_publisher(
        stack, settings, client_id="radstream-api", send_timeout_seconds=10.0
    )
    database = await open_database(stack, settings, pool_size=settings.sink.pool_size)
    return create_app(
        settings,
        publisher=publisher,
        results=RepositoryResultsReader(ResultsRepository(database.sessions)),
        lifecycle=RepositoryLifecycleReader(LifecycleRepository(database.sessions)),
        models=RegistryModelCatalog(
            load_model_registry(settings),
            settings.inference.model_registry_dir,
            ComparisonRepository(database.sessions),
        ),
        audit=TopicApiAuditPublisher(publisher),
        studies=StudyStore(database.sessions),
        metrics=registry if registry is not None else CollectorRegistry(),
        readiness={"kafka": publisher.ready, "database": database.ping},
    )
