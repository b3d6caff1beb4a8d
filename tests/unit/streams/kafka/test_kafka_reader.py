"""Reading a topic by assignment up to its end, over fake clients (no broker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from schemas.errors import ErrorCode, TransientError
from streams.kafka import KafkaClientConfig, TopicReader

CONFIG = KafkaClientConfig("k:9092", read_stall_seconds=5)


def record(topic: str, partition: int, offset: int) -> ConsumerRecord:
    """A consumed record as aiokafka hands it over."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=f"{partition}:{offset}".encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=3,
        headers=[],
    )


class FakeAdmin:
    """Knows which topics exist and their partitions."""

    def __init__(self, topics: dict[str, list[int]]) -> None:
        self.topics = topics

    async def topic_partitions(self, names: Sequence[str]) -> dict[str, list[int]]:
        return {n: self.topics[n] for n in names if n in self.topics}


class FakeConsumer:
    """Serves each partition's log, ``per_fetch`` records a fetch; transaction markers skipped.

    ``logs`` maps partition -> offsets that hold records (gaps are markers or aborted data).
    """

    def __init__(self, topic: str, logs: dict[int, list[int]], ends: dict[int, int]) -> None:
        self.topic, self.logs, self.ends = topic, logs, ends
        self.positions: dict[TopicPartition, int] = {}
        self.per_fetch = 2
        self.stalled = False
        self.unsubscribed = False

    def assign(self, partitions: Any) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        if self.stalled:
            return {}
        found: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp in partitions:
            ahead = [o for o in self.logs[tp.partition] if o >= self.positions[tp]]
            batch = ahead[: self.per_fetch]
            if batch:
                found[tp] = [record(tp.topic, tp.partition, o) for o in batch]
                self.positions[tp] = batch[-1] + 1
            else:  # only markers left: the fetch moves the position past them
                self.positions[tp] = self.ends[tp.partition]
        return found

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: min(self.logs[tp.partition], default=0) for tp in tps}

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp.partition] for tp in tps}

    def unsubscribe(self) -> None:
        self.unsubscribed = True


def reader(consumer: FakeConsumer, clock: Any = None) -> TopicReader:
    admin = FakeAdmin({consumer.topic: sorted(consumer.logs)})
    return TopicReader(CONFIG, admin=admin, consumer=consumer, clock=clock)  # type: ignore[arg-type]


class TestReadToEnd:
    async def test_every_record_up_to_the_end_offsets_taken_at_the_start(self) -> None:
        """Both partitions are read to their end; later writes are not waited for."""
        consumer = FakeConsumer("t", {0: [0, 1, 2, 4], 1: [0, 1, 2]}, ends={0: 5, 1: 2})
        content = await reader(consumer).read_to_end("t")
        assert [r.offset for r in content.records[0]] == [0, 1, 2, 4]
        assert [r.offset for r in content.records[1]] == [0, 1]  # offset 2 is past the end
        assert content.starts == {0: 0, 1: 0}
        assert [(r.partition, r.offset) for r in content.all_records()][:2] == [(0, 0), (0, 1)]
        assert consumer.unsubscribed

    async def test_missing_topic_reads_as_empty(self) -> None:
        """A topic that does not exist (yet) is empty, not an error, and is not created."""
        consumer = FakeConsumer("t", {0: [0]}, ends={0: 1})
        content = await reader(consumer).read_to_end("other")
        assert (content.records, content.starts) == ({}, {})

    async def test_a_range_in_the_middle(self) -> None:
        """A range read returns only offsets in [start, end)."""
        consumer = FakeConsumer("t", {0: list(range(10))}, ends={0: 10})
        found = await reader(consumer).read("t", {0: (3, 6)})
        assert [r.offset for r in found[0]] == [3, 4, 5]

    async def test_a_stalled_read_fails_with_timeout(self) -> None:
        """No progress for read_stall_seconds (on the injected clock): TIMEOUT, never a hang."""
        consumer = FakeConsumer("t", {0: [0, 1]}, ends={0: 2})
        consumer.stalled = True
        now = {"t": 0.0}

        def clock() -> float:
            now["t"] += 1.0  # every look at the clock is one second later
            return now["t"]

        with pytest.raises(TransientError) as caught:
            await reader(consumer, clock).read_to_end("t")
        assert caught.value.code is ErrorCode.TIMEOUT
        assert "no progress for 5 s" in caught.value.reason
        assert consumer.unsubscribed
