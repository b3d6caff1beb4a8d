"""The audit agent over time: stopping, fencing, failed transactions, idle checkpoints."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from schemas.audit import AuditRecord
from schemas.errors import ErrorCode, TransientError
from streams.audit.checkpoints import CheckpointPolicy
from streams.audit.files import read_checkpoints
from streams.audit.io import AuditAgent, read_audit_topic
from streams.kafka import KafkaClientConfig, KafkaProducer, RawMessage, build_producer
from streams.kafka.loop import RESTART_POLICY, run_until_idle, run_until_stopped
from streams.retry import RetryPolicy
from streams.topics import TopicNames
from tests.integration.audit_support import (
    assert_whole_chain,
    create_topics,
    make_agent,
    pipeline_events,
    publish,
    trusted_in,
)

pytestmark = pytest.mark.requirement("RS-AUD-02", "RS-AUD-03")

# Loops below poll the real broker; each is bounded (asyncio.timeout) so a broken agent fails
# the test within seconds instead of hanging CI.


async def _records(bootstrap: str, prefix: str, directory: Path) -> list[AuditRecord]:
    topic = TopicNames(prefix).audit
    content = await read_audit_topic(KafkaClientConfig(bootstrap), topic, trusted_in(directory))
    return [r for r in content[0].records if isinstance(r, AuditRecord)]


async def _until_work_done(agent: AuditAgent) -> None:
    """Process batches until one audited something (bounded: 20 s)."""
    async with asyncio.timeout(20):
        while not await agent.process_batch(timeout_ms=200):
            pass


@contextmanager
def _unretrieved_future_errors() -> Iterator[list[str]]:
    """The errors that futures dropped in the block reported as never retrieved.

    A future reports that only when it is collected, so the block ends with a collection.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    reported: list[str] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "Future exception was never retrieved":
            reported.append(repr(context.get("exception")))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield reported
        gc.collect()
    finally:
        loop.set_exception_handler(previous)


async def _run_until_written(
    agent: AuditAgent | _DyingAgent, records: int, *, restart: RetryPolicy = RESTART_POLICY
) -> None:
    """Run the agent until stopped, stopping it once it wrote ``records`` (bounded: 20 s).

    An agent that ends before that fails the call at once, with the agent's own exception.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(agent, stop, restart=restart))
    try:
        async with asyncio.timeout(20):
            # Polls the agent's own counter; waiting on the task wakes up as soon as it ends.
            while agent.records_written < records and not task.done():
                await asyncio.wait({task}, timeout=0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)  # raises what the agent ended with
    assert agent.records_written >= records, "the agent ended before writing the records"


class _DyingAgent:
    """A batch loop whose first batch fails with an unexpected error."""

    name = "dying"
    records_written = 0

    async def start(self) -> None:
        """Nothing to connect to."""

    async def stop(self, *, clean: bool = True) -> None:
        """Nothing to disconnect."""

    async def process_batch(self, timeout_ms: int = 500) -> int:
        """Die."""
        raise RuntimeError("the agent died")


async def test_run_until_written_fails_at_once_when_the_agent_dies() -> None:
    """The helper raises the agent's own error at once instead of waiting out its 20 s."""
    # 5 s: far less than the helper's own bound, far more than an agent takes to fail.
    async with asyncio.timeout(5):
        with pytest.raises(RuntimeError, match="the agent died"):
            await _run_until_written(_DyingAgent(), 1)


async def test_run_until_stopped_checkpoints_the_tail(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """Run until stopped, the agent leaves a checkpoint covering the last record."""
    await create_topics(kafka_bootstrap, topic_prefix)
    await publish(kafka_bootstrap, topic_prefix, pipeline_events(2))
    await _run_until_written(make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=100), 8)
    assert [cp.sequence for cp in read_checkpoints(tmp_path / "checkpoints.jsonl")] == [7]


