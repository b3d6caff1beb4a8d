"""The aiokafka baseline's consumption: records to Incoming, offsets, batch collection."""

from __future__ import annotations

from collections import deque

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from bench.aiokafka_baseline import incoming_from_record, main, next_offsets, take_batch

pytestmark = pytest.mark.requirement("RS-BEN-01")


def record(offset: int, *, partition: int = 0, value: bytes | None = b"{}") -> ConsumerRecord:
    """A consumed record as aiokafka hands it over."""
    return ConsumerRecord(
        topic="t",
        partition=partition,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=[("correlation_id", b"abc" * 8 + b"abcdef12"), ("empty", None)],
    )


class FakeConsumer:
    """getmany answers from a script of batches; records the timeouts it was asked for."""

    def __init__(self, script: list[list[ConsumerRecord]]) -> None:
        self.script = deque(script)
        self.calls: list[tuple[int, int]] = []

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.calls.append((timeout_ms, max_records))
        batch = self.script.popleft() if self.script else []
        return {TopicPartition("t", 0): batch[:max_records]} if batch else {}


class TestIncoming:
    def test_record_becomes_incoming(self) -> None:
        """Coordinates, key, value, headers (None as b'') and timestamp (seconds) carry over."""
        incoming = incoming_from_record(record(7))
        assert (incoming.topic, incoming.partition, incoming.offset) == ("t", 0, 7)
        assert incoming.headers == (("correlation_id", b"abc" * 8 + b"abcdef12"), ("empty", b""))
        assert incoming.timestamp == 1_700_000_000.0
        assert incoming.correlation_id == "abc" * 8 + "abcdef12"

    def test_tombstone_value_is_empty_bytes(self) -> None:
        """A None value reaches the stage as b'' (its guard dead-letters it)."""
        assert incoming_from_record(record(1, value=None)).value == b""


class TestOffsets:
    def test_one_past_the_highest_offset_per_partition(self) -> None:
        """Committed offsets point at the next record to read, per partition."""
        offsets = next_offsets([record(5), record(3), record(9, partition=1), record(6)])
        assert offsets == {TopicPartition("t", 0): 7, TopicPartition("t", 1): 10}


class TestTakeBatch:
    async def test_fills_up_to_the_batch_size(self) -> None:
        """Records arriving in pieces are collected until the batch is full."""
        consumer = FakeConsumer([[record(0), record(1)], [record(2)], [record(3), record(4)]])
        batch = await take_batch(consumer, 4, 5.0)  # type: ignore[arg-type]
        assert [r.offset for r in batch] == [0, 1, 2, 3]
        assert [max_records for _, max_records in consumer.calls] == [4, 2, 1]

    async def test_returns_what_arrived_within_the_wait(self) -> None:
        """After the first record, the batch waits at most ``within`` seconds for more."""
        consumer = FakeConsumer([[record(0)]])
        batch = await take_batch(consumer, 8, 0.05)  # type: ignore[arg-type]
        assert [r.offset for r in batch] == [0]
        assert all(timeout <= 50 for timeout, _ in consumer.calls[1:])

    async def test_nothing_arrived_is_an_empty_batch(self) -> None:
        """An idle topic yields an empty batch after the idle wait, so stop is checked."""
        consumer = FakeConsumer([])
        assert await take_batch(consumer, 8, 0.05, idle_ms=10) == []  # type: ignore[arg-type]
        assert consumer.calls == [(10, 8)]


class TestCommandLine:
    def test_unknown_stage_is_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--stages takes only the pipeline's stage names: a usage error, one line."""
        assert main(["--stages", "validation,bogus"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "REQUEST_INVALID" in err
        assert "'bogus'" in err
