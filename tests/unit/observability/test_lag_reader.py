"""The lag reader's fetch planning and lifecycle (no broker)."""

from __future__ import annotations

from observability.lag import LagReader, _rounds
from streams.kafka import KafkaClientConfig, TopicPartition


class TestRounds:
    def test_one_partition_at_two_offsets_takes_two_rounds(self) -> None:
        """Two groups at different offsets of one partition need two seeks."""
        tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
        rounds = _rounds([(tp0, 5), (tp0, 9), (tp1, 2)])
        assert rounds == [{tp0: 5, tp1: 2}, {tp0: 9}]


class TestReaderLifecycle:
    async def test_stop_before_start_is_a_no_op(self) -> None:
        """Closing a reader whose start failed or never ran touches no connection."""
        reader = LagReader(KafkaClientConfig("127.0.0.1:1"), "p.")
        await reader.stop()
        assert (reader._admin, reader._consumer) == (None, None)