async def test_second_agent_stands_by_until_the_first_stops(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """A second agent of the chain writes nothing while the first holds the lease, then
    continues the same chain once the first has stopped (and left the lease group)."""
    await create_topics(kafka_bootstrap, topic_prefix)
    first = make_agent(kafka_bootstrap, topic_prefix, tmp_path)
    await first.start()
    second = make_agent(kafka_bootstrap, topic_prefix, tmp_path)
    await second.start()
    try:
        assert first.writing
        assert second.standing_by
        assert not second.writing
        await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
        await _until_work_done(first)
        assert await second.process_batch(timeout_ms=200) == 0
        assert not second.writing
        await first.stop()
        await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
        await _until_work_done(second)
        assert second.writing
    finally:
        await first.stop(clean=False)
        await second.stop(clean=False)
    await assert_whole_chain(kafka, TopicNames(topic_prefix).audit, tmp_path, 8)


async def test_a_writer_that_lost_its_lease_unnoticed_is_fenced(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """The transactional id stays the safety net: a new producer of the chain fences the old
    writer, whose next transaction is refused for good instead of forking the chain."""
    await create_topics(kafka_bootstrap, topic_prefix)
    first = make_agent(kafka_bootstrap, topic_prefix, tmp_path)
    await first.start()
    successor = build_producer(kafka, transactional_id=first.transactional_id)
    await successor.start()
    with _unretrieved_future_errors() as unretrieved:
        try:
            await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
            with pytest.raises(TransientError) as fenced:
                await _until_work_done(first)
            refusal = (fenced.value.code, fenced.value.retryable)
            del fenced  # its traceback holds the fenced producer, which must be collectable
        finally:
            await first.stop(clean=False)
            await successor.stop()
    assert refusal == (ErrorCode.BROKER_REQUEST_REFUSED, False)
    assert unretrieved == [], "the fenced producer left errors nobody retrieved"
    assert await _records(kafka_bootstrap, topic_prefix, tmp_path) == []


async def test_failed_transaction_is_redone_not_skipped(
    kafka_bootstrap: str,
    kafka: KafkaClientConfig,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch whose transaction fails is audited again: every event once, chain intact."""
    await create_topics(kafka_bootstrap, topic_prefix)
    events = pipeline_events(3)
    await publish(kafka_bootstrap, topic_prefix, events)
    agent = make_agent(kafka_bootstrap, topic_prefix, tmp_path)
    send_all = KafkaProducer.send_all
    calls = {"n": 0}

    async def flaky(self: KafkaProducer, messages: list[RawMessage]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # the first batch: two records sent, then the broker fails
            await send_all(self, messages[:2])
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "injected broker failure")
        await send_all(self, messages)

    monkeypatch.setattr(KafkaProducer, "send_all", flaky)
    await agent.start()
    try:
        with pytest.raises(TransientError, match="injected"):
            await _until_work_done(agent)
        async with asyncio.timeout(20):
            while agent.records_written < len(events):
                await agent.process_batch(timeout_ms=200)
    finally:
        await agent.stop()
    records = await assert_whole_chain(kafka, agent.audit_topic, tmp_path, len(events))
    assert len({(r.source.topic, r.source.partition, r.source.offset) for r in records}) == 12


async def test_idle_agent_checkpoints_after_interval(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """With no new messages, a checkpoint is still taken once every_seconds has passed."""
    await create_topics(kafka_bootstrap, topic_prefix)
    await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
    now = {"t": 0.0}
    agent = AuditAgent(
        kafka=kafka,
        prefix=topic_prefix,
        group_id=f"{topic_prefix}audit",
        signing_key_path=tmp_path / "audit-key.pem",
        checkpoint_file=tmp_path / "checkpoints.jsonl",
        policy=CheckpointPolicy(every_records=1000, every_seconds=5),
        clock=lambda: now["t"],
    )
    await agent.start()
    try:
        async with asyncio.timeout(20):
            while agent.records_written < 4:
                await agent.process_batch(timeout_ms=200)
        assert read_checkpoints(tmp_path / "checkpoints.jsonl") == []
        now["t"] = 6.0
        assert await agent.process_batch(timeout_ms=100) == 0
        assert [cp.sequence for cp in read_checkpoints(tmp_path / "checkpoints.jsonl")] == [3]
    finally:
        await agent.stop()


async def test_run_restarts_after_a_broker_error(
    kafka_bootstrap: str,
    kafka: KafkaClientConfig,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker error while running restarts the agent instead of ending it."""
    await create_topics(kafka_bootstrap, topic_prefix)
    await publish(kafka_bootstrap, topic_prefix, pipeline_events(2))
    agent = make_agent(kafka_bootstrap, topic_prefix, tmp_path)
    original = AuditAgent.process_batch
    calls = {"n": 0}

    async def failing_once(self: AuditAgent, timeout_ms: int = 500) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "injected broker failure")
        return await original(self, timeout_ms)

    monkeypatch.setattr(AuditAgent, "process_batch", failing_once)
    await _run_until_written(
        agent, 8, restart=RetryPolicy.until_done(initial_seconds=0, max_seconds=0)
    )
    assert [r.sequence for r in await _records(kafka_bootstrap, topic_prefix, tmp_path)] == list(
        range(8)
    )


async def test_lost_checkpoint_file_entry_restored_from_topic(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """A checkpoint committed to the topic but lost from the file is copied back at start."""
    await create_topics(kafka_bootstrap, topic_prefix)
    await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
    await run_until_idle(
        make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=2), idle_seconds=0.5
    )
    checkpoint_file = tmp_path / "checkpoints.jsonl"
    written = read_checkpoints(checkpoint_file)
    checkpoint_file.write_text(written[0].model_dump_json() + "\n")  # as if a crash lost the rest
    agent = make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=2)
    await agent.start()
    await agent.stop()
    assert read_checkpoints(checkpoint_file) == [written[0], written[-1]]


async def test_messages_trickling_in_share_one_transaction(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """At low rates the agent gathers for batch_wait_seconds instead of one transaction each."""
    await create_topics(kafka_bootstrap, topic_prefix)
    agent = make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=1000)
    agent.batch_wait_seconds = 2.0
    events = pipeline_events(2)
    await agent.start()
    try:
        await publish(kafka_bootstrap, topic_prefix, events[:1])

        async def trickle() -> None:
            for event in events[1:]:
                await asyncio.sleep(0.1)  # slower than one poll, faster than the wait
                await publish(kafka_bootstrap, topic_prefix, [event])

        trickling = asyncio.create_task(trickle())
        async with asyncio.timeout(30):
            first = 0
            while first == 0:
                first = await agent.process_batch(timeout_ms=500)
        await trickling
    finally:
        await agent.stop()
    # Without gathering, the first transaction would hold the one message there was.
    assert first > 1
