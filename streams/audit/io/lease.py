"""Which of several audit agents writes a chain: a lease held through a consumer group.

Every agent of chain ``P`` joins the group ``<transactional id>.lease`` subscribed to the audit
topic; the member the group assigns partition ``P`` holds the lease and is the only one that
opens the chain's transactional producer. The others stand by, kept alive by their group
membership: when the holder stops (it leaves the group) or dies (the broker evicts it after
the session timeout), the group reassigns ``P`` and the next member takes over. The partition
is paused: the lease reads nothing from the audit topic, it only uses the group's assignment.

The lease is the coordination; the transactional id stays the safety net. A holder cut off
from the group coordinator can still be writing when a standby is given the lease: the
standby's producer start (``InitProducerId``) then fences it, its next transaction fails
(``BROKER_REQUEST_REFUSED``) and it exits for its supervisor to restart it, a standby again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from streams.kafka import (
    AsyncResource,
    KafkaClientConfig,
    KafkaConsumer,
    TopicPartition,
    build_consumer,
)

# The lease group of a chain is named after the chain's transactional id.
LEASE_GROUP_SUFFIX: Final = ".lease"


def lease_group_id(transactional_id: str) -> str:
    """The consumer group whose assignment is the lease of the chain ``transactional_id``."""
    return f"{transactional_id}{LEASE_GROUP_SUFFIX}"


def is_lease_group(group: str) -> bool:
    """Whether ``group`` is a chain's lease: it coordinates, it never consumes or commits."""
    return group.endswith(LEASE_GROUP_SUFFIX)


class ChainLease(AsyncResource):
    """The right to write one chain, held by at most one member of the lease group."""

    def __init__(self, kafka: KafkaClientConfig, topic: str, chain_partition: int, group_id: str):
        self._kafka = kafka
        self._partition = TopicPartition(topic, chain_partition)
        self.group_id = group_id
        self._held = False
        self._assigned = asyncio.Event()
        self._consumer: KafkaConsumer | None = None

    @property
    def held(self) -> bool:
        """Whether the group's last assignment gave this member the chain's partition."""
        return self._held

    @property
    def settled(self) -> bool:
        """Whether the group has assigned this member (and no rebalance is under way)."""
        return self._assigned.is_set()

    async def start(self) -> None:
        """Join the lease group (the assignment follows in the background)."""
        self._held = False
        self._assigned.clear()  # a restart after a broker error waits for a fresh assignment
        self._consumer = build_consumer(
            self._kafka,
            self._partition.topic,
            group_id=self.group_id,
            on_assignment=self._on_assignment,
            # A member joining must not take the chain from a live holder.
            sticky=True,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        """Leave the group: a standby is given the lease at once."""
        consumer, self._consumer = self._consumer, None
        self._held = False
        if consumer is not None:
            await consumer.stop()

    async def acquire(self, bound_seconds: float) -> bool:
        """Wait up to ``bound_seconds`` for the first assignment; whether it holds the lease."""
        consumer = self._require()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(bound_seconds):
                while not self._assigned.is_set():
                    await consumer.getmany(timeout_ms=200)
        return self._held

    async def renew(self, timeout_ms: int = 0) -> bool:
        """Poll the group (at most ``timeout_ms``) so the membership stays alive; still held?"""
        await self._require().getmany(timeout_ms=timeout_ms)
        return self._held

    def _on_assignment(self, partitions: frozenset[TopicPartition] | None) -> None:
        if partitions is None:  # revoked: a rebalance is under way until the next assignment
            self._held = False
            self._assigned.clear()
            return
        self._held = self._partition in partitions
        if partitions and self._consumer is not None:
            self._consumer.pause(*partitions)
        self._assigned.set()

    def _require(self) -> KafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the chain lease is not started")
        return self._consumer
