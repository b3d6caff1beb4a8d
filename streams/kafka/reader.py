"""Reading a topic by assignment: ranges of offsets, or everything up to its current end.

No consumer group is involved and nothing is committed. Reads are ``read_committed``, so
records of aborted transactions are never returned and the end of a partition is its last
stable offset. A read stops at the end offsets taken when it starts, so it returns as soon as
the topic is read, not after an idle timeout; it fails with ``TIMEOUT`` only when it makes no
progress for ``read_stall_seconds`` (a broker that stops answering), so a long topic that keeps
arriving may take as long as it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from schemas.errors import ErrorCode, TransientError
from streams.kafka.clients import (
    AsyncResource,
    ConsumerRecord,
    KafkaAdmin,
    KafkaConsumer,
    TopicPartition,
    build_admin,
    build_consumer,
    start_all,
    stop_all,
)
from streams.kafka.config import KafkaClientConfig

_FETCH_MS = 200


@dataclass(frozen=True, slots=True)
class TopicContent:
    """What a read found: each partition's records in offset order, and its first offset."""

    records: dict[int, list[ConsumerRecord]] = field(default_factory=dict)
    starts: dict[int, int] = field(default_factory=dict)

    def all_records(self) -> list[ConsumerRecord]:
        """Every record, by partition then offset."""
        return [r for partition in sorted(self.records) for r in self.records[partition]]


class TopicReader(AsyncResource):
    """One group-less reader (a consumer and an admin client), reusable for many reads.

    Args:
        config: the connection; ``read_stall_seconds`` bounds a read that makes no progress.
        admin: the admin client to ask for partitions (default: built from ``config``).
        consumer: the group-less consumer to read with (default: built from ``config``).
        clock: monotonic seconds (default: the event loop's).
    """

    def __init__(
        self,
        config: KafkaClientConfig,
        *,
        admin: KafkaAdmin | None = None,
        consumer: KafkaConsumer | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._config = config
        self._admin = admin or build_admin(config)
        self._consumer = consumer or build_consumer(config)
        self._clock = clock

    async def start(self) -> None:
        """Connect; nothing stays open when this fails."""
        await start_all(self._admin, self._consumer)

    async def stop(self) -> None:
        """Disconnect."""
        await stop_all(self._consumer, self._admin)

    async def partitions(self, topic: str) -> list[int]:
        """The partition numbers of ``topic``; empty when it does not exist (yet)."""
        return (await self._admin.topic_partitions([topic])).get(topic, [])

    async def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        """(first offset, last stable offset) of every partition of ``topic``."""
        tps = [TopicPartition(topic, p) for p in await self.partitions(topic)]
        starts = await self._consumer.beginning_offsets(tps)
        ends = await self._consumer.end_offsets(tps)
        return {tp.partition: (starts[tp], ends[tp]) for tp in tps}

    async def read_to_end(self, topic: str) -> TopicContent:
        """Every committed record of ``topic`` up to its current end; a missing topic is empty.

        Raises:
            TransientError: BROKER_UNAVAILABLE, or TIMEOUT when the read stalls.
        """
        bounds = await self.bounds(topic)
        records = await self.read(topic, bounds)
        return TopicContent(records, {p: start for p, (start, _end) in bounds.items()})

    async def read(
        self, topic: str, ranges: Mapping[int, tuple[int, int]]
    ) -> dict[int, list[ConsumerRecord]]:
        """The committed records of each partition in ``[start, end)``, in offset order."""
        found: dict[int, list[ConsumerRecord]] = {p: [] for p in ranges}
        wanted = {TopicPartition(topic, p): (s, e) for p, (s, e) in ranges.items() if s < e}
        if not wanted:
            return found
        consumer = self._consumer
        consumer.assign(wanted)
        for tp, (start, _end) in wanted.items():
            consumer.seek(tp, start)
        positions = {tp: start for tp, (start, _end) in wanted.items()}
        now = self._clock or asyncio.get_running_loop().time
        last_progress = now()
        try:
            while pending := [tp for tp, (_s, end) in wanted.items() if positions[tp] < end]:
                batch = await consumer.getmany(*pending, timeout_ms=_FETCH_MS)
                for tp, messages in batch.items():
                    end = wanted[tp][1]
                    found[tp.partition].extend(m for m in messages if m.offset < end)
                moved = False
                for tp in pending:
                    position = await consumer.position(tp)
                    moved = moved or position > positions[tp]
                    positions[tp] = position
                if moved:
                    last_progress = now()
                elif now() - last_progress > self._config.read_stall_seconds:
                    raise TransientError(
                        ErrorCode.TIMEOUT,
                        f"reading {topic}: no progress for {self._config.read_stall_seconds:g} s",
                    )
        finally:
            consumer.unsubscribe()
        return found


async def read_topic(config: KafkaClientConfig, topic: str) -> TopicContent:
    """Every committed record of ``topic`` up to its current end (one reader, then closed)."""
    async with TopicReader(config) as reader:
        return await reader.read_to_end(topic)
