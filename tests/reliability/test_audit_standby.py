"""Two audit agents of one chain: the second stands by, then takes over when the first is killed.

The first agent runs as its own process (so it can be SIGKILLed: no clean leave of the lease
group, no last checkpoint); the second runs here, on the same topics, group and chain.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.audit import AuditRecord
from streams.audit.io import read_audit_topic, verify_topic
from streams.kafka import KafkaClientConfig
from streams.kafka.loop import run_until_stopped
from streams.topics import TopicNames
from tests.integration.audit_support import (
    create_topics,
    make_agent,
    pipeline_events,
    publish,
    trusted_in,
)
from tests.reliability.audit_agent_process import spawn, wait_for_records

pytestmark = pytest.mark.requirement("RS-AUD-02", "RS-G-03", "RS-G-04")

# Generous bounds for a shared broker: the lease group's session timeout (10 s) decides how
# soon a killed holder's lease moves; a bound only stops a broken test from hanging CI.
BOUND_SECONDS = 60.0


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(BOUND_SECONDS * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {BOUND_SECONDS:.0f} s")


async def _records(kafka: KafkaClientConfig, topic: str, directory: Path) -> list[AuditRecord]:
    content = await read_audit_topic(kafka, topic, trusted_in(directory))
    return [r for r in content[0].records if isinstance(r, AuditRecord)]


async def test_second_agent_stands_by_and_takes_over_the_chain(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """The second agent writes nothing while the first lives, then continues its chain."""
    await create_topics(kafka_bootstrap, topic_prefix)
    audit_topic = TopicNames(topic_prefix).audit
    first_events = pipeline_events(2)
    await publish(kafka_bootstrap, topic_prefix, first_events)
    first = await spawn(kafka_bootstrap, topic_prefix, tmp_path)
    second = make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=7)
    stop_second = asyncio.Event()
    second_run: asyncio.Task[None] | None = None
    try:
        await wait_for_records(kafka_bootstrap, audit_topic, len(first_events))
        second_run = asyncio.create_task(run_until_stopped(second, stop_second))
        await _until(lambda: second.standing_by, "the second agent never joined the lease")

        # The first keeps writing while the second stands by.
        more_events = pipeline_events(2)
        await publish(kafka_bootstrap, topic_prefix, more_events)
        written = len(first_events) + len(more_events)
        await wait_for_records(kafka_bootstrap, audit_topic, written)
        assert first.returncode is None, "the first agent was fenced or died"
        assert not second.writing
        assert second.records_written == 0

        # Killed mid-stream, the first leaves its lease to the session timeout.
        last_events = pipeline_events(300)
        await publish(kafka_bootstrap, topic_prefix, last_events)
        await wait_for_records(kafka_bootstrap, audit_topic, written + 40)
    finally:
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.wait(), timeout=10)
    total = written + len(last_events)
    try:
        async with asyncio.timeout(BOUND_SECONDS):
            while len(records := await _records(kafka, audit_topic, tmp_path)) < total:
                assert second_run is not None
                assert not second_run.done(), "the standby stopped"
                await asyncio.sleep(1)
    finally:
        stop_second.set()
        if second_run is not None:
            await asyncio.wait_for(second_run, timeout=BOUND_SECONDS)

    assert 0 < second.records_written < len(last_events), "the kill must land mid-stream"
    assert [r.sequence for r in records] == list(range(total))
    coordinates = {(r.source.topic, r.source.partition, r.source.offset) for r in records}
    assert len(coordinates) == total  # every source message exactly once, across the handover
    report = await verify_topic(
        kafka, audit_topic, tmp_path / "checkpoints.jsonl", trusted_in(tmp_path)
    )
    assert report.ok, report.summary()
