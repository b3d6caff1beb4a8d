"""The audit agent against the real broker: transactional, chained, resumable, verifiable."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.audit.files import read_checkpoints
from streams.audit.io import read_audit_topic, trail_for_event
from streams.kafka import KafkaClientConfig
from streams.kafka.loop import run_until_idle
from streams.topics import TopicKey, TopicNames
from tests.integration.audit_support import (
    create_topics,
    make_agent,
    pipeline_events,
    publish,
    trusted_in,
    verify_agent_topic,
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

    names = TopicNames(topic_prefix)
    content = await read_audit_topic(kafka, names.audit, trusted_in(tmp_path))
    records = content[0].records
    assert [r.sequence for r in records] == list(range(len(events)))  # type: ignore[union-attr]
    cps = read_checkpoints(tmp_path / "checkpoints.jsonl")
    assert [cp.sequence for cp in cps] == [4, 9, 14, 15]  # every 5, then the tail at stop
    report = await verify_agent_topic(kafka, names.audit, tmp_path)
    assert report.ok, report.summary()
    assert report.records_checked == len(events)


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

    names = TopicNames(topic_prefix)
    records = (await read_audit_topic(kafka, names.audit, trusted_in(tmp_path)))[0].records
    assert [r.sequence for r in records] == list(range(12))  # type: ignore[union-attr]
    report = await verify_agent_topic(kafka, names.audit, tmp_path)
    assert report.ok, report.summary()


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
