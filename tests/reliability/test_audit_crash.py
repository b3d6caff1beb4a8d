"""Killing the audit agent mid-stream and restarting it: no gap, no duplicate, chain verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.audit import AuditRecord
from streams.audit.io import read_audit_topic, verify_topic
from streams.kafka import KafkaClientConfig
from streams.kafka.loop import run_until_idle
from streams.topics import TopicNames
from tests.integration.audit_support import (
    create_topics,
    make_agent,
    pipeline_events,
    publish,
    trusted_in,
)

pytestmark = pytest.mark.requirement("RS-AUD-02", "RS-G-03", "RS-G-04")

REPO = Path(__file__).resolve().parents[2]
IMAGES = 300  # 1200 source events: at 5 per transaction the child needs seconds, not ms


async def _wait_for_records(bootstrap: str, topic: str, minimum: int) -> None:
    """Poll the audit topic's committed end offset until it reaches ``minimum``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        for _ in range(600):  # 600 x 50 ms: 30 s covers the child's start-up with margin
            if (await consumer.end_offsets([tp]))[tp] >= minimum:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the audit agent process wrote nothing within 30 s")
    finally:
        await consumer.stop()


async def test_sigkill_mid_stream_then_restart(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """A SIGKILLed agent's successor audits every event exactly once on one unbroken chain."""
    await create_topics(kafka_bootstrap, topic_prefix)
    events = pipeline_events(IMAGES)
    await publish(kafka_bootstrap, topic_prefix, events)
    audit_topic = TopicNames(topic_prefix).audit
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.audit_agent_process",
        "--bootstrap",
        kafka_bootstrap,
        "--prefix",
        topic_prefix,
        "--directory",
        str(tmp_path),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        await _wait_for_records(kafka_bootstrap, audit_topic, 60)
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), timeout=10)
    audited_before_restart = sum(
        isinstance(r, AuditRecord)
        for r in (await read_audit_topic(kafka, audit_topic, trusted_in(tmp_path)))[0].records
    )
    assert 0 < audited_before_restart < len(events), "the kill must land mid-stream"

    await run_until_idle(make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=7))

    records = [
        r
        for r in (await read_audit_topic(kafka, audit_topic, trusted_in(tmp_path)))[0].records
        if isinstance(r, AuditRecord)
    ]
    assert [r.sequence for r in records] == list(range(len(events)))
    coordinates = {(r.source.topic, r.source.partition, r.source.offset) for r in records}
    assert len(coordinates) == len(events)  # every source message exactly once
    report = await verify_topic(
        kafka, audit_topic, tmp_path / "checkpoints.jsonl", trusted_in(tmp_path)
    )
    assert report.ok, report.summary()
