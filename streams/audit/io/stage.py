"""The audit stage of a worker: the chain writer and its copy into the table, side by side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import structlog

from observability.metrics import Metrics
from schemas.errors import RadstreamError
from schemas.settings import Settings
from sinks.database import Database, tls_context
from streams.audit.io.agent import AuditAgent
from streams.audit.io.table import AuditTableWriter
from streams.batching_sink import Backpressure, SinkHooks
from streams.kafka.loop import run_until_stopped

log = structlog.get_logger("radstream.audit")

# After the agent stopped, the table copy goes on until it has everything (bounded by this).
TABLE_DRAIN_SECONDS = 10.0


def database_outage_hook(metrics: Metrics) -> SinkHooks[object]:
    """Hooks of the audit table's backpressure: one log line at each end of an outage."""

    def database_up(up: bool) -> None:
        metrics.set_database_up(up)
        if up:
            log.info("audit_database_recovered", sink="audit")
        else:
            log.warning(
                "audit_database_unavailable",
                sink="audit",
                error_code="DATABASE_UNAVAILABLE",
                action="waiting with backpressure; the audit table copy resumes when it is back",
            )

    return SinkHooks(
        database_up=database_up,
        backpressure=lambda seconds: metrics.sink_backpressure("audit", seconds),
    )


async def run_audit_stage(settings: Settings, stop: asyncio.Event, metrics: Metrics) -> None:
    """Run the audit agent and the audit-table writer until ``stop`` is set.

    Either failing for good (fenced, a refused key) ends the audit stage, which stops the whole
    worker: a worker must not go on validating and inferring unaudited. Nothing here is ever
    cancelled: a loop that ends sets ``stop``, and the others finish their batch (a Kafka
    transaction is committed or aborted, never cut off) and stop cleanly; then the first
    failure is raised. A database outage only stalls the table copy (backpressure); the agent
    keeps writing the chain to Kafka meanwhile, and a stop during the outage ends the wait.

    The table copy stops after the agent, once it has copied what the agent committed (its
    last batch and its stop checkpoint; :func:`drain_table_copy`, bounded): after a clean stop
    the table holds the whole chain, and verifying it then does not report a truncated table.
    """
    agent = AuditAgent.from_settings(settings)
    # The table writer retries a failed write: no pre-ping (sinks.database.Database, pre_ping).
    database = Database(
        settings.database_url.get_secret_value(),
        pool_size=2,
        tls=tls_context(settings.database),
        pre_ping=False,
    )
    # A shutdown during a database outage ends the wait; nothing was committed, so the records
    # are copied after the restart.
    backpressure = Backpressure.from_settings(
        settings.sink, database_outage_hook(metrics), stop=stop
    )
    writer = AuditTableWriter.from_settings(
        settings, database, backpressure, agent.trusted, quarantined=metrics.audit_quarantined
    )
    writer_stop, writer_done = asyncio.Event(), asyncio.Event()

    async def agent_then_drain() -> None:
        try:
            await run_until_stopped(agent, stop)
        finally:
            await drain_table_copy(writer, writer_stop, writer_done)

    async def copy_to_table() -> None:
        try:
            await run_until_stopped(writer, writer_stop)
        finally:
            writer_done.set()

    try:
        await run_side_by_side(
            stop, agent_then_drain(), copy_to_table(), export_audit_counts(agent, metrics, stop)
        )
    finally:
        await database.dispose()


async def drain_table_copy(
    writer: AuditTableWriter,
    writer_stop: asyncio.Event,
    writer_done: asyncio.Event,
    *,
    bound_seconds: float = TABLE_DRAIN_SECONDS,
    poll_seconds: float = 0.1,
) -> None:
    """Let the table copy catch up with the topic (at most ``bound_seconds``), then stop it.

    Ends early when the writer has already ended (it failed, or was never started).
    """
    try:
        async with asyncio.timeout(bound_seconds):
            while not writer_done.is_set():
                with contextlib.suppress(RadstreamError):  # the writer's loop handles those
                    if await writer.caught_up():
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(writer_done.wait(), poll_seconds)
    except TimeoutError:
        log.warning(
            "audit_table_copy_behind",
            action="stopping anyway; the copy resumes from the committed offsets at the next start",
        )
    finally:
        writer_stop.set()


async def run_side_by_side(stop: asyncio.Event, *parts: Awaitable[object]) -> None:
    """Run ``parts`` until all have ended; the first to end sets ``stop`` for the others.

    Unlike ``asyncio.gather`` or a task group, a failing part does not cancel its siblings:
    they see ``stop`` and end at a safe point. Then the first failure is raised.
    """

    async def part(awaitable: Awaitable[object]) -> None:
        try:
            await awaitable
        finally:
            stop.set()

    outcomes = await asyncio.gather(*(part(p) for p in parts), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


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
