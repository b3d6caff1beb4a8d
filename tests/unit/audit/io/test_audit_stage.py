"""The worker's audit stage: what it exports about the agent."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from observability.metrics import Metrics
from streams.audit.io.stage import export_audit_counts


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
