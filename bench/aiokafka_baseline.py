"""The aiokafka baseline: the pipeline's stages with plain aiokafka consumers instead of Faust.

``python -m bench.aiokafka_baseline --stages validation`` runs ``app.run_worker`` as
``radstream worker --stages validation`` does — the same settings, stage handlers, delivery
(confirmed before offsets are committed), audit stage and worker health — with one difference:
its :class:`app.ConsumerLoop` is :func:`aiokafka_consumer_loop` instead of Faust's. That loop
collects up to ``batch_size`` messages within ``batch_wait_seconds`` of the first (0 by default:
what one ``getmany`` returns, which aiokafka prefetched meanwhile — the adaptive batching of
``streams.agents.take_ready``), runs the batch through ``streams.pipeline.process_batch`` and
commits its offsets. The difference between the two runs' throughputs is therefore what Faust's
consumption costs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import click

import app
from cli.context import Command, Invocation, pass_invocation, run_until_signalled
from cli.main import run_command
from cli.worker import serve_worker, stages_option
from streams.agents import AgentSpec
from streams.kafka import (
    ConsumerRecord,
    KafkaClientConfig,
    KafkaConsumer,
    TopicPartition,
    build_consumer,
)
from streams.pipeline import Incoming, process_batch


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


async def consume(worker: app.Worker, spec: AgentSpec, stop: asyncio.Event) -> None:
    """One stage's loop: take a batch, process and deliver it, commit its offsets."""
    settings = worker.settings
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
            batch = spec.kept([incoming_from_record(r) for r in records])
            if batch:
                await process_batch(spec.handler, batch, worker.deliver, worker.observer)
            await consumer.commit(next_offsets(records))
            worker.batch_done(spec.name)
    finally:
        await consumer.stop()


async def aiokafka_consumer_loop(worker: app.Worker, stop: asyncio.Event) -> None:
    """The baseline's :class:`app.ConsumerLoop`: one plain consumer loop per stage."""
    tasks = [asyncio.create_task(consume(worker, spec, stop)) for spec in worker.specs]
    worker.mark_started()
    await asyncio.gather(*tasks)


@click.command("aiokafka-baseline", cls=Command)
@stages_option
@pass_invocation
def command(invocation: Invocation, stages: tuple[str, ...] | None) -> None:
    """Run the stages like `radstream worker`, consuming with plain aiokafka loops."""
    settings = invocation.start(service=True)
    stages = stages or app.default_stages(settings)
    # Started (and its start-up heap frozen) once it consumes, as `radstream worker`.
    run_until_signalled(
        lambda stop: serve_worker(
            invocation, settings, stages, stop, consumer_loop=aiokafka_consumer_loop
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.aiokafka_baseline --stages <list>``: run until SIGINT/SIGTERM."""
    return run_command(command, argv)


if __name__ == "__main__":
    sys.exit(main())
