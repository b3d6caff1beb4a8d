"""`radstream topics ensure` against the real broker: idempotent, audit topic configured right."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka import KafkaAdmin, KafkaClientConfig, build_admin, ensure_topics
from streams.kafka.admin import describe_topic_configs
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames

pytestmark = pytest.mark.requirement("RS-TOP-01")


async def test_ensure_twice_leaves_the_same_topics(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str
) -> None:
    """The second run creates nothing and reports the same partitions and configs."""
    first = await ensure_topics(kafka, topic_prefix)
    second = await ensure_topics(kafka, topic_prefix)
    assert all(r.created for r in first)
    assert not any(r.created for r in second)
    assert [(r.name, r.partitions, r.configs) for r in first] == [
        (r.name, r.partitions, r.configs) for r in second
    ]
    assert {r.name for r in second} == set(TopicNames(topic_prefix).all().values())
    assert all(r.problems == [] for r in second)


async def test_audit_topic_config_read_from_broker(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str
) -> None:
    """The broker itself says the audit topic is delete-policy with infinite retention."""
    await ensure_topics(kafka, topic_prefix)
    audit = TopicNames(topic_prefix).audit
    async with build_admin(kafka) as admin:
        configs = await describe_topic_configs(admin, [audit], ("cleanup.policy", "retention.ms"))
    assert configs[audit] == {"cleanup.policy": "delete", "retention.ms": "-1"}


async def wait_for_configs(
    admin: KafkaAdmin, topic: str, expected: dict[str, str]
) -> dict[str, str]:
    """Poll until the broker reports ``expected`` (KRaft applies config changes asynchronously)."""
    configs: dict[str, str] = {}
    for _ in range(100):  # bounded: 10 s is far above the metadata propagation delay
        configs = (await describe_topic_configs(admin, [topic], tuple(expected))).get(topic, {})
        if configs == expected:
            break
        await asyncio.sleep(0.1)
    return configs


async def test_drifted_config_is_corrected(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str
) -> None:
    """If someone makes the audit topic compacted, ensure puts it back and says so."""
    await ensure_topics(kafka, topic_prefix)
    audit = TopicNames(topic_prefix).audit
    drifted = {"cleanup.policy": "compact", "retention.ms": "1000"}
    # Someone else's client provokes the drift, outside radstream's Kafka layer.
    raw = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await raw.start()
    try:
        # A just-created topic can be unknown to the config handler for a moment: retry
        # (bounded) until the broker accepts the drift we want to provoke.
        for _ in range(50):
            (response,) = await raw.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, audit, configs=drifted)]
            )
            if response.resources[0][0] == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        await raw.close()
    async with build_admin(kafka) as admin:
        assert await wait_for_configs(admin, audit, drifted) == drifted
        reports = {r.name: r for r in await ensure_topics(kafka, topic_prefix)}
        wanted = TOPIC_SPECS[TopicKey.AUDIT_LOG].configs()
        restored = await wait_for_configs(admin, audit, wanted)
    assert reports[audit].corrected == wanted
    assert restored == wanted
