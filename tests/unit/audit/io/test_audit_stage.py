"""The worker's audit stage: what it exports about the agent."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from observability.metrics import Metrics
from streams.audit.io.agent import finish_before_cancelling
from streams.audit.io.stage import database_outage_hook, export_audit_counts, run_side_by_side

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
