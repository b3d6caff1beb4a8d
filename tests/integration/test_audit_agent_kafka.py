"""The audit agent against the real broker: transactional, chained, resumable, verifiable."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.audit.files import read_checkpoints
from streams.audit.io import trail_for_event
from streams.kafka import KafkaClientConfig
from streams.kafka.loop import run_until_idle
from streams.topics import TopicKey, TopicNames
from tests.integration.audit_support import (
    assert_whole_chain,
    create_topics,
    make_agent,
    pipeline_events,
    publish,
    trusted_in,
)

pytestmark = pytest.mark.requirement("RS-AUD-01", "RS-AUD-02", "RS-AUD-03", "RS-G-04")

# Each run_until_idle stops after 1 s without messages and fails after 30 s: generous for a
# local broker (a transaction commits in milliseconds) while never hanging CI.


async def test_audits_every_event_once_into_a_verified_chain(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """Every source event becomes exactly one record; the chain and checkpoints verify."""
    await create_topics(kafka_bootstrap, topic_prefix)
    events = pipeline_events(4)
    await publish(kafka_bootstrap, topic_prefix, events)
    agent = make_agent(kafka_bootstrap, topic_prefix, tmp_path, every=5)

    assert await run_until_idle(agent) == len(events)

    await assert_whole_chain(kafka, TopicNames(topic_prefix).audit, tmp_path, len(events))
    cps = read_checkpoints(tmp_path / "checkpoints.jsonl")
    assert [cp.sequence for cp in cps] == [4, 9, 14, 15]  # every 5, then the tail at stop


async def test_restart_continues_the_chain(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """A new agent resumes from the stored head: no duplicate of old events, no gap."""
    await create_topics(kafka_bootstrap, topic_prefix)
    await publish(kafka_bootstrap, topic_prefix, pipeline_events(2))
    assert await run_until_idle(make_agent(kafka_bootstrap, topic_prefix, tmp_path)) == 8

    await publish(kafka_bootstrap, topic_prefix, pipeline_events(1))
    second = make_agent(kafka_bootstrap, topic_prefix, tmp_path)
    assert await run_until_idle(second) == 4

    await assert_whole_chain(kafka, TopicNames(topic_prefix).audit, tmp_path, 12)


async def test_trail_for_one_image(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """The trail of one event id lists its arrival, validation, result and API read in order."""
    await create_topics(kafka_bootstrap, topic_prefix)
    events = pipeline_events(3)
    await publish(kafka_bootstrap, topic_prefix, events)
    await run_until_idle(make_agent(kafka_bootstrap, topic_prefix, tmp_path))

    event_id = events[4][1].event_id  # type: ignore[attr-defined]
    trail = await trail_for_event(
        kafka, TopicNames(topic_prefix).audit, event_id, trusted_in(tmp_path)
    )
    assert sorted(r.source.topic.removeprefix(topic_prefix) for r in trail) == sorted(
        k.value
        for k in (
            TopicKey.IMAGES_ARRIVED,
            TopicKey.IMAGES_VALIDATED,
            TopicKey.INFERENCE_RESULTS,
            TopicKey.API_ACTIONS,
        )
    )
    assert all(r.object.event_id == event_id for r in trail)
