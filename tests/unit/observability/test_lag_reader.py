"""The lag reader's fetch planning and lifecycle (no broker)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from observability.lag import LagReader, LagSample, LagStatus, _rounds, judge_group
from streams.audit.io.lease import lease_group_id
from streams.kafka import GroupMembership, KafkaClientConfig, TopicPartition

pytestmark = pytest.mark.requirement("RS-OBS-02")


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


class FakeAdmin:
    """One group committed at ``committed`` on partition t/0 (``None``: committed nothing), its
    one member assigned ``assigned``."""

    def __init__(
        self, committed: int | None, assigned: frozenset[TopicPartition] = frozenset()
    ) -> None:
        self.committed = committed
        self.assigned = assigned

    async def group_membership(self, _group: str) -> GroupMembership:
        return GroupMembership(1, "Stable", self.assigned)

    async def group_offsets(self, _group: str) -> dict[TopicPartition, int]:
        if self.committed is None:
            return {}
        return {TopicPartition("p.t", 0): self.committed}

    async def topic_partitions(self, topics: set[str]) -> dict[str, list[int]]:
        return {topic: [0] for topic in topics}


class FakeConsumer:
    """A ``read_committed`` partition: records at ``records``, last stable offset ``end``.

    Offsets that are not records are transaction markers: a fetch skips them, moving the
    position without returning anything.
    """

    def __init__(self, records: dict[int, int], end: int) -> None:
        self.records, self.end = records, end
        self.at: dict[TopicPartition, int] = {}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, self.end)

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, min(self.records, default=self.end))

    def assign(self, _positions: object) -> None:
        return None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at[tp] = offset

    async def getmany(self, *, timeout_ms: int) -> dict[TopicPartition, list[SimpleNamespace]]:
        batch = {}
        for tp, offset in self.at.items():
            found = sorted(o for o in self.records if o >= offset)
            if found:
                first = found[0]
                batch[tp] = [SimpleNamespace(offset=first, timestamp=self.records[first])]
                self.at[tp] = first + 1
            else:
                self.at[tp] = self.end
        return batch

    def pause(self, _tp: TopicPartition) -> None:
        return None

    async def position(self, tp: TopicPartition) -> int:
        return self.at[tp]

    def unsubscribe(self) -> None:
        return None


def reader_over(admin: FakeAdmin, consumer: FakeConsumer) -> LagReader:
    """A started reader over the fakes."""
    reader = LagReader(KafkaClientConfig("k:1"), "p.", clock=lambda: 100.0)
    reader._admin, reader._consumer = admin, consumer  # type: ignore[assignment]
    return reader


class TestLastStableOffset:
    """Lag counts records a consumer will read, not transaction markers (issue #17 C)."""

    async def test_commit_marker_after_a_drained_transaction_is_no_lag(self) -> None:
        """Records 0-4 committed in one transaction, marker at 5, group at 5: lag 0, not 1."""
        consumer = FakeConsumer(dict.fromkeys(range(5), 1_000), end=6)
        (snapshot,) = await reader_over(FakeAdmin(5), consumer).snapshots(["g"])
        (sample,) = snapshot.samples
        assert (sample.committed, sample.end, sample.readable_from, sample.lag) == (5, 6, 6, 0)
        assert sample.committed_timestamp is None

    async def test_real_backlog_counts_from_the_first_readable_record(self) -> None:
        """Marker at 5, records 6-8 unread: the lag is the three records and the final marker."""
        records = {**dict.fromkeys(range(5), 1_000), 6: 2_000, 7: 2_000, 8: 2_000}
        (snapshot,) = await reader_over(FakeAdmin(5), FakeConsumer(records, 10)).snapshots(["g"])
        (sample,) = snapshot.samples
        assert (sample.readable_from, sample.lag, sample.committed_timestamp) == (6, 4, 2.0)

    def test_unread_head_counts_from_the_committed_offset(self) -> None:
        """Without a head read (timestamps off) the lag is end - committed, as before."""
        sample = LagSample("g", "t", 0, committed=5, end=6, timestamp=0.0)
        assert sample.lag == 1


class TestUnstartedPartitions:
    """A member that never committed a partition is judged from where it starts: the log start."""

    T0 = TopicPartition("p.t", 0)

    async def test_idle_member_on_an_empty_topic_is_caught_up(self) -> None:
        """A new deployment with nothing to consume: lag 0 from the start, OK (no page)."""
        reader = reader_over(FakeAdmin(None, frozenset({self.T0})), FakeConsumer({}, end=0))
        (snapshot,) = await reader.snapshots(["g"])
        (sample,) = snapshot.samples
        assert (sample.committed, sample.end, sample.lag) == (0, 0, 0)
        assert judge_group([snapshot]).status is LagStatus.OK

    async def test_member_stuck_before_its_first_commit_is_stalled(self) -> None:
        """Records wait, nothing is committed over the window: stalled, not "idle"."""
        consumer = FakeConsumer(dict.fromkeys(range(3, 10), 1_000), end=10)
        reader = reader_over(FakeAdmin(None, frozenset({self.T0})), consumer)
        first = (await reader.snapshots(["g"]))[0]
        reader._clock = lambda: 160.0
        later = (await reader.snapshots(["g"]))[0]
        (sample,) = later.samples
        assert (sample.committed, sample.lag) == (3, 7)  # from the log start, not offset 0
        assert judge_group([first, later]).status is LagStatus.STALLED

    async def test_partitions_of_other_deployments_and_committed_ones_are_left_alone(
        self,
    ) -> None:
        """Only this prefix's assigned partitions without a commit get a start-of-log sample."""
        assigned = frozenset({self.T0, TopicPartition("other.t", 0)})
        reader = reader_over(FakeAdmin(5, assigned), FakeConsumer(dict.fromkeys(range(9), 1), 9))
        (snapshot,) = await reader.snapshots(["g"])
        assert [(s.topic, s.committed) for s in snapshot.samples] == [("p.t", 5)]


class TestGroupsListed:
    async def test_the_audit_chains_lease_groups_are_not_judged(self) -> None:
        """A lease group never commits an offset (it only decides which agent writes a chain):
        listing it would report "no committed offsets", an error, on a healthy system."""

        class Listing(FakeAdmin):
            async def list_groups(self) -> list[str]:
                return [
                    "p",
                    "p-audit",
                    lease_group_id("p-audit.audit-chain-0"),
                    "p-results",
                    "other-group",
                ]

        reader = reader_over(Listing(0), FakeConsumer({}, 0))
        reader.group_prefix = "p"
        assert await reader.list_groups() == ["p", "p-audit", "p-results"]
