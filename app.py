"""radstream's composition root: settings, the Faust app, its agents, and the ``radstream`` command.

Nothing here runs at import time. ``main()`` parses the command line, builds the settings once,
and hands them to the command, which creates the engines, producers and the Faust app it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from schemas.contracts import (
    ASYNCAPI_FILE,
    JSONSCHEMA_DIR,
    ChannelContract,
    asyncapi_document,
    jsonschema_files,
    render,
)
from schemas.events import CORRELATION_ID_HEADER, InferenceCompleted, Priority, Stage, utc_now
from schemas.settings import Settings, load_settings
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames, value_models

if TYPE_CHECKING:
    from observability.metrics import Metrics
    from streams.agents import AgentSpec

ALL_STAGES = ("validation", "inference", "results", "audit")
CHANNEL_KEYS: dict[TopicKey, str] = {
    TopicKey.IMAGES_ARRIVED: "StudyInstanceUID when present, else the event id",
    TopicKey.IMAGES_VALIDATED: "the arrival's key",
    TopicKey.IMAGES_REJECTED: "the arrival's key",
    TopicKey.INFERENCE_RESULTS: "the arrival's key",
    TopicKey.AUDIT_LOG: "the audit chain partition",
    TopicKey.DEADLETTER: "the original message's key",
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
    )
    specs: list[AgentSpec] = []
    if "validation" in stages:
        specs.append(build_validation_spec(settings, topics))
    if "inference" in stages:
        specs.append(build_inference_spec(settings, topics, metrics))
    if "results" in stages:
        spec, dispose = build_results_spec(settings, topics, metrics)
        specs.append(spec)
        resources.append(dispose)
    for spec in specs:
        register_agent(app, spec, publisher.deliver, observer)
    background: list[asyncio.Task[None]] = []
    if "audit" in stages:
        background.append(asyncio.create_task(run_audit_agent(settings, stop, metrics)))
    if serve_http:
        from observability.metrics import serve_metrics  # noqa: PLC0415

        serve_metrics(
            registry, settings.observability.metrics_host, settings.observability.metrics_port
        )
    try:
        if specs:
            await app.start()
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        if specs:
            await app.stop()
        for task in background:
            await task
        for close in reversed(resources):
            await close()


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
                )
                headers = ((CORRELATION_ID_HEADER, event.event_id.hex.encode()),)
                await pub.publish(TopicKey.IMAGES_ARRIVED, event.message_key(), event, headers)
                print(f"published {event.event_id} {Path(path).name}")

    asyncio.run(publish())
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the selected stages until SIGINT/SIGTERM."""
    import signal  # noqa: PLC0415

    from observability.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.logging)
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

    sub.add_parser("bootstrap", help="db upgrade + topics ensure").set_defaults(func=cmd_bootstrap)

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
