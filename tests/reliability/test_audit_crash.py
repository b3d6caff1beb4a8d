"""Killing the audit agent mid-stream and restarting it: no gap, no duplicate, chain verifies."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from schemas.audit import AuditRecord
from streams.audit.io import read_audit_topic, verify_topic
from streams.kafka import KafkaClientConfig
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

IMAGES = 300  # 1200 source events: at 5 per transaction the child needs seconds, not ms
RESUME_BOUND_SECONDS = 120.0  # a bound on failure; a healthy successor takes seconds


async def test_sigkill_mid_stream_then_restart(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """A SIGKILLed agent's successor audits every event exactly once on one unbroken chain."""
    await create_topics(kafka_bootstrap, topic_prefix)
    events = pipeline_events(IMAGES)
    await publish(kafka_bootstrap, topic_prefix, events)
    audit_topic = TopicNames(topic_prefix).audit
    child = await spawn(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        await wait_for_records(kafka_bootstrap, audit_topic, 60)
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), timeout=10)
    audited_before_restart = sum(
        isinstance(r, AuditRecord)
        for r in (await read_audit_topic(kafka, audit_topic, trusted_in(tmp_path)))[0].records
    )
    assert 0 < audited_before_restart < len(events), "the kill must land mid-stream"

    # Until the successor handled every event its predecessor left, not until it is idle: its
    # group join waits for the killed member's session to expire, seconds with nothing to read.
    remaining = len(events) - audited_before_restart
    successor = make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=7)
    await successor.start()
    handled = 0
    try:
        async with asyncio.timeout(RESUME_BOUND_SECONDS):
            while handled < remaining:
                handled += await successor.process_batch(timeout_ms=200)
    finally:
        await successor.stop()

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
