"""Reading back what the code under test published, from the real broker (bounded)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def read_from_start(
    bootstrap: str, *topics: str, want: int, within: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``want`` records of ``topics`` from the beginning, in the order they came.

    No consumer group (nothing is committed); fails with :class:`TimeoutError` when fewer than
    ``want`` arrive within ``within`` seconds (or the consumer does not start within as long),
    so a missing message or broker never hangs the test.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within):  # a broker that is not there fails, never hangs
            await consumer.start()
        async with asyncio.timeout(within):
            while len(got) < want:
                got.append(await consumer.getone())
    finally:
        await consumer.stop()
    return got
