"""The audit stage of a worker: the chain writer and its copy into the table, side by side."""

from __future__ import annotations

import asyncio
import contextlib

from observability.metrics import Metrics
from schemas.settings import Settings
from sinks.database import Database, tls_context
from streams.audit.io.agent import AuditAgent
from streams.audit.io.table import AuditTableWriter
from streams.batching_sink import Backpressure, SinkHooks
from streams.kafka.loop import run_until_stopped


async def run_audit_stage(settings: Settings, stop: asyncio.Event, metrics: Metrics) -> None:
    """Run the audit agent and the audit-table writer until ``stop`` is set.

    Either failing for good (fenced, a forked chain) ends the audit stage, which stops the whole
    worker: a worker must not go on validating and inferring unaudited.
    """
    agent = AuditAgent.from_settings(settings)
    database = Database(
        settings.database_url.get_secret_value(), pool_size=2, tls=tls_context(settings.database)
    )
    backpressure = Backpressure.from_settings(
        settings.sink,
        SinkHooks(backpressure=lambda seconds: metrics.sink_backpressure("audit", seconds)),
        # A shutdown during a database outage ends the wait; nothing was committed, so the
        # records are copied after the restart.
        stop=stop,
    )
    writer = AuditTableWriter.from_settings(settings, database, backpressure)
    try:
        await asyncio.gather(
            run_until_stopped(agent, stop),
            run_until_stopped(writer, stop),
            export_audit_counts(agent, metrics, stop),
        )
    finally:
        await database.dispose()


async def export_audit_counts(agent: AuditAgent, metrics: Metrics, stop: asyncio.Event) -> None:
    """Count the audit records the agent commits (its counter, sampled every second)."""
    reported = 0
    while True:
        written = agent.records_written
        if written > reported:
            metrics.audit_appended(written - reported)
            reported = written
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
