"""The worker's audit stage: what it exports about the agent."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from observability.metrics import Metrics
from schemas.errors import ErrorCode, TransientError
from streams.audit.io.agent import finish_before_cancelling
from streams.audit.io.stage import (
    database_outage_hook,
    drain_table_copy,
    export_audit_counts,
    run_side_by_side,
)
from streams.audit.io.table import AuditTableWriter
from streams.kafka import KafkaClientConfig, TopicPartition

pytestmark = pytest.mark.requirement("RS-AUD-07")


class FakeAgent:
    records_written = 0


class TestAuditCounts:
    async def test_audit_counts_exported_as_deltas(self) -> None:
        """Records the agent committed are added to the counter once each."""
        registry = CollectorRegistry()
        agent, stop = FakeAgent(), asyncio.Event()
        agent.records_written = 5
        task = asyncio.create_task(
            export_audit_counts(agent, Metrics(registry, process_collector=False), stop)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.05)
        agent.records_written = 7
        stop.set()
        await task
        assert registry.get_sample_value("radstream_audit_records_appended_total") == 7.0


class TestSideBySide:
    """The audit stage's parts end together at a safe point; none is cancelled."""

    async def test_failure_stops_the_others_without_cancelling_them(self) -> None:
        """A failing part sets stop; the other finishes its own way and the failure is raised."""
        stop = asyncio.Event()
        finished: list[str] = []

        async def failing() -> None:
            raise RuntimeError("broken")

        async def patient() -> None:
            try:
                await stop.wait()
                await asyncio.sleep(0)  # a step after the stop: a cancelled part never gets here
                finished.append("patient")
            except asyncio.CancelledError:
                finished.append("cancelled")
                raise

        with pytest.raises(RuntimeError, match="broken"):
            await run_side_by_side(stop, failing(), patient())
        assert finished == ["patient"]
        assert stop.is_set()

    async def test_all_parts_end_when_stopped(self) -> None:
        """Set from outside, stop ends every part and nothing is raised."""
        stop = asyncio.Event()
        stop.set()
        await run_side_by_side(stop, stop.wait(), stop.wait())


class TestDatabaseOutageLines:
    def test_one_line_at_each_end_of_an_outage(self) -> None:
        """The backpressure hooks log the outage's start and end and set the database gauge."""
        registry = CollectorRegistry()
        hooks = database_outage_hook(Metrics(registry, process_collector=False))
        assert hooks.database_up is not None
        with capture_logs() as logs:
            hooks.database_up(False)
            assert registry.get_sample_value("radstream_database_up") == 0
            hooks.database_up(True)
        assert [entry["event"] for entry in logs] == [
            "audit_database_unavailable",
            "audit_database_recovered",
        ]
        assert registry.get_sample_value("radstream_database_up") == 1


class TestTransactionsAreNotCutOff:
    async def test_cancellation_waits_for_the_transaction(self) -> None:
        """Cancelled mid-transaction, the agent lets it commit, then honours the cancellation."""
        entered, release = asyncio.Event(), asyncio.Event()
        steps: list[str] = []

        async def transaction() -> str:
            entered.set()
            await release.wait()
            steps.append("committed")
            return "done"

        task = asyncio.create_task(finish_before_cancelling(transaction(), bound=5))
        await entered.wait()
        task.cancel()
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert steps == ["committed"]

    async def test_the_wait_is_bounded(self) -> None:
        """A transaction that never ends holds the cancellation only for the bound."""
        entered = asyncio.Event()

        async def stuck() -> None:
            entered.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(finish_before_cancelling(stuck(), bound=0.01))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)

    async def test_result_passes_through(self) -> None:
        """Not cancelled, the transaction's result is returned."""

        async def transaction() -> int:
            return 3

        assert await finish_before_cancelling(transaction(), bound=1) == 3


class FakeWriter:
    """The table copy as the drain sees it: caught up after ``behind`` more looks."""

    def __init__(self, behind: int, *, failing: bool = False) -> None:
        self.behind = behind
        self.failing = failing
        self.looks = 0

    async def caught_up(self) -> bool:
        self.looks += 1
        if self.failing:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "reading end offsets")
        return self.looks > self.behind


async def drain(writer: FakeWriter, *, done: bool = False, bound: float = 10.0) -> asyncio.Event:
    """Run :func:`drain_table_copy` on ``writer``; the writer's stop event it set."""
    writer_stop, writer_done = asyncio.Event(), asyncio.Event()
    if done:
        writer_done.set()
    await drain_table_copy(
        writer,  # type: ignore[arg-type]
        writer_stop,
        writer_done,
        bound_seconds=bound,
        poll_seconds=0,
    )
    return writer_stop


class TestDrainTableCopy:
    """After the agent stopped, the table copy stops once it has the whole chain (bounded)."""

    async def test_the_copy_stops_once_caught_up(self) -> None:
        writer = FakeWriter(behind=2)
        assert (await drain(writer)).is_set()
        assert writer.looks == 3

    async def test_a_copy_that_never_catches_up_is_stopped_at_the_bound(self) -> None:
        """One warning line; the copy resumes from its committed offsets at the next start."""
        with capture_logs() as logs:
            assert (await drain(FakeWriter(behind=10**9), bound=0.01)).is_set()
        assert [entry["event"] for entry in logs] == ["audit_table_copy_behind"]

    async def test_broker_trouble_while_looking_is_not_a_verdict(self) -> None:
        """The writer's own loop deals with the broker; the drain keeps looking until bounded."""
        writer = FakeWriter(0, failing=True)
        assert (await drain(writer, bound=0.01)).is_set()
        assert writer.looks > 1

    async def test_a_writer_that_ended_is_not_waited_for(self) -> None:
        writer = FakeWriter(behind=10**9)
        assert (await drain(writer, done=True)).is_set()
        assert writer.looks == 0


class FakeConsumer:
    """Positions and end offsets of the writer's partitions."""

    def __init__(self, positions: dict[TopicPartition, int], ends: dict[TopicPartition, int]):
        self.positions = positions
        self.ends = ends

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.positions)

    async def end_offsets(self, partitions: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]


class TestCaughtUp:
    TP = TopicPartition("p.audit.log", 0)

    def writer(self, consumer: FakeConsumer | None) -> AuditTableWriter:
        writer = AuditTableWriter(
            kafka=KafkaClientConfig("k:9092"),
            prefix="p.",
            group_id="g",
            sink=None,  # type: ignore[arg-type]
            trusted=None,  # type: ignore[arg-type]
        )
        writer._consumer = consumer  # type: ignore[assignment]
        return writer

    async def test_behind_until_the_position_reaches_the_end(self) -> None:
        consumer = FakeConsumer({self.TP: 4}, {self.TP: 6})
        writer = self.writer(consumer)
        assert not await writer.caught_up()
        consumer.positions[self.TP] = 6
        assert await writer.caught_up()

    async def test_no_partitions_nothing_to_copy(self) -> None:
        """Another member of the writer's group copies the chain."""
        assert await self.writer(FakeConsumer({}, {})).caught_up()

    async def test_not_started_is_not_caught_up(self) -> None:
        assert not await self.writer(None).caught_up()
