"""Lag on the real broker against the last stable offset, and a lag command that returns.

A transactional producer writes records and a commit marker; a group committed just past the
last record has read everything. Issue #17 C: it was reported ``lag=1`` (the marker), and
``radstream lag`` without ``--group`` could hang while closing its reader.
"""

from __future__ import annotations

import asyncio
import os
import subprocess  # nosec B404 - runs our own command line, as an operator would
import sys
import uuid

import pytest

from observability.lag import LagReader, LagSample
from streams.kafka import (
    KafkaClientConfig,
    RawMessage,
    TopicPartition,
    build_admin,
    build_producer,
)

pytestmark = pytest.mark.requirement("RS-OBS-02", "RS-REL-12")

# Bounds that only stop a hung test: each step takes well under a second on the dev broker.
STEP_SECONDS = 60.0


async def write_transaction(
    config: KafkaClientConfig, topic: str, count: int, group: str, committed: int
) -> None:
    """``count`` records in one transaction (offsets 0..count-1, marker at ``count``).

    The transaction also commits ``group`` at ``committed``, as the audit sink commits its
    consumed offsets atomically with what it wrote.
    """
    async with build_admin(config) as admin:
        await admin.create_topics([(topic, 1, {})])
    producer = build_producer(config, transactional_id=f"rstest-lso-{uuid.uuid4().hex[:8]}")
    async with producer, producer.transaction():
        await producer.send_all([RawMessage(topic, None, b"x", partition=0)] * count)
        await producer.send_offsets_to_transaction({TopicPartition(topic, 0): committed}, group)


async def lag_after_transaction(
    kafka_bootstrap: str, topic_prefix: str, committed: int
) -> LagSample:
    """The lag sample of a group committed at ``committed`` on a three-record transaction."""
    config = KafkaClientConfig(kafka_bootstrap)
    topic, group = f"{topic_prefix}audit.log", f"rstest-lso-{uuid.uuid4().hex[:8]}"
    async with asyncio.timeout(STEP_SECONDS):
        await write_transaction(config, topic, 3, group, committed)
        async with LagReader(config, topic_prefix, group_prefix=group) as reader:
            (snapshot,) = await reader.snapshots([group])
    (sample,) = snapshot.samples
    return sample


async def test_drained_transactional_topic_has_no_lag(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Group at the offset after the last record, commit marker at the end: lag 0."""
    sample = await lag_after_transaction(kafka_bootstrap, topic_prefix, committed=3)
    assert (sample.committed, sample.end, sample.lag) == (3, 4, 0)


async def test_backlog_in_a_transactional_topic_is_its_records(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Group at the first record: all three records lag, with the first one's age."""
    sample = await lag_after_transaction(kafka_bootstrap, topic_prefix, committed=0)
    assert sample.readable_from == 0
    assert sample.lag == 4
    assert sample.committed_timestamp is not None


def test_lag_command_without_group_returns(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Every group of the deployment, none named: the command ends (here: ok, exit 0)."""
    group_prefix = f"rstest-lsocli-{uuid.uuid4().hex[:8]}"
    config = KafkaClientConfig(kafka_bootstrap)
    topic = f"{topic_prefix}audit.log"

    async def prepare() -> None:
        async with asyncio.timeout(STEP_SECONDS):
            await write_transaction(config, topic, 2, f"{group_prefix}-audit-sink", 2)

    asyncio.run(prepare())
    env = os.environ | {
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_CONSUMER_GROUP_PREFIX": group_prefix,
    }
    # A process of its own, as an operator runs it: the hang was in closing its clients.
    result = subprocess.run(  # nosec B603 - fixed argv, our own module
        [sys.executable, "-m", "cli", "lag", "--interval", "0.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{group_prefix}-audit-sink" in result.stdout
    assert "lag=0" in result.stdout
