"""A broker outage longer than the request timeout: the publisher recovers, nothing is lost.

Issue #17 A: after 46 s without a broker (request timeout 40 s) producers stayed stuck for good
(``OutOfOrderSequenceException`` on the broker, ``delivery_retried`` forever). Here the same on a
private broker (never the shared one) with a 3 s request timeout and a 12 s outage: a delivery
started during the outage completes after it, on a fresh producer, and every message is on the
topic (a duplicate is allowed: consumers are idempotent by event id).
"""

from __future__ import annotations

import asyncio

import pytest

from streams.kafka import KafkaClientConfig, KafkaPublisher, RawMessage, read_topic
from streams.kafka.clients import build_admin
from streams.retry import RetryPolicy, run_with_retries
from streams.topics import TopicNames
from tests.reliability.private_kafka import PrivateKafka

pytestmark = pytest.mark.requirement("RS-REL-11")

TOPIC = "recovery.images.arrived"
OUTAGE_SECONDS = 12.0  # four request timeouts
# Bound of the delivery once the broker is back: it only stops a hung test (a restart of the
# private broker and a new producer take a few seconds on a loaded machine).
RECOVERY_BOUND_SECONDS = 120.0


RETRY = RetryPolicy.until_done(initial_seconds=0.2, max_seconds=2.0)


async def topic_on(broker: PrivateKafka) -> KafkaClientConfig:
    """Clients of ``broker`` whose requests time out after 3 s, once TOPIC exists on it."""
    config = KafkaClientConfig(
        broker.bootstrap,
        request_timeout_ms=3_000,
        send_timeout_seconds=4.0,
        close_timeout_seconds=3.0,
        admin_timeout_seconds=5.0,
    )
    async with build_admin(config) as admin:
        await admin.create_topics([(TOPIC, 1, {})])
    return config


async def values_on_topic(config: KafkaClientConfig) -> set[int]:
    """The numbers of the messages on TOPIC (duplicates folded: consumers are idempotent)."""
    content = await read_topic(config, TOPIC)
    return {int(record.value or b"-1") for record in content.all_records()}


def batch(first: int, count: int) -> list[RawMessage]:
    """``count`` numbered messages on one partition (so their order is kept)."""
    return [
        RawMessage(TOPIC, b"k", str(n).encode(), partition=0) for n in range(first, first + count)
    ]


async def test_delivery_started_during_a_long_outage_completes_after_it(
    broker: PrivateKafka,
) -> None:
    """Before, during and after: all 15 messages on the topic, the producer replaced."""
    config = await topic_on(broker)
    async with KafkaPublisher(config, TopicNames("")) as publisher:
        await publisher.deliver(batch(0, 5))

        await asyncio.to_thread(broker.down)
        during = asyncio.create_task(
            run_with_retries(lambda: publisher.deliver(batch(5, 5)), RETRY)
        )
        await asyncio.sleep(OUTAGE_SECONDS)
        assert not during.done()
        await asyncio.to_thread(broker.up)
        await asyncio.wait_for(during, RECOVERY_BOUND_SECONDS)

        await publisher.deliver(batch(10, 5))
        assert publisher.producers_replaced >= 1

    assert await values_on_topic(config) == set(range(15))


async def test_many_deliveries_in_flight_through_a_long_outage_all_complete(
    broker: PrivateKafka,
) -> None:
    """Twenty deliveries at once (the API under load) through the outage: all 100 arrive."""
    config = await topic_on(broker)
    async with KafkaPublisher(config, TopicNames("")) as publisher:
        await asyncio.to_thread(broker.down)
        deliveries = [
            asyncio.create_task(
                run_with_retries(lambda n=n: publisher.deliver(batch(n * 5, 5)), RETRY)
            )
            for n in range(20)
        ]
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(broker.up)
        await asyncio.wait_for(asyncio.gather(*deliveries), RECOVERY_BOUND_SECONDS)

    assert await values_on_topic(config) == set(range(100))
