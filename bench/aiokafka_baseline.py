"""The aiokafka baseline: the pipeline's stages with plain aiokafka consumers instead of Faust.

``python -m bench.aiokafka_baseline --stages validation`` runs like ``radstream worker
--stages validation``, with the same settings, the same stage handlers (built by
``app.build_agent_specs``: same reader, retries, model registry, results sink, metrics) and the
same delivery (``KafkaPublisher``, delivery confirmed before the offsets are committed). Only
consumption differs: a minimal ``getmany`` loop that collects up to ``batch_size`` messages
within ``batch_wait_seconds`` of the first (Faust's ``take_events``), runs the batch through
``streams.pipeline.process_batch`` and commits its offsets. The audit stage is already a plain
aiokafka agent, so it is the same code in both runs, and the worker health (lag probes and the
/livez, /readyz, /metrics server of ``app.build_worker_health``) runs in both. The difference
between the two runs' throughputs is therefore what Faust's consumption costs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry

import app
from observability.logging import configure_logging
from observability.metrics import Metrics
from observability.stage_observer import MetricsObserver
from schemas.settings import Settings, load_settings
from streams.agents import AgentSpec
from streams.audit.io import run_audit_stage
from streams.kafka import (
    ConsumerRecord,
    KafkaClientConfig,
    KafkaConsumer,
    KafkaPublisher,
    Outgoing,
    TopicPartition,
    build_consumer,
    ensure_topics,
)
from streams.pipeline import Incoming, StageObserver, process_batch
from streams.topics import TopicNames

Deliver = Callable[[Sequence[Outgoing]], Awaitable[None]]


def incoming_from_record(record: ConsumerRecord) -> Incoming:
    """An aiokafka record as the library-independent :class:`Incoming` the stages take."""
    return Incoming(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if record.value is not None else b"",
        headers=tuple((str(k), bytes(v or b"")) for k, v in record.headers or ()),
        timestamp=record.timestamp / 1000 if record.timestamp is not None else None,
    )


def next_offsets(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
    """The offsets to commit after ``records``: one past the highest per partition."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


async def take_batch(
    consumer: KafkaConsumer, size: int, within: float, *, idle_ms: int = 500
) -> list[ConsumerRecord]:
    """Up to ``size`` records: wait (``idle_ms``) for the first, then fill for ``within`` s."""
    first = await consumer.getmany(timeout_ms=idle_ms, max_records=size)
    records = [r for batch in first.values() for r in batch]
    if not records:
        return records
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(records) < size:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        more = await consumer.getmany(
            timeout_ms=int(remaining * 1000), max_records=size - len(records)
        )
        records.extend(r for batch in more.values() for r in batch)
    return records


async def consume(
    settings: Settings,
    spec: AgentSpec,
    deliver: Deliver,
    observer: StageObserver,
    stop: asyncio.Event,
    *,
    on_batch_done: Callable[[str], None] | None = None,
) -> None:
    """One stage's loop: take a batch, process and deliver it, commit its offsets."""
    consumer = build_consumer(
        KafkaClientConfig.from_settings(settings, client_id="radstream-baseline"),
        *spec.topics,
        group_id=app.consumer_group(settings, [spec.name]),
        max_poll_records=500,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            records = await take_batch(consumer, spec.batch_size, spec.batch_wait_seconds)
            if not records:
                continue
            batch = [incoming_from_record(r) for r in records]
            await process_batch(spec.handler, batch, deliver, observer)
            await consumer.commit(next_offsets(records))
            if on_batch_done is not None:
                on_batch_done(spec.name)
    finally:
        await consumer.stop()


async def run_baseline_worker(
    settings: Settings, stages: Sequence[str], stop: asyncio.Event, *, serve_http: bool = True
) -> None:
    """Run the selected stages with plain aiokafka consumers until ``stop`` is set.

    Everything but consumption is the pipeline worker's: the stage handlers, the delivery, the
    audit agent, and the worker health (lag probes, /livez, /readyz, /metrics), so that the
    difference between the two runs is Faust.
    """
    from observability.health import HealthState  # noqa: PLC0415

    topics = TopicNames(settings.topic_prefix)
    kafka = KafkaClientConfig.from_settings(settings, client_id="radstream-baseline")
    await ensure_topics(kafka, settings.topic_prefix)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    observer = MetricsObserver(metrics)
    publisher = KafkaPublisher(kafka, topics)
    await publisher.start()
    resources: list[Callable[[], Awaitable[None]]] = [publisher.stop]
    try:
        specs = app.build_agent_specs(settings, stages, topics, metrics, resources)
        health = HealthState(stages, requires_database="results" in stages)
        worker_health = app.build_worker_health(
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
        health.mark_started()
        tasks = [
            consume(
                settings,
                spec,
                publisher.deliver,
                observer,
                stop,
                on_batch_done=health.record_progress,
            )
            for spec in specs
        ]
        if "audit" in stages:
            tasks.append(run_audit_stage(settings, stop, metrics))
        await asyncio.gather(*tasks)
    finally:
        for close in reversed(resources):
            await close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.aiokafka_baseline --stages <list>``: run until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(app.ALL_STAGES))
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(app.ALL_STAGES)
    if unknown:
        parser.error(f"unknown stages: {sorted(unknown)}")
    settings = load_settings()
    configure_logging(settings.logging)
    app.limit_blas_threads()  # the same as `radstream worker`, so the comparison stays fair

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_baseline_worker(settings, stages, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
